package usage

import (
	"errors"
	"math"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// Figures are what a set of processes uses.
type Figures struct {
	// AnonBytes is their anonymous resident memory (RssAnon): what
	// another copy of them would need.
	AnonBytes  uint64
	Processes  int
	Threads    int
	FDs        int
	CPUSeconds float64
}

// Add adds o to f.
func (f *Figures) Add(o Figures) {
	f.AnonBytes += o.AnonBytes
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
		f.AnonBytes += status.RssAnon
		if n, err := p.FileDescriptorsLen(); err == nil {
			f.FDs += n
		}
	}
	return f
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
