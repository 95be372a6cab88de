package steer

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// run runs prog on packet as the kernel would (golang.org/x/net/bpf's VM:
// a read past the end returns 0, as the kernel's does).
func run(t testing.TB, prog []unix.SockFilter, packet []byte) uint32 {
	t.Helper()
	raw := make([]bpf.RawInstruction, len(prog))
	for i, f := range prog {
		raw[i] = bpf.RawInstruction{Op: f.Code, Jt: f.Jt, Jf: f.Jf, K: f.K}
	}
	insts, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatalf("a program with an instruction the VM does not know: %v", insts)
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	out, err := vm.Run(packet)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(out)
}

// long is a long-header packet (an Initial, version 1) with dcid.
func long(dcid []byte) []byte {
	p := []byte{0xc3, 0, 0, 0, 1, byte(len(dcid))}
	p = append(p, dcid...)
	return append(p, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x41, 0x00) // SCID, token, length
}

// short is a short-header packet whose DCID starts with dcid.
func short(dcid []byte) []byte {
	return append(append([]byte{0x41}, dcid...), 0xaa, 0xbb, 0xcc)
}

func TestServing(t *testing.T) {
	for _, idx := range []uint32{0, 1, 5} {
		for _, p := range [][]byte{nil, {0}, bytes.Repeat([]byte{0xff}, 1500)} {
			if got := run(t, Serving(idx), p); got != idx {
				t.Errorf("Serving(%d) on %d bytes: %d", idx, len(p), got)
			}
		}
	}
}

// TestQUICDecisions is the decision table over crafted packets: slot 3
// (index 1) and slot 5 (index 2) are live, index 0 serves.
func TestQUICDecisions(t *testing.T) {
	prog := QUIC(0, []Flow{{Slot: 3, Index: 1}, {Slot: 5, Index: 2}})
	cases := []struct {
		name   string
		packet []byte
		want   uint32
	}{
		{"empty", nil, 0},
		{"one byte, short header", []byte{0x41}, 0},
		{"one byte, long header", []byte{0xc0}, 0},
		{"short header, slot 3", short([]byte{3, 9, 9, 9}), 1},
		{"short header, slot 5", short([]byte{5}), 2},
		{"short header, slot 3, nothing after the first DCID byte", []byte{0x40, 3}, 1},
		{"short header, slot not live", short([]byte{4, 1, 2, 3}), 0},
		{"short header, slot 255", short([]byte{255}), 0},
		{"long header, truncated before the DCID length", []byte{0xc3, 0, 0, 0, 1}, 0},
		{"long header, truncated after the DCID length", []byte{0xc3, 0, 0, 0, 1, 4}, 0},
		{"long header, DCID length 0", long(nil), 0},
		{"long header, server DCID of 4, slot 3", long([]byte{3, 1, 2, 3}), 1},
		{"long header, server DCID of 7, slot 5", long([]byte{5, 1, 2, 3, 4, 5, 6}), 2},
		{"long header, server DCID of 1, slot 5", long([]byte{5}), 2},
		{"long header, server DCID, slot not live", long([]byte{9, 1, 2, 3}), 0},
		{"Initial, client DCID of 8 starting with a live slot", long([]byte{3, 1, 2, 3, 4, 5, 6, 7}), 0},
		{"Initial, client DCID of 20", long(bytes.Repeat([]byte{5}, 20)), 0},
		{"Initial, DCID length 255 (invalid)", append([]byte{0xc3, 0, 0, 0, 1, 255}, 3), 0},
		{"version negotiation, DCID of 4, slot 3", append([]byte{0x80, 0, 0, 0, 0, 4, 3, 0, 0, 0}, 0, 0, 0, 0, 1), 1},
		{"version negotiation, DCID of 8", append([]byte{0x80, 0, 0, 0, 0, 8}, bytes.Repeat([]byte{3}, 8)...), 0},
	}
	for dlen := 0; dlen <= 20; dlen++ {
		want := uint32(0)
		if dlen > 0 && dlen < MinClientDCID {
			want = 1 // slot 3 first
		}
		dcid := append([]byte{3}, bytes.Repeat([]byte{7}, 20)...)[:dlen]
		cases = append(cases, struct {
			name   string
			packet []byte
			want   uint32
		}{fmt.Sprintf("long header, DCID length %d", dlen), long(dcid), want})
	}
	for _, c := range cases {
		if got := run(t, prog, c.packet); got != c.want {
			t.Errorf("%s (% x): index %d, want %d", c.name, c.packet, got, c.want)
		}
	}
}

// TestQUICNoFlows: with no flow but the serving one's, everything goes
// to serving.
func TestQUICNoFlows(t *testing.T) {
	prog := QUIC(4, nil)
	for _, p := range [][]byte{nil, short([]byte{0}), long([]byte{0, 1}), long(bytes.Repeat([]byte{1}, 8))} {
		if got := run(t, prog, p); got != 4 {
			t.Errorf("% x: %d", p, got)
		}
	}
}

// TestQUICMaxFlows: the longest program assembles, and its last flow is
// reached.
func TestQUICMaxFlows(t *testing.T) {
	var flows []Flow
	for i := range MaxFlows {
		flows = append(flows, Flow{Slot: byte(i), Index: uint32(i + 1)})
	}
	prog := QUIC(0, flows)
	last := flows[len(flows)-1]
	if got := run(t, prog, short([]byte{last.Slot})); got != last.Index {
		t.Fatalf("last flow: %d, want %d", got, last.Index)
	}
}

// FuzzQUIC: whatever the packet, the program returns the serving index
// or a live flow's, never anything else (a read past the end would
// return 0, which is neither here).
func FuzzQUIC(f *testing.F) {
	f.Add([]byte{}, byte(3), byte(5))
	f.Add(short([]byte{3}), byte(3), byte(5))
	f.Add(long([]byte{5, 1}), byte(3), byte(5))
	f.Add(long(bytes.Repeat([]byte{3}, 8)), byte(3), byte(5))
	f.Add([]byte{0xc0, 0, 0, 0, 1, 2}, byte(0), byte(1))
	f.Fuzz(func(t *testing.T, packet []byte, a, b byte) {
		prog := QUIC(7, []Flow{{Slot: a, Index: 8}, {Slot: b, Index: 9}})
		got := run(t, prog, packet)
		if !slices.Contains([]uint32{7, 8, 9}, got) {
			t.Fatalf("% x: index %d", packet, got)
		}
		// Consistency with the rule written out in Go.
		if want := decide(packet, map[byte]uint32{b: 9, a: 8}, 7); a != b && got != want {
			t.Fatalf("% x: index %d, want %d", packet, got, want)
		}
	})
}

// decide is the package's rule in Go, for the fuzz test.
func decide(p []byte, flows map[byte]uint32, serving uint32) uint32 {
	var slot byte
	switch {
	case len(p) < 1:
		return serving
	case p[0]&0x80 == 0:
		if len(p) < 2 {
			return serving
		}
		slot = p[1]
	default:
		if len(p) < 7 || p[5] >= MinClientDCID || p[5] == 0 {
			return serving
		}
		slot = p[6]
	}
	if idx, ok := flows[slot]; ok {
		return idx
	}
	return serving
}
