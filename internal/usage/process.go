package usage

import "github.com/prometheus/procfs"

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
