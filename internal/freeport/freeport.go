// Package freeport finds loopback TCP ports for servers that another
// process binds later: the tests' and the benchmark's tini-hot.
//
// A port of the kernel's ephemeral range (what listening on port 0 gives)
// can be taken by the next client socket's connect between the check and
// the other process's bind: a load generator opens thousands, and a test
// failed that way under load ("bind: address already in use"). Ports
// below the range are only ever taken by an explicit bind, so Addr hands
// out those, each at most once per process.
package freeport

import (
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the first port Addr hands out.
const lowest = 10000

var state struct {
	sync.Mutex
	next, end int // end: the first ephemeral port
}

// Addr is a loopback address ("127.0.0.1:PORT") whose port is free right
// now, below the ephemeral range, and not handed out before by this
// process.
func Addr() (string, error) {
	state.Lock()
	defer state.Unlock()
	if state.end == 0 {
		end := 32768 // Linux's default start of the range
		if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
			if f := strings.Fields(string(b)); len(f) == 2 {
				if n, err := strconv.Atoi(f[0]); err == nil {
					end = n
				}
			}
		}
		if end < lowest+2000 {
			return "", errors.New("ephemeral ports start at " + strconv.Itoa(end) + ": no room below them")
		}
		state.end = end
		// Other processes (test binaries of other packages) may run at
		// the same time: start somewhere of this one's own.
		state.next = lowest + os.Getpid()%(end-lowest)
	}
	for range state.end - lowest {
		port := state.next
		if state.next++; state.next >= state.end {
			state.next = lowest
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // taken
		}
		addr := l.Addr().String()
		l.Close()
		return addr, nil
	}
	return "", errors.New("no free loopback port from " + strconv.Itoa(lowest) + " to " + strconv.Itoa(state.end))
}
