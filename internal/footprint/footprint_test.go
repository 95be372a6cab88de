package footprint

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"github.com/prometheus/procfs"
)

// rssFile is the process's resident file-backed memory, in bytes.
func rssFile(t *testing.T) uint64 {
	t.Helper()
	self, err := procfs.Self()
	if err != nil {
		t.Fatal(err)
	}
	st, err := self.NewStatus()
	if err != nil {
		t.Fatal(err)
	}
	return st.RssFile
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
	before := rssFile(t)
	if err := Trim(); err != nil {
		t.Fatal(err)
	}
	after := rssFile(t)
	t.Logf("RssFile %d KiB -> %d KiB", before>>10, after>>10)
	if after >= before {
		t.Fatalf("RssFile %d B after Trim, %d before: nothing unmapped", after, before)
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
