package usage

import (
	"bytes"
	"errors"
	"math"
	"os"
	"strconv"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Figures are what a set of processes uses.
type Figures struct {
	// MemoryBytes is the memory another copy of them would need: their
	// proportional share (PSS) of anonymous memory, private and shared,
	// and of shared memory (shmem: MAP_SHARED|MAP_ANONYMOUS, /dev/shm,
	// memfd, tmpfs files they map). A page that several of them map,
	// such as the copy-on-write memory of preforked workers, counts
	// once over the set; file pages (the binary, libraries, page
	// cache) do not count, since a copy would share them. See
	// [Memory].
	MemoryBytes uint64
	Processes   int
	Threads     int
	FDs         int
	CPUSeconds  float64
}

// Add adds o to f.
func (f *Figures) Add(o Figures) {
	f.MemoryBytes += o.MemoryBytes
	f.Processes += o.Processes
	f.Threads += o.Threads
	f.FDs += o.FDs
	f.CPUSeconds += o.CPUSeconds
}

// Processes sums the figures of pids from /proc. A process that ends
// while it reads is left out; fds that cannot be read (another user's
// process, without privileges) count as none.
func Processes(pids []int) Figures {
	var f Figures
	for _, pid := range pids {
		p, err := procfs.NewProc(pid)
		if err != nil {
			continue
		}
		st, err := p.Stat()
		if err != nil {
			continue
		}
		status, err := p.NewStatus()
		if err != nil {
			continue
		}
		f.Processes++
		f.Threads += st.NumThreads
		f.CPUSeconds += st.CPUTime()
		f.MemoryBytes += memory(pid, status)
		if n, err := p.FileDescriptorsLen(); err == nil {
			f.FDs += n
		}
	}
	return f
}

// memory is what a copy of process pid would need (see
// [Figures.MemoryBytes]): Pss_Anon + Pss_Shmem from
// /proc/PID/smaps_rollup. Where the kernel does not split the PSS (before
// Linux 5.8) or the file cannot be read, it is RssAnon + RssShmem from
// status: shared pages then count in every process that maps them, too
// much for preforked workers, never too little.
//
// procfs reads smaps_rollup too (Proc.ProcSMapsRollup), but keeps only
// the total Pss, which includes file pages, not its split.
func memory(pid int, status procfs.ProcStatus) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err == nil {
		if anon, shmem, ok := parseRollup(b); ok {
			return anon + shmem
		}
	}
	return status.RssAnon + status.RssShmem
}

// parseRollup reads the Pss_Anon and Pss_Shmem lines of smaps_rollup
// ("Pss_Anon:   112 kB"), in bytes; ok is false unless both are there
// and fit.
func parseRollup(b []byte) (anon, shmem uint64, ok bool) {
	var seen uint8 // 1: Pss_Anon, 2: Pss_Shmem
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		key, rest, found := bytes.Cut(line, []byte(":"))
		if !found {
			continue
		}
		var dst *uint64
		var bit uint8
		switch string(key) {
		case "Pss_Anon":
			dst, bit = &anon, 1
		case "Pss_Shmem":
			dst, bit = &shmem, 2
		default:
			continue
		}
		kb, found := bytes.CutSuffix(bytes.TrimSpace(rest), []byte(" kB"))
		if !found {
			return 0, 0, false
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(kb)), 10, 64)
		if err != nil || n > math.MaxUint64>>10 {
			return 0, 0, false
		}
		*dst = n << 10
		seen |= bit
	}
	if seen != 3 {
		return 0, 0, false
	}
	return anon, shmem, true
}

// OwnAnon is the calling process's anonymous resident memory (RssAnon),
// in bytes: /proc/self/statm's resident pages less its shared ones (file
// and shmem). It allocates only the path's 24 bytes (for the system
// call), so that reading it does not grow it: read through procfs from
// an idle tini-hot's supervisor, it cost 96 KiB of RssAnon (the heap's
// first spans of the size classes it used).
func OwnAnon() (uint64, error) {
	fd, err := unix.Open("/proc/self/statm", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	var buf [128]byte
	n, err := unix.Read(fd, buf[:])
	_ = unix.Close(fd)
	if err != nil {
		return 0, err
	}
	resident, shared, ok := parseStatm(buf[:n])
	if !ok {
		return 0, errors.New("/proc/self/statm: unexpected contents")
	}
	return (resident - shared) * uint64(unix.Getpagesize()), nil
}

// parseStatm reads the resident and shared page counts, the second and
// third of the space-separated decimal fields of /proc/PID/statm (size
// resident shared text lib data dt); ok is false unless both are there,
// fit, and shared is at most resident.
func parseStatm(b []byte) (resident, shared uint64, ok bool) {
	var fields [3]uint64
	i, digits := 0, 0
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			if fields[i] > (math.MaxUint64-9)/10 {
				return 0, 0, false
			}
			fields[i] = fields[i]*10 + uint64(c-'0')
			digits++
			continue
		case (c == ' ' || c == '\n') && digits > 0:
			i, digits = i+1, 0
		default:
			return 0, 0, false
		}
		if i == len(fields) {
			break
		}
	}
	if i < 2 || (i == 2 && digits == 0) || fields[2] > fields[1] {
		return 0, 0, false
	}
	return fields[1], fields[2], true
}
