package usage

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// writeFiles creates files (path → content) under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// A cgroup v2 tree in a temp dir, read by the real v2 code: the limit is
// the smallest memory.max of the group and its ancestors, the working set
// is memory.current minus inactive_file, OOM kills come from
// memory.events, and every read is fresh.
func TestV2(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{
		"kubepods/memory.max":                  "209715200\n",
		"kubepods/memory.current":              "300000000\n",
		"kubepods/memory.stat":                 "anon 1\n",
		"kubepods/pod1/memory.max":             "max\n",
		"kubepods/pod1/memory.current":         "150000000\n",
		"kubepods/pod1/memory.stat":            "anon 100000000\nfile 50000000\ninactive_file 30000000\n",
		"kubepods/pod1/memory.events":          "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		"kubepods/pod1/cgroup.controllers":     "memory pids\n",
		"kubepods/pod1/cgroup.subtree_control": "",
	})
	c, err := detect(true, strings.NewReader("0::/kubepods/pod1\n"), []*procfs.MountInfo{
		{MountPoint: "/proc", FSType: "proc", Root: "/"},
		{MountPoint: mnt, FSType: "cgroup2", Root: "/"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Version() != "v2" || c.Dir() != filepath.Join(mnt, "kubepods/pod1") {
		t.Fatalf("version %s dir %s", c.Version(), c.Dir())
	}
	m, err := c.Memory()
	if err != nil {
		t.Fatal(err)
	}
	want := Memory{Limit: 209715200, WorkingSet: 120000000, OOMKills: 1}
	if m != want {
		t.Fatalf("memory %+v, want %+v", m, want)
	}
	// In-place resize and another OOM kill: read again, not cached.
	writeFiles(t, mnt, map[string]string{
		"kubepods/pod1/memory.max":    "104857600\n",
		"kubepods/pod1/memory.events": "oom_kill 2\n",
	})
	if m, _ = c.Memory(); m.Limit != 104857600 || m.OOMKills != 2 {
		t.Fatalf("after resize: %+v", m)
	}
	// Opened stays what was read when the cgroup was opened.
	if o, err := c.Opened(); err != nil || o != want {
		t.Fatalf("opened %+v, %v, want %+v", o, err, want)
	}
	if m.Free() != 0 { // over the limit
		t.Fatalf("free %d", m.Free())
	}
}

// No limit anywhere is 0, and Free is unbounded.
func TestV2Unlimited(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{
		"memory.current": "1000\n",
		"memory.stat":    "inactive_file 10\n",
	})
	// With a cgroup namespace the group is "/".
	c, err := detect(true, strings.NewReader("0::/\n"), []*procfs.MountInfo{{MountPoint: mnt, FSType: "cgroup2", Root: "/"}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.Memory()
	if err != nil || m.Limit != 0 || m.WorkingSet != 990 || m.Free() == 0 {
		t.Fatalf("%+v %v (free %d)", m, err, m.Free())
	}
}

// A v1 memory controller tree in a temp dir: the limit is the
// hierarchical one, the working set usage minus total_inactive_file, OOM
// kills from memory.oom_control.
func TestV1(t *testing.T) {
	root := t.TempDir()
	mnt := filepath.Join(root, "memory")
	grp := map[string]string{
		"memory.stat":               "cache 0\nrss 0\nhierarchical_memory_limit 134217728\ntotal_inactive_file 4096\n",
		"memory.oom_control":        "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"memory.usage_in_bytes":     "50000000\n",
		"memory.limit_in_bytes":     "9223372036854771712\n",
		"memory.max_usage_in_bytes": "60000000\n",
		"memory.failcnt":            "0\n",
	}
	files := map[string]string{}
	for k, v := range grp {
		files["docker/abc/"+k] = v
	}
	writeFiles(t, mnt, files)
	for _, tc := range []struct {
		name, cgroup, root, dir string
	}{
		// The host's view: the whole hierarchy is mounted.
		{"host", "4:memory:/docker/abc\n", "/", "docker/abc"},
		// No cgroup namespace: the runtime mounted the container's
		// cgroup only, and /proc/self/cgroup names a path that does not
		// exist under the mount.
		{"container", "4:memory:/kubepods/burstable/pod1/ctr\n", "/kubepods/burstable/pod1/ctr", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mnt
			if tc.dir == "" {
				// That mount shows the container's cgroup as its root.
				m = filepath.Join(t.TempDir(), "memory")
				writeFiles(t, m, grp)
			}
			c, err := detect(false, strings.NewReader(tc.cgroup), []*procfs.MountInfo{
				{MountPoint: m, FSType: "cgroup", Root: tc.root, SuperOptions: map[string]string{"rw": "", "memory": ""}},
			})
			if err != nil {
				t.Fatal(err)
			}
			if c.Version() != "v1" || c.Dir() != filepath.Join(m, tc.dir) {
				t.Fatalf("version %s dir %s, want %s", c.Version(), c.Dir(), filepath.Join(m, tc.dir))
			}
			got, err := c.Memory()
			want := Memory{Limit: 134217728, WorkingSet: 50000000 - 4096, OOMKills: 2}
			if err != nil || got != want {
				t.Fatalf("memory %+v %v, want %+v", got, err, want)
			}
			if o, err := c.Opened(); err != nil || o != want {
				t.Fatalf("opened %+v %v, want %+v", o, err, want)
			}
		})
	}
}

func TestInMount(t *testing.T) {
	mnt := t.TempDir()
	writeFiles(t, mnt, map[string]string{"a/b/x": "", "b/x": "", "c/x": ""})
	for _, tc := range []struct{ root, p, want string }{
		{"/", "/a/b", "/a/b"},
		{"/a", "/a/b", "/b"},
		{"/a/b", "/a/b", "/"},
		{"/x", "/c", "/c"},      // outside the mount's root, but it exists
		{"/x", "/nope", "/"},    // the mount is the container's own cgroup
		{"/ab", "/a/b", "/a/b"}, // "/ab" is no prefix of "/a/b"
	} {
		if got := inMount(mnt, tc.root, tc.p); got != tc.want {
			t.Errorf("inMount(root %s, %s) = %s, want %s", tc.root, tc.p, got, tc.want)
		}
	}
}

func TestNone(t *testing.T) {
	c, err := detect(false, strings.NewReader("0::/\n"), nil)
	if err == nil || c.Version() != "none" {
		t.Fatalf("%v %v", c.Version(), err)
	}
	if m, err := c.Memory(); err != nil || m != (Memory{}) || m.Free() == 0 {
		t.Fatalf("%+v %v", m, err)
	}
	if m, err := c.Opened(); err != nil || m != (Memory{}) {
		t.Fatalf("opened %+v %v", m, err)
	}
}

// This machine's own cgroup, through Detect: under CI it must be found.
func TestDetectHere(t *testing.T) {
	c, err := Detect()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no memory cgroup under CI: %v", err)
		}
		t.Skip(err)
	}
	m, err := c.Memory()
	if err != nil || m.WorkingSet == 0 {
		t.Fatalf("%s %s: %+v %v", c.Version(), c.Dir(), m, err)
	}
}

