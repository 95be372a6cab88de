package usage

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	v1stats "github.com/containerd/cgroups/v3/cgroup1/stats"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/prometheus/procfs"
)

// Memory is the container's memory, in bytes.
type Memory struct {
	// Limit is the memory limit; 0 means unlimited.
	Limit uint64
	// WorkingSet is the usage minus the inactive file cache: the figure
	// the kubelet evicts on and the OOM killer compares with the limit.
	WorkingSet uint64
	// OOMKills counts the processes the OOM killer killed in the cgroup.
	OOMKills uint64
}

// Free is the memory left below the limit (0 when over it);
// math.MaxUint64 when there is no limit.
func (m Memory) Free() uint64 {
	switch {
	case m.Limit == 0:
		return math.MaxUint64
	case m.WorkingSet >= m.Limit:
		return 0
	}
	return m.Limit - m.WorkingSet
}

// MiB formats a byte count in MiB: whole when it is whole (a limit reads
// as it was set, "128 MiB"), else to one decimal ("57.8 MiB").
func MiB(b uint64) string {
	if b%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
}

// LimitMiB words a memory limit for a message: "limit 128 MiB", or "no
// limit" for 0.
func LimitMiB(limit uint64) string {
	if limit == 0 {
		return "no limit"
	}
	return "limit " + MiB(limit)
}

// unlimited: a v1 limit this large is no limit (the kernel shows
// PAGE_COUNTER_MAX pages, 9223372036854771712 with 4 KiB pages).
const unlimited = 1 << 62

// Container is the memory cgroup tini-hot runs in. The zero value, or
// one that found no cgroup, reports Version "none".
type Container struct {
	// deferred: found at the first use (see Deferred), once; detectErr
	// is why none was.
	deferred  bool
	once      sync.Once
	detectErr error

	version string // "v1", "v2" or "none"
	dir     string // the cgroup's directory (for messages)
	read    func() (Memory, error)
	// opened and openErr are the read made when the cgroup was opened.
	opened  Memory
	openErr error
}

// Deferred is the memory cgroup of the calling process as [Detect] finds
// it, found at the first call of one of its methods rather than now: at
// start, tini-hot starts the application first, then looks (0.3 ms, on
// the way to the fork before).
func Deferred() *Container { return &Container{deferred: true} }

// load finds a deferred container, once.
func (c *Container) load() {
	if c == nil || !c.deferred {
		return
	}
	c.once.Do(func() {
		d, err := Detect()
		c.version, c.dir, c.read, c.opened, c.openErr = d.version, d.dir, d.read, d.opened, d.openErr
		c.detectErr = err
	})
}

// Found finds a deferred container now, if it was not yet, and returns
// why no memory cgroup was found; nil when one was, and for a container
// that is not deferred.
func (c *Container) Found() error {
	c.load()
	if c == nil {
		return nil
	}
	return c.detectErr
}

// Version is "v1", "v2" or "none".
func (c *Container) Version() string {
	c.load()
	if c == nil || c.read == nil {
		return "none"
	}
	return c.version
}

// Dir is the cgroup's directory, "" for none.
func (c *Container) Dir() string {
	c.load()
	if c == nil {
		return ""
	}
	return c.dir
}

// Memory reads the limit, the working set and the OOM kills now.
func (c *Container) Memory() (Memory, error) {
	c.load()
	if c == nil || c.read == nil {
		return Memory{}, nil
	}
	return c.read()
}

// Opened is what the cgroup read when it was opened (by Detect, OpenV1
// or OpenV2), and that read's error: a baseline for the start, without
// reading it again.
func (c *Container) Opened() (Memory, error) {
	c.load()
	if c == nil || c.read == nil {
		return Memory{}, nil
	}
	return c.opened, c.openErr
}

// Detect finds the memory cgroup of the calling process: cgroup v2, or
// the v1 memory controller (legacy or hybrid hierarchies). Without one,
// it returns a Container of version "none" and the reason.
func Detect() (*Container, error) {
	mode := cgroups.Mode()
	if mode == cgroups.Unavailable {
		return &Container{}, errors.New("no cgroup filesystem at /sys/fs/cgroup")
	}
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return &Container{}, err
	}
	defer f.Close()
	mounts, err := procfs.GetMounts() // /proc/self/mountinfo
	if err != nil {
		return &Container{}, err
	}
	return detect(mode == cgroups.Unified, f, mounts)
}

// detect is Detect with /proc/self/cgroup and the mount table given.
func detect(unified bool, cgroupFile io.Reader, mounts []*procfs.MountInfo) (*Container, error) {
	v1paths, v2path, err := cgroups.ParseCgroupFromReaderUnified(cgroupFile)
	if err != nil {
		return &Container{}, fmt.Errorf("/proc/self/cgroup: %w", err)
	}
	for _, m := range mounts {
		switch {
		case unified && m.FSType == "cgroup2":
			return OpenV2(m.MountPoint, inMount(m.MountPoint, m.Root, v2path))
		case !unified && m.FSType == "cgroup" && hasOption(m.SuperOptions, "memory"):
			p, ok := v1paths["memory"]
			if !ok {
				return &Container{}, errors.New("/proc/self/cgroup names no memory cgroup")
			}
			return OpenV1(m.MountPoint, inMount(m.MountPoint, m.Root, p))
		}
	}
	return &Container{}, errors.New("no memory cgroup mounted")
}

