package control

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRequest(t *testing.T) {
	for _, ok := range []string{`{"op":"reload"}`, `{"op":"reload","wait_drained":true}`, ` {"op":"status"} `, `{"op":"probe"}`, `{"op":"probe","liveness":true}`, `{"op":"prestop"}`} {
		if _, err := ParseRequest([]byte(ok)); err != nil {
			t.Errorf("ParseRequest(%s): %v", ok, err)
		}
	}
	for _, bad := range []string{``, `{}`, `{"op":"launch"}`, `{"op":"reload","x":1}`, `{"op":"reload"}{}`,
		`[1]`, `{"op":7}`, `{"op":"status","wait_drained":true}`, `{"op":"prestop","liveness":true}`, `{"op":"probe","wait_drained":true}`, strings.Repeat(" ", MaxRequestSize+1)} {
		if r, err := ParseRequest([]byte(bad)); err == nil {
			t.Errorf("ParseRequest(%.40q) = %+v, want an error", bad, r)
		}
	}
}

// FuzzParseRequest: any bytes give a known op or an error, never a panic.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"op":"reload","wait_drained":true}`))
	f.Add([]byte(`{"op":"status"}`))
	f.Add([]byte(`{"op":"probe","liveness":true}`))
	f.Add([]byte(`{"op":"\u0000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		if !slices.Contains([]string{OpReload, OpStatus, OpProbe, OpPrestop}, r.Op) {
			t.Fatalf("accepted op %q", r.Op)
		}
		if (r.WaitDrained && r.Op != OpReload) || (r.Liveness && r.Op != OpProbe) {
			t.Fatalf("accepted %+v", r)
		}
	})
}

func TestServer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ctl.sock")
	s, err := Listen(path, func(r Request) Response {
		return Response{OK: true, Generation: 2}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v, %v; want 0600", fi.Mode(), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := Do(ctx, path, Request{Op: OpReload})
	if err != nil || !resp.OK || resp.Generation != 2 {
		t.Fatalf("Do = %+v, %v", resp, err)
	}
	// Garbage gets an error answer and the server keeps serving.
	for _, junk := range []string{"garbage\n", `{"op":"nope"}` + "\n", strings.Repeat("x", MaxRequestSize+10)} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(junk))
		b := make([]byte, 512)
		n, _ := c.Read(b)
		c.Close()
		if !strings.Contains(string(b[:n]), `"ok":false`) {
			t.Errorf("answer to %.20q: %q", junk, b[:n])
		}
	}
	if _, err := Listen(path, nil, nil); err == nil {
		t.Error("second server on a live socket succeeded")
	}
	if resp, err := Do(ctx, path, Request{Op: OpStatus}); err != nil || !resp.OK {
		t.Fatalf("after junk: %+v, %v", resp, err)
	}
	s.Close()
	s.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}
