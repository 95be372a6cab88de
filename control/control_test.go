package control

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
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

// dialEnv makes the test binary a client: it sends a status request to
// the socket it names and prints the answer.
const dialEnv = "CONTROL_TEST_DIAL"

func TestMain(m *testing.M) {
	if path := os.Getenv(dialEnv); path != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := Do(ctx, path, Request{Op: OpStatus})
		fmt.Printf("%+v %v\n", resp, err)
		return
	}
	os.Exit(m.Run())
}

// TestServerRefusesOtherUids: even through a socket file anyone may open,
// a client of another uid than root or the server's is refused
// (SO_PEERCRED), and the handler never sees its request.
func TestServerRefusesOtherUids(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("missing prerequisite under CI: root, to run a client as another uid")
		}
		t.Skip("needs root to run a client as another uid")
	}
	// A directory, binary and socket that uid 65534 can reach.
	dir := t.TempDir()
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "control.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // t.TempDir makes both 0700
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "ctl.sock")
	var handled atomic.Int32
	s, err := Listen(path, func(Request) Response { handled.Add(1); return Response{OK: true} }, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	dial := func(uid uint32) string {
		cmd := exec.Command(bin)
		cmd.Env = append(os.Environ(), dialEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid %d: %v: %s", uid, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := dial(65534); !strings.Contains(got, "uid 65534 may not use the control socket") || handled.Load() != 0 {
		t.Errorf("client as uid 65534: %s (handled %d)", got, handled.Load())
	}
	if got := dial(0); !strings.HasPrefix(got, "{OK:true") || handled.Load() != 1 {
		t.Errorf("client as root: %s (handled %d)", got, handled.Load())
	}
}