// TestDeferred: a deferred container looks for nothing until it is used,
// then finds what Detect finds, once; each method's first call finds it.
func TestDeferred(t *testing.T) {
	want, wantErr := Detect()
	for name, use := range map[string]func(c *Container){
		"Found":   func(c *Container) { _ = c.Found() },
		"Version": func(c *Container) { c.Version() },
		"Dir":     func(c *Container) { c.Dir() },
		"Memory":  func(c *Container) { _, _ = c.Memory() },
		"Opened":  func(c *Container) { _, _ = c.Opened() },
	} {
		c := Deferred()
		if c.read != nil || c.version != "" {
			t.Fatalf("Deferred looked at once: %q", c.version)
		}
		use(c)
		if (c.Found() == nil) != (wantErr == nil) || c.Version() != want.Version() || c.Dir() != want.Dir() {
			t.Errorf("after %s: %s %q %v; Detect: %s %q %v", name, c.Version(), c.Dir(), c.Found(), want.Version(), want.Dir(), wantErr)
		}
		if _, err := c.Opened(); (err == nil) != (want.openErr == nil) {
			t.Errorf("after %s: opened %v; Detect: %v", name, err, want.openErr)
		}
	}
	var none *Container
	if err := none.Found(); err != nil || none.Version() != "none" {
		t.Errorf("nil container: %v %s", err, none.Version())
	}
	if err := (&Container{}).Found(); err != nil {
		t.Errorf("zero container: %v", err)
	}
}

func TestProcesses(t *testing.T) {
	f := Processes([]int{os.Getpid(), 1 << 30})
	if f.Processes != 1 || f.MemoryBytes == 0 || f.Threads < 1 || f.FDs < 3 {
		t.Fatalf("%+v", f)
	}
	var sum Figures
	sum.Add(f)
	sum.Add(f)
	if sum.Processes != 2 || sum.MemoryBytes != 2*f.MemoryBytes {
		t.Fatalf("%+v", sum)
	}
}