// inMount finds the directory of cgroup p (a path from /proc/self/cgroup,
// relative to the hierarchy's root) under a mount of the hierarchy's
// subtree root at mountPoint, relative to mountPoint.
//
// Without a cgroup namespace, /proc/self/cgroup names the cgroup from the
// host's root (/kubepods/pod…/ctr) while the container's runtime mounted
// only that cgroup, at /sys/fs/cgroup/memory: the mount's root (mountinfo
// field 4) is that path too, or "/" when the runtime bind-mounted the
// directory itself. The path below the mount is p relative to the mount's
// root; when that does not exist, the cgroup mounted is the container's
// own, the mount's root "/".
func inMount(mountPoint, root, p string) string {
	p = path.Clean("/" + p)
	if rel, ok := strings.CutPrefix(p, path.Clean(root)); ok && (rel == "" || rel[0] == '/' || root == "/") {
		if exists(filepath.Join(mountPoint, rel)) {
			return path.Clean("/" + rel)
		}
	}
	if exists(filepath.Join(mountPoint, p)) {
		return p
	}
	return "/"
}

func hasOption(opts map[string]string, name string) bool {
	_, ok := opts[name]
	return ok
}

func exists(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}

// OpenV1 is the v1 memory cgroup group under the memory controller
// mounted at mountPoint.
func OpenV1(mountPoint, group string) (*Container, error) {
	dir := filepath.Join(mountPoint, group)
	// The controller takes the hierarchy's root and adds "memory".
	root, name := filepath.Split(filepath.Clean(mountPoint))
	if name != string(cgroup1.Memory) {
		return &Container{}, fmt.Errorf("memory cgroup mounted at %s, not at …/memory", mountPoint)
	}
	ctl := cgroup1.NewMemory(root, cgroup1.IgnoreModules("memsw", "kmem", "kmem.tcp"))
	c := &Container{version: "v1", dir: dir, read: func() (Memory, error) {
		var st v1stats.Metrics
		if err := ctl.Stat(group, &st); err != nil {
			return Memory{}, err
		}
		m := Memory{OOMKills: st.MemoryOomControl.GetOomKill()}
		// The hierarchical limit is the smallest of the group's and its
		// ancestors'.
		if l := st.Memory.GetHierarchicalMemoryLimit(); l < unlimited {
			m.Limit = l
		}
		if l := st.Memory.GetUsage().GetLimit(); l != 0 && l < unlimited && (m.Limit == 0 || l < m.Limit) {
			m.Limit = l
		}
		m.WorkingSet = sub(st.Memory.GetUsage().GetUsage(), st.Memory.GetTotalInactiveFile())
		return m, nil
	}}
	c.opened, c.openErr = c.read()
	return c, c.openErr
}

// OpenV2 is the cgroup v2 group under the unified hierarchy mounted at
// mountPoint.
func OpenV2(mountPoint, group string) (*Container, error) {
	load := func(g string) (*cgroup2.Manager, error) {
		return cgroup2.Load(g, cgroup2.WithMountpoint(mountPoint))
	}
	own, err := load(group)
	if err != nil {
		return &Container{}, err
	}
	// The groups whose memory.max bounds this one: itself and its
	// ancestors below the mount.
	var ancestors []*cgroup2.Manager
	for g := path.Dir(group); g != "/" && g != "."; g = path.Dir(g) {
		m, err := load(g)
		if err != nil {
			return &Container{}, err
		}
		ancestors = append(ancestors, m)
	}
	c := &Container{version: "v2", dir: filepath.Join(mountPoint, group), read: func() (Memory, error) {
		st, err := own.StatFiltered(cgroup2.StatMemory | cgroup2.StatMemoryEvents)
		if err != nil {
			return Memory{}, err
		}
		if st.Memory == nil || !exists(filepath.Join(mountPoint, group)) {
			return Memory{}, fmt.Errorf("cgroup %s: no memory controller", group)
		}
		m := Memory{
			Limit:      limitV2(st.Memory.UsageLimit),
			WorkingSet: sub(st.Memory.Usage, st.Memory.InactiveFile),
			OOMKills:   st.MemoryEvents.GetOomKill(),
		}
		for _, a := range ancestors {
			ast, err := a.StatFiltered(cgroup2.StatMemory)
			if err != nil || ast.Memory == nil {
				continue
			}
			if l := limitV2(ast.Memory.UsageLimit); l != 0 && (m.Limit == 0 || l < m.Limit) {
				m.Limit = l
			}
		}
		return m, nil
	}}
	c.opened, c.openErr = c.read()
	return c, c.openErr
}

// limitV2 is memory.max as a limit: "max" (read as MaxUint64) and a
// missing file (0, the root group) are no limit.
func limitV2(v uint64) uint64 {
	if v >= unlimited {
		return 0
	}
	return v
}

func sub(a, b uint64) uint64 {
	if b > a {
		return 0
	}
	return a - b
}
