// Package affinity runs tini-hot's threads on one CPU for a moment: work
// made of round trips between threads costs about half there. os/signal
// enables each signal with a round trip between the subscribing goroutine
// and the runtime's signal-mask thread, and a wake-up across CPUs costs
// more than one on the same CPU, the more so in a virtual machine.
// Measured on 2 CPUs, medians of 300 interleaved runs of
// `tini-hot -- /bin/true`: the 17 subscriptions made before the fork
// took 0.74 ms on two processors and 0.18-0.24 ms with every thread on
// one CPU (0.57 ms with only the subscribing thread on it: the runtime
// hands the work to its other threads too).
package affinity

import (
	"os"
	"slices"
	"strconv"
	"syscall"
	"unsafe"
)

// It imports syscall, not golang.org/x/sys/unix: internal/sighold/atstart
// pins from its initialiser, which must not wait for x/sys/unix's (the Go
// specification initialises x/sys/unix late, after most of what tini-hot
// links).

// cpuSet is the kernel's cpu_set_t for up to 1024 CPUs, as unix.CPUSet.
type cpuSet [16]uint64

func (s *cpuSet) set(cpu int)        { s[cpu/64] |= 1 << (cpu % 64) }
func (s *cpuSet) isSet(cpu int) bool { return cpu < len(s)*64 && s[cpu/64]&(1<<(cpu%64)) != 0 }

func (s *cpuSet) count() int {
	n := 0
	for _, w := range s {
		for ; w != 0; w &= w - 1 {
			n++
		}
	}
	return n
}

// getaffinity and setaffinity are sched_getaffinity(2) and
// sched_setaffinity(2) of thread tid (0: the caller).
func getaffinity(tid int, s *cpuSet) error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, uintptr(tid), unsafe.Sizeof(*s), uintptr(unsafe.Pointer(s)))
	if errno != 0 {
		return errno
	}
	return nil
}

func setaffinity(tid int, s *cpuSet) error {
	_, _, errno := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(*s), uintptr(unsafe.Pointer(s)))
	if errno != 0 {
		return errno
	}
	return nil
}

// Pin puts every thread of the process on the CPU the caller runs on, and
// returns the function that gives them all the caller's CPUs back, those
// started meanwhile too (a thread inherits the CPUs of the one that
// starts it). Call unpin once, soon: it is for a moment's work.
//
// No process is forked while pinned, since a child inherits the forking
// thread's CPUs: Pin holds [syscall.ForkLock] for reading until unpin,
// and every fork of the standard library (syscall.ForkExec, os/exec)
// takes it for writing, so waits. A fork between Pin and unpin, in the
// same goroutine, would wait for ever.
//
// It is best effort: where the CPUs cannot be read or set (a sandbox that
// forbids it, more than 1024 CPUs) or there is one CPU
// only, Pin changes nothing and unpin does nothing.
func Pin() (unpin func()) {
	var orig cpuSet
	if err := getaffinity(0, &orig); err != nil || orig.count() < 2 {
		return func() {}
	}
	cpu, ok := current()
	if !ok || !orig.isSet(cpu) {
		return func() {}
	}
	var one cpuSet
	one.set(cpu)
	syscall.ForkLock.RLock()
	settle(&one)
	return func() {
		defer syscall.ForkLock.RUnlock()
		settle(&orig)
	}
}

// settle gives every thread of the process the CPUs in set, those started
// meanwhile too: a thread started by one not yet set, after the pass read
// the list, inherits the CPUs of before, and is found on the next pass.
// It ends after a pass that finds no thread it had not set: every thread
// that pass read had been set before it, so none started another with the
// old CPUs.
func settle(set *cpuSet) {
	var done []int
	for {
		found := false
		for _, tid := range threads() {
			if slices.Contains(done, tid) {
				continue
			}
			found = true
			_ = setaffinity(tid, set) // one gone meanwhile has no CPUs to set
			done = append(done, tid)
		}
		if !found {
			return
		}
	}
}

// threads are the thread ids of the process, none if /proc cannot be
// read.
func threads() []int {
	entries, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	tids := make([]int, 0, len(entries))
	for _, e := range entries {
		if tid, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, tid)
		}
	}
	return tids
}

// current is the CPU the calling thread runs on (getcpu(2)).
func current() (int, bool) {
	var cpu, node uint32
	_, _, errno := syscall.RawSyscall(sysGetcpu, uintptr(unsafe.Pointer(&cpu)), uintptr(unsafe.Pointer(&node)), 0)
	return int(cpu), errno == 0
}