// TestMain runs the test binary as the helper of TestSharedMemory when
// USAGE_MAP is set: it maps fd 3 shared, reads every page, says "mapped"
// and waits for its stdin to close.
func TestMain(m *testing.M) {
	if os.Getenv("USAGE_MAP") == "1" {
		mem, err := unix.Mmap(3, 0, sharedSize, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		var sum byte
		for i := 0; i < len(mem); i += os.Getpagesize() {
			sum += mem[i]
		}
		fmt.Println("mapped", sum)
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const sharedSize = 64 << 20

// TestSharedMemory: 64 MiB of shared memory (a memfd) mapped by this
// process and a child counts, and counts once: MAP_SHARED memory is
// shmem, not RssAnon, so it used to count as nothing, and each process
// mapping it has all of it resident, so RSS would count it twice.
func TestSharedMemory(t *testing.T) {
	fd, err := unix.MemfdCreate("usage-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	memfd := os.NewFile(uintptr(fd), "memfd")
	defer memfd.Close()
	if err := memfd.Truncate(sharedSize); err != nil {
		t.Fatal(err)
	}
	mem, err := unix.Mmap(fd, 0, sharedSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for i := 0; i < len(mem); i += os.Getpagesize() {
		mem[i] = 1
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "USAGE_MAP=1")
	cmd.ExtraFiles = []*os.File{memfd}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stdin.Close(); _ = cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "mapped") {
		t.Fatalf("helper: %q %v", line, err)
	}
	self := Processes([]int{os.Getpid()})
	both := Processes([]int{os.Getpid(), cmd.Process.Pid})
	rss := func(pid int) uint64 {
		p, err := procfs.NewProc(pid)
		if err != nil {
			t.Fatal(err)
		}
		st, err := p.NewStatus()
		if err != nil {
			t.Fatal(err)
		}
		return st.RssShmem
	}
	t.Logf("this process %d MiB; with the helper %d MiB; RssShmem %d + %d MiB", self.MemoryBytes>>20, both.MemoryBytes>>20, rss(os.Getpid())>>20, rss(cmd.Process.Pid)>>20)
	// Each maps all 64 MiB (RssShmem), half of it each in PSS. The two
	// processes' own anonymous memory comes on top: a Go test binary's is
	// a few MiB, about 16 under the race detector, less than the 64 MiB
	// that counting the shared memory twice would add.
	if both.MemoryBytes < sharedSize || both.MemoryBytes >= 2*sharedSize {
		t.Fatalf("two processes sharing %d MiB use %d MiB", sharedSize>>20, both.MemoryBytes>>20)
	}
	if self.MemoryBytes < sharedSize/2 {
		t.Fatalf("this process maps %d MiB shared and uses %d MiB", sharedSize>>20, self.MemoryBytes>>20)
	}
}

func TestParseRollup(t *testing.T) {
	for _, tc := range []struct {
		in          string
		anon, shmem uint64
		ok          bool
	}{
		{"5654fff72000-7ffc94409000 ---p 00000000 00:00 0 [rollup]\nRss: 1612 kB\nPss_Anon:  112 kB\nPss_File:  640 kB\nPss_Shmem:  3 kB\n", 112 << 10, 3 << 10, true},
		{"Pss_Shmem: 0 kB\nPss_Anon: 1 kB", 1 << 10, 0, true},
		{"Rss: 1612 kB\nPss: 752 kB\n", 0, 0, false}, // before Linux 5.8
		{"Pss_Anon: 1 kB\n", 0, 0, false},
		{"Pss_Anon: 1\nPss_Shmem: 1 kB\n", 0, 0, false},
		{"Pss_Anon: -1 kB\nPss_Shmem: 1 kB\n", 0, 0, false},
		{"Pss_Anon: 18014398509481984 kB\nPss_Shmem: 1 kB\n", 0, 0, false},
	} {
		anon, shmem, ok := parseRollup([]byte(tc.in))
		if anon != tc.anon || shmem != tc.shmem || ok != tc.ok {
			t.Errorf("parseRollup(%q) = %d, %d, %v; want %d, %d, %v", tc.in, anon, shmem, ok, tc.anon, tc.shmem, tc.ok)
		}
	}
}

// FuzzParseRollup: never a panic; what it accepts has both lines, whose
// kB it returns in bytes.
func FuzzParseRollup(f *testing.F) {
	f.Add([]byte("Pss_Anon:  112 kB\nPss_File:  640 kB\nPss_Shmem:  3 kB\n"))
	f.Add([]byte("Pss_Anon: 18014398509481983 kB\nPss_Shmem: 18014398509481983 kB"))
	f.Fuzz(func(t *testing.T, b []byte) {
		anon, shmem, ok := parseRollup(b)
		if !ok {
			if anon != 0 || shmem != 0 {
				t.Fatalf("rejected %q with %d, %d", b, anon, shmem)
			}
			return
		}
		if anon%1024 != 0 || shmem%1024 != 0 || !bytes.Contains(b, []byte("Pss_Anon:")) || !bytes.Contains(b, []byte("Pss_Shmem:")) {
			t.Fatalf("parseRollup(%q) = %d, %d", b, anon, shmem)
		}
	})
}

// FuzzDetect: whatever /proc/self/cgroup says, detection never panics, and
// the directory it picks is below the mount.
func FuzzDetect(f *testing.F) {
	mnt := f.TempDir()
	writeFiles(f, mnt, map[string]string{"a/memory.current": "1\n", "a/memory.stat": "inactive_file 0\n"})
	f.Add("0::/a\n", "/")
	f.Add("4:memory:/x/y\n", "/x")
	f.Add("0::/../../etc\n", "/..")
	f.Fuzz(func(t *testing.T, cgroupFile, root string) {
		for _, unified := range []bool{true, false} {
			c, _ := detect(unified, strings.NewReader(cgroupFile), []*procfs.MountInfo{
				{MountPoint: mnt, FSType: "cgroup2", Root: root},
				{MountPoint: filepath.Join(mnt, "memory"), FSType: "cgroup", Root: root, SuperOptions: map[string]string{"memory": ""}},
			})
			if d := c.Dir(); d != "" && !strings.HasPrefix(d, mnt) {
				t.Fatalf("cgroup dir %s outside the mount %s", d, mnt)
			}
			_, _ = c.Memory()
		}
	})
}

func TestMiB(t *testing.T) {
	for b, want := range map[uint64]string{
		0:                "0 MiB",
		128 << 20:        "128 MiB",
		57<<20 + 820<<10: "57.8 MiB",
		1 << 19:          "0.5 MiB",
	} {
		if got := MiB(b); got != want {
			t.Errorf("MiB(%d) = %q, want %q", b, got, want)
		}
	}
	for b, want := range map[uint64]string{0: "no limit", 96 << 20: "limit 96 MiB", 1 << 19: "limit 0.5 MiB"} {
		if got := LimitMiB(b); got != want {
			t.Errorf("LimitMiB(%d) = %q, want %q", b, got, want)
		}
	}
}

// TestOwnAnon: /proc/self/statm's resident less shared pages is the
// RssAnon of /proc/self/status, read by procfs, within what the reads in
// between may change; and it sees 4 MiB more once they are touched.
func TestOwnAnon(t *testing.T) {
	p, err := procfs.Self()
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.NewStatus()
	if err != nil {
		t.Fatal(err)
	}
	own, err := OwnAnon()
	if err != nil {
		t.Fatal(err)
	}
	if diff := int64(own) - int64(st.RssAnon); diff < -256<<10 || diff > 256<<10 {
		t.Errorf("OwnAnon %d bytes, RssAnon %d", own, st.RssAnon)
	}
	b := make([]byte, 4<<20)
	for i := range b {
		b[i] = 1 // touched: resident
	}
	after, err := OwnAnon()
	runtime.KeepAlive(b)
	if err != nil || after < own+3<<20 {
		t.Errorf("OwnAnon() = %d, %v after touching 4 MiB, %d before", after, err, own)
	}
}

func TestParseStatm(t *testing.T) {
	for in, want := range map[string][2]uint64{
		"4411 2296 1008 305 0 1240 0\n": {2296, 1008},
		"1 2 2":                         {2, 2},
		"1 2 1\n":                       {2, 1},
	} {
		r, s, ok := parseStatm([]byte(in))
		if !ok || r != want[0] || s != want[1] {
			t.Errorf("parseStatm(%q) = %d, %d, %v; want %d, %d", in, r, s, ok, want[0], want[1])
		}
	}
	for _, in := range []string{"", "1 2", "1 2 3", "1  2 1", "1 x 1", "1 2 1x", "1 99999999999999999999 1", " 1 2 1"} {
		if _, _, ok := parseStatm([]byte(in)); ok {
			t.Errorf("parseStatm(%q) ok", in)
		}
	}
}

// FuzzParseStatm: never a panic; what it accepts is three decimal
// fields it reads back.
func FuzzParseStatm(f *testing.F) {
	f.Add([]byte("4411 2296 1008 305 0 1240 0\n"))
	f.Add([]byte("1 2 1"))
	f.Add([]byte("18446744073709551615 18446744073709551615 1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, s, ok := parseStatm(b)
		if !ok {
			return
		}
		if s > r {
			t.Fatalf("shared %d over resident %d", s, r)
		}
		fields := strings.FieldsFunc(string(b), func(c rune) bool { return c == ' ' || c == '\n' })
		if len(fields) < 3 {
			t.Fatalf("parseStatm(%q) accepted fewer than 3 fields", b)
		}
		r2, err1 := strconv.ParseUint(fields[1], 10, 64)
		s2, err2 := strconv.ParseUint(fields[2], 10, 64)
		if err1 != nil || err2 != nil || r2 != r || s2 != s {
			t.Fatalf("parseStatm(%q) = %d, %d", b, r, s)
		}
	})
}
