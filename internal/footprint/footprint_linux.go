// Package footprint trims what tini-hot keeps of its own start-up once the
// start is over: the garbage collector's one-time cost, paid while the heap
// is smallest, and the pages of its binary that only the start touched.
package footprint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Trim is called once, when start-up is over (the first generation runs).
//
// It runs two garbage collections and gives every free page back. The
// collector's first two collections cost it memory for good, its central
// lists for each size class of object in use, in two generations that
// alternate from one collection to the next (docs/INTERNALS.md, "Footprint"): paid
// now, with the heap at its smallest, an idle tini-hot reads what it will
// read once it has worked, instead of a figure it leaves at its first
// reload, probe or scrape. Measured as PID 1 serving the demo, idle and
// then after 1,000 back-to-back reloads (bench -only memory): RssAnon
// 1,560 and 2,620 KiB without it (+1,060), 2,308 and 2,672 KiB with it
// (+364); one collection instead of two left +600.
//
// Then it unmaps the pages of tini-hot's own binary, text and read-only
// data, that are mapped now (madvise MADV_DONTNEED): the start touches
// code and data all over the binary, the initialisers of some 130 packages
// and the runtime's first steps, and the kernel maps 64 KiB around each
// page touched, about 90% of the 7.5 MB the binary maps; the supervisor's
// loop needs a fraction of it. The pages stay in the page cache, where the
// kernel may reclaim them first, being unmapped; the next use of one maps
// it again, a minor fault. Only the binary's read-only mappings are
// unmapped, and only for a position-dependent executable (ELF ET_EXEC, as
// Go builds by default): there, no page of them was ever written to, so
// each reads back as it was. The relocated read-only data of a PIE (its
// RELRO) would read back unrelocated, so a PIE is left alone.
func Trim() error {
	runtime.GC()
	debug.FreeOSMemory()
	return unmapBinary()
}

// unmapBinary unmaps the read-only mappings of the running executable.
func unmapBinary() error {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return err
	}
	defer exe.Close()
	if ok, err := positionDependent(exe); err != nil || !ok {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(exe.Fd()), &st); err != nil {
		return err
	}
	self, err := procfs.Self()
	if err != nil {
		return err
	}
	maps, err := self.ProcMaps()
	if err != nil {
		return err
	}
	for _, m := range maps {
		if m.Inode != st.Ino || m.Dev != st.Dev || m.Perms == nil || m.Perms.Write || !m.Perms.Private {
			continue
		}
		// A raw system call: the range is not Go memory, and a []byte
		// over it would have to be made from a uintptr.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.StartAddr, m.EndAddr-m.StartAddr, unix.MADV_DONTNEED); errno != 0 {
			return fmt.Errorf("madvise %#x-%#x: %w", m.StartAddr, m.EndAddr, errno)
		}
	}
	return nil
}

// elfHeader is how much of an ELF file positionDependent reads: the
// identification (16 bytes) and the type (2).
const elfHeader = 18

// positionDependent reports whether r is a 64-bit little-endian ELF
// executable of type ET_EXEC, loaded at fixed addresses with nothing
// relocated at run time.
func positionDependent(r io.Reader) (bool, error) {
	var h [elfHeader]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return false, nil
		}
		return false, err
	}
	const (
		classELF64 = 2
		dataLSB    = 1
		typeExec   = 2
	)
	return string(h[:4]) == "\x7fELF" && h[4] == classELF64 && h[5] == dataLSB &&
		uint16(h[16])|uint16(h[17])<<8 == typeExec, nil
}
