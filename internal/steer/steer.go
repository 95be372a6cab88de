// Package steer writes the classic BPF programs that tini-hot attaches
// to a reuseport group of sockets (SO_ATTACH_REUSEPORT_CBPF), one socket
// per generation slot, to choose which socket of the group gets each new
// connection or datagram. Classic BPF needs no privilege: any process may
// attach such a program to its own sockets.
//
// The kernel runs the program for every new TCP connection (its SYN) and
// every UDP datagram that reaches the group, with the UDP payload at
// offset 0, and takes its result as the index of a socket in the group:
// the order in which the sockets joined it (see internal/listen). A
// result beyond the group, or a program that reads past the packet's end
// (it returns 0 then), would send the packet elsewhere: every program
// here checks the length before it reads, and returns only indexes it
// was given.
//
// Two programs:
//   - [Serving]: everything to the serving generation's socket (TCP, plain
//     UDP).
//   - [QUIC]: a QUIC packet by its header. A long-header packet whose
//     destination connection ID (DCID) has at least 8 bytes is a client's
//     first Initial, or a 0-RTT packet with the same client-chosen ID
//     (RFC 9000 §7.2): it goes to the serving generation. Any other packet
//     carries a connection ID the server chose, whose first byte is the
//     slot number of the generation that owns the connection: it goes
//     there, if that slot is live, else to the serving generation.
package steer

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// MinClientDCID is the shortest DCID of a client's first Initial
// (RFC 9000 §7.2). Server-chosen connection IDs must be shorter, so that
// the program tells the two apart in long-header packets.
const MinClientDCID = 8

// Flow maps a slot number, the first byte of the connection IDs its
// generation chooses, to the index of the slot's socket in the group.
type Flow struct {
	Slot  byte
	Index uint32
}

// Serving is the program that sends every new connection or datagram to
// the socket at index serving.
func Serving(serving uint32) []unix.SockFilter {
	return []unix.SockFilter{ret(serving)}
}

// Classic BPF instructions (linux/filter.h), as the kernel takes them.
func ret(k uint32) unix.SockFilter { return unix.SockFilter{Code: unix.BPF_RET | unix.BPF_K, K: k} }

// loadLen loads the packet's length into A.
func loadLen() unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_LEN}
}

// loadByte loads the packet's byte at off into A (a read past the end
// ends the program with 0).
func loadByte(off uint32) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: off}
}

// jump compares A with k (op: BPF_JEQ, BPF_JGE, BPF_JSET) and skips jt
// instructions if true, jf if false.
func jump(op uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: unix.BPF_JMP | op | unix.BPF_K, K: k, Jt: jt, Jf: jf}
}

// QUIC is the program that sends a client's first packets to the socket
// at index serving and every other packet to the socket of the slot in
// its DCID's first byte, by flows; a slot not in flows, or a packet too
// short to say, goes to serving. At most MaxFlows flows count.
func QUIC(serving uint32, flows []Flow) []unix.SockFilter {
	// Layout: the header checks, then one load of the slot byte (short
	// or long header), then the table of flows, then ret serving.
	//
	//  0 ld len
	//  1 jge #1           ; else serving
	//  2 ldb [0]
	//  3 jset #0x80       ; long header → 8
	//  4 ld len           ; short header: 0x40|..., DCID at 1
	//  5 jge #2           ; else serving
	//  6 ldb [1]
	//  7 ja table
	//  8 ld len           ; long header: version 1-4, DCID length 5, DCID 6
	//  9 jge #7           ; else serving
	// 10 ldb [5]
	// 11 jge #MinClientDCID ; a client's choice → serving
	// 12 jeq #0           ; no DCID → serving
	// 13 ldb [6]
	// 14 table: jeq #slot, ret #index, ... ; ret #serving
	const table = 14
	flows = flows[:min(len(flows), MaxFlows)]
	n := table + 2*len(flows) // index of the final ret serving
	toServing := func(at int) uint8 { return uint8(n - at - 1) }
	prog := []unix.SockFilter{
		loadLen(),
		jump(unix.BPF_JGE, 1, 0, toServing(1)),
		loadByte(0),
		jump(unix.BPF_JSET, 0x80, 8-3-1, 0),
		loadLen(),
		jump(unix.BPF_JGE, 2, 0, toServing(5)),
		loadByte(1),
		{Code: unix.BPF_JMP | unix.BPF_JA, K: table - 7 - 1},
		loadLen(),
		jump(unix.BPF_JGE, 7, 0, toServing(9)),
		loadByte(5),
		jump(unix.BPF_JGE, MinClientDCID, toServing(11), 0),
		jump(unix.BPF_JEQ, 0, toServing(12), 0),
		loadByte(6),
	}
	for _, f := range flows {
		prog = append(prog, jump(unix.BPF_JEQ, uint32(f.Slot), 0, 1), ret(f.Index))
	}
	return append(prog, ret(serving))
}

// MaxFlows is the most flows [QUIC] takes: its jumps to the end are of
// at most 255 instructions.
const MaxFlows = (255 - 14) / 2

// Attach attaches prog to the reuseport group of the socket fd: it
// replaces the group's program at once, for the next connection or
// datagram.
func Attach(fd int, prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF, &fprog); err != nil {
		return fmt.Errorf("attach the steering program (SO_ATTACH_REUSEPORT_CBPF): %w", err)
	}
	return nil
}
