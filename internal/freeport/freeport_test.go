package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Addr hands out distinct ports, below the ephemeral range, that can be
// bound.
func TestAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 50 {
		addr, err := Addr()
		if err != nil {
			t.Fatal(err)
		}
		if seen[addr] {
			t.Fatalf("%s handed out twice", addr)
		}
		seen[addr] = true
		_, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		if n, _ := strconv.Atoi(port); n < lowest || n >= state.end {
			t.Fatalf("port %d outside [%d, %d)", n, lowest, state.end)
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("bind %s: %v", addr, err)
		}
		l.Close()
	}
}
