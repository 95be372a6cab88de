package watch

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// encodeEvents writes evs as the kernel does: struct inotify_event, then
// the name NUL-padded to pad bytes (0: no name).
func encodeEvents(evs []rawEvent, pad int) []byte {
	var b []byte
	for _, e := range evs {
		n := 0
		if e.name != "" {
			n = (len(e.name) + pad) / pad * pad // one NUL at least
		}
		b = binary.NativeEndian.AppendUint32(b, uint32(int32(e.wd)))
		b = binary.NativeEndian.AppendUint32(b, e.mask)
		b = binary.NativeEndian.AppendUint32(b, 0) // cookie
		b = binary.NativeEndian.AppendUint32(b, uint32(n))
		b = append(b, e.name...)
		b = append(b, make([]byte, n-len(e.name))...)
	}
	return b
}

func TestParseEvents(t *testing.T) {
	evs := []rawEvent{
		{wd: 1, mask: unix.IN_CLOSE_WRITE},
		{wd: 2, mask: unix.IN_MOVED_TO, name: "..data"},
		{wd: -1, mask: unix.IN_Q_OVERFLOW},
		{wd: 3, mask: unix.IN_CREATE | unix.IN_ISDIR, name: "a-name-of-exactly-32-bytes------"},
	}
	b := encodeEvents(evs, 16)
	if got := parseEvents(b); !slices.Equal(got, evs) {
		t.Fatalf("parseEvents = %+v, want %+v", got, evs)
	}
	// A record cut short ends the parse; those before it are kept.
	for cut := range len(b) {
		got := parseEvents(b[:cut])
		if !slices.Equal(got, evs[:len(got)]) {
			t.Fatalf("cut at %d: %+v", cut, got)
		}
	}
	// A length past the buffer, or past PATH_MAX, ends it too.
	bad := slices.Clone(b)
	binary.NativeEndian.PutUint32(bad[12:], unix.PathMax+1)
	if got := parseEvents(bad); len(got) != 0 {
		t.Fatalf("a name of PATH_MAX+1 bytes: %+v", got)
	}
}

// FuzzParseEvents: never a panic, whatever the bytes and their alignment;
// every event read is a whole record, its name without NUL; and what it
// reads, written again, reads the same.
func FuzzParseEvents(f *testing.F) {
	f.Add(encodeEvents([]rawEvent{{wd: 1, mask: unix.IN_MODIFY}, {wd: 2, mask: unix.IN_MOVED_TO, name: "conf"}}, 16), 0)
	f.Add(encodeEvents([]rawEvent{{wd: 7, mask: unix.IN_DELETE_SELF}}, 4), 3)
	f.Add([]byte("\x01\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff"), 1)
	f.Fuzz(func(t *testing.T, b []byte, skew int) {
		// Shift the buffer off its alignment: a record at an odd
		// offset must be read as well as one the kernel aligned.
		skew = ((skew % 8) + 8) % 8
		buf := append(make([]byte, skew), b...)[skew:]
		evs := parseEvents(buf)
		if len(evs)*unix.SizeofInotifyEvent > len(b) {
			t.Fatalf("%d events from %d bytes", len(evs), len(b))
		}
		for _, e := range evs {
			if bytes.IndexByte([]byte(e.name), 0) >= 0 {
				t.Fatalf("name %q holds a NUL", e.name)
			}
		}
		if again := parseEvents(encodeEvents(evs, 4)); !slices.Equal(again, evs) {
			t.Fatalf("read %+v, written and read again %+v", evs, again)
		}
	})
}
