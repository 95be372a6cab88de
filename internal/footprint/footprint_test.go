package footprint

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"testing"
)

// statusKiB reads a figure of /proc/self/status, in KiB.
func statusKiB(t *testing.T, key string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), key+":")
	if !ok {
		t.Fatalf("no %s in /proc/self/status", key)
	}
	n, err := strconv.Atoi(strings.Fields(rest)[0])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTrim unmaps the test binary's own pages: its file-backed resident
// memory drops, and the program goes on running, reading its code and
// read-only data back (strconv's tables, this very function).
func TestTrim(t *testing.T) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	ok, err := positionDependent(exe)
	exe.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Fatal("the test binary is not an ET_EXEC executable: Trim would leave it alone")
	}
	before := statusKiB(t, "RssFile")
	if err := Trim(); err != nil {
		t.Fatal(err)
	}
	after := statusKiB(t, "RssFile")
	t.Logf("RssFile %d KiB -> %d KiB", before, after)
	if after >= before {
		t.Fatalf("RssFile %d KiB after Trim, %d before: nothing unmapped", after, before)
	}
	if got := strconv.Quote("trimmed\n"); got != `"trimmed\n"` {
		t.Fatalf("after Trim: strconv.Quote gave %s", got)
	}
}

func TestPositionDependent(t *testing.T) {
	header := func(class, data byte, typ uint16) []byte {
		h := []byte("\x7fELF")
		h = append(h, class, data, 1, 0)
		h = append(h, make([]byte, 8)...)
		return append(h, byte(typ), byte(typ>>8), 0x3e, 0)
	}
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"ET_EXEC", header(2, 1, 2), true},
		{"ET_DYN (PIE)", header(2, 1, 3), false},
		{"32-bit", header(1, 1, 2), false},
		{"big-endian", header(2, 2, 2), false},
		{"not ELF", []byte("#!/bin/sh\necho not an ELF file\n"), false},
		{"short", []byte("\x7fELF"), false},
		{"empty", nil, false},
	} {
		got, err := positionDependent(bytes.NewReader(c.b))
		if err != nil || got != c.want {
			t.Errorf("%s: positionDependent = %v, %v; want %v", c.name, got, err, c.want)
		}
	}
}
