package listen

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestParse(t *testing.T) {
	good := map[string]Spec{
		"tcp://:8080":               {Name: DefaultName, Network: "tcp", Address: ":8080"},
		"http=tcp://127.0.0.1:80":   {Name: "http", Network: "tcp", Address: "127.0.0.1:80"},
		"tcp4://0.0.0.0:80":         {Name: DefaultName, Network: "tcp4", Address: "0.0.0.0:80"},
		"tcp6://[::]:8080":          {Name: DefaultName, Network: "tcp6", Address: "[::]:8080"},
		"dns=udp://:5353":           {Name: "dns", Network: "udp", Address: ":5353"},
		"unix:///run/app.sock":      {Name: DefaultName, Network: "unix", Address: "/run/app.sock"},
		"sock=unix:///tmp/a=b.sock": {Name: "sock", Network: "unix", Address: "/tmp/a=b.sock"},
		"tcp://localhost:0":         {Name: DefaultName, Network: "tcp", Address: "localhost:0"},
		"h3=udp://:443?flows=quic":  {Name: "h3", Network: "udp", Address: ":443", Flows: FlowsQUIC},
	}
	for in, want := range good {
		got, err := Parse(in)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := []string{"", ":8080", "8080", "tcp://", "tcp://:99999", "tcp://:http", "tcp://:-1", "tcp://host",
		"http://:80", "unix://", "unix://host/path", "tcp://:80/x", "tcp://u@:80", "tcp://:80?x=1", "tcp://:80?flows=quic", "udp://:80?flows=x", "udp://:80?flows=quic&x=1", "unix:///a?flows=quic",
		"a:b=tcp://:80", "=tcp://:80", "tcp://:080"}
	for _, in := range bad {
		if got, err := Parse(in); err == nil {
			t.Errorf("Parse(%q) = %+v, want an error", in, got)
		}
	}
}

// FuzzParse: a parsed spec is well formed and prints back to a spec
// that parses to itself.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"tcp://:8080", "x=unix:///a", "udp6://[::1]:53", "tcp://[::1%eth0]:1", "a=b=c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := Parse(s)
		if err != nil {
			return
		}
		if spec.Name == "" || strings.Contains(spec.Name, ":") || spec.Address == "" {
			t.Fatalf("Parse(%q) = %+v", s, spec)
		}
		again, err := Parse(spec.Name + "=" + spec.String())
		if err != nil || again != spec {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", s, again, err, spec)
		}
	})
}

// TestParseListenMessages: a URL without "//" is told so.
func TestParseListenMessages(t *testing.T) {
	for in, want := range map[string]string{
		"unix:relative.sock": "want unix:///absolute/path (three slashes",
		"unix://rel.sock":    "want unix:///absolute/path (three slashes",
		"tcp:8080":           `want tcp://HOST:PORT (with "//" after the scheme)`,
	} {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestBindTCPAndUnix(t *testing.T) {
	l, err := Bind(Spec{Name: "x", Network: "tcp", Address: "127.0.0.1:0"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if a := l.Addr(); !strings.HasPrefix(a, "tcp://127.0.0.1:") || strings.HasSuffix(a, ":0") {
		t.Errorf("Addr = %q, want the port the kernel chose", a)
	}
	// The held socket accepts connections into its backlog.
	dup, err := unix.Dup(l.Fd())
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(dup), "held")
	defer f.Close()
	if flags, _ := unix.FcntlInt(uintptr(l.Fd()), unix.F_GETFL, 0); flags&unix.O_NONBLOCK == 0 {
		t.Error("held socket is in blocking mode")
	}
	fl, err := net.FileListener(f)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", fl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	fl.Close()

	path := filepath.Join(t.TempDir(), "app.sock")
	u, err := Bind(Spec{Name: "u", Network: "unix", Address: path}, 1)
	if err != nil {
		t.Fatal(err)
	}
	// Binding the same path again while it is held fails.
	if _, err := Bind(u.Spec, 1); err == nil {
		t.Fatal("second bind of a held unix socket succeeded")
	}
	u.Close()
	if _, err := net.Dial("unix", path); err == nil {
		t.Fatal("socket file still there after Close")
	}
}

func TestBindInUse(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, err = Bind(Spec{Network: "tcp", Address: held.Addr().String()}, 1)
	if err == nil || !strings.Contains(err.Error(), held.Addr().String()) {
		t.Fatalf("Bind of a port in use: %v, want an error naming the address", err)
	}
}

// FuzzValidName: the name check is the regexp it replaced, byte for byte.
func FuzzValidName(f *testing.F) {
	re := regexp.MustCompile(`^[A-Za-z0-9_.-]{1,255}$`)
	for _, s := range []string{"http", "", "a b", "ü", "a:b", strings.Repeat("x", 255), strings.Repeat("x", 256), "a\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validName(s), re.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
