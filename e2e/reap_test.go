package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// orphanScript makes 10,000 orphans: 100 subshells each start 100
// background jobs and exit at once, so the jobs are reparented to the
// init (or the subreaper), most of them as zombies already. Around it the
// script reports "idle" and "done" in $OUT and waits on the fifo $GO.
const orphanScript = `
echo idle >> "$OUT"; read x < "$GO"
i=0
while [ $i -lt 100 ]; do
	( j=0; while [ $j -lt 100 ]; do : & j=$((j+1)); done )
	i=$((i+1))
done
echo done >> "$OUT"; read x < "$GO"
`

// TestOrphansReaped runs the 10,000-orphan script under each init and mode
// and requires that no zombie is left below the init. It logs the time to
// make and reap the orphans and the init's idle RSS: go test -v -run
// TestOrphansReaped ./e2e prints them side by side.
func TestOrphansReaped(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 forks take about 20 s per init on 2 cores")
	}
	for _, bin := range inits(t) {
		for _, m := range modes {
			t.Run(bin.name+"/"+m.name, func(t *testing.T) {
				dir := t.TempDir()
				out, fifo := filepath.Join(dir, "out"), filepath.Join(dir, "go")
				if err := syscall.Mkfifo(fifo, 0o600); err != nil {
					t.Fatal(err)
				}
				env := []string{"OUT=" + out, "GO=" + fifo}
				p := startInit(t, bin, m, env, initArgs(m, "--", "sh", "-c", orphanScript)...)
				waitLine(t, out, "idle")
				rss := rssKiB(t, p.initPid())
				start := time.Now()
				release(t, fifo)
				waitLineWithin(t, out, "done", 3*time.Minute)
				made := time.Since(start)
				left := waitFor(t, "no zombie below the init", func() (int, bool) {
					z := zombies(p.initPid())
					return z, z == 0
				})
				reaped := time.Since(start)
				release(t, fifo)
				if code := p.wait(); code != 0 {
					t.Fatalf("exit status %d; output:\n%s", code, p.stderr)
				}
				t.Logf("%s as %s: idle RSS %d KiB; 10,000 orphans made in %v, all reaped %v after start (%d zombies left)",
					bin.name, m.name, rss, made.Round(time.Millisecond), reaped.Round(time.Millisecond), left)
			})
		}
	}
}

// release lets a script blocked in `read x < fifo` go on.
func release(t testing.TB, fifo string) {
	t.Helper()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "go")
	f.Close()
}

// zombies counts the zombies below pid.
func zombies(pid int) int {
	n := 0
	for _, state := range descendants(pid) {
		if state == "Z" {
			n++
		}
	}
	return n
}

// rssKiB reads VmRSS of pid.
func rssKiB(t testing.TB, pid int) int { return statusKiB(t, pid, "VmRSS") }

// statusKiB reads a field in kB of /proc/PID/status: VmRSS, RssAnon.
func statusKiB(t testing.TB, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				t.Fatalf("%s %q: %v", field, rest, err)
			}
			return n
		}
	}
	t.Fatalf("no %s for pid %d", field, pid)
	return 0
}

// leftoverScript starts descendants that outlive it: a plain background
// job, one that called setsid, a double-forked one and one that ignores
// SIGTERM; the first three record SIGTERM in $LOG. Each reports "NAME up"
// in $OUT once its trap is set; the script then waits on the fifo $GO and
// exits 3.
const leftoverScript = `
job='trap "echo $0 >> \"$LOG\"; exit 0" TERM; echo "$0 up" >> "$OUT"; while :; do sleep 0.1; done'
sh -c "$job" plain &
setsid sh -c "$job" setsid &
( sh -c "$job" orphan & )
sh -c 'trap "" TERM; echo "deaf up" >> "$OUT"; while :; do sleep 0.1; done' &
read x < "$GO"
exit 3
`

// TestLeftoversTerminated checks that processes left when the main child
// exits get SIGTERM, then SIGKILL after --kill-timeout, and that tini-hot
// exits with the child's status only once none is left.
func TestLeftoversTerminated(t *testing.T) {
	bin := initBin{"tini-hot", tiniHot}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			out, fifo, log := filepath.Join(dir, "out"), filepath.Join(dir, "go"), filepath.Join(dir, "log")
			if err := syscall.Mkfifo(fifo, 0o600); err != nil {
				t.Fatal(err)
			}
			env := []string{"OUT=" + out, "GO=" + fifo, "LOG=" + log}
			p := startInit(t, bin, m, env, initArgs(m, "--kill-timeout", "1s", "--", "sh", "-c", leftoverScript)...)
			for _, job := range []string{"plain", "setsid", "orphan", "deaf"} {
				waitLine(t, out, job+" up")
			}
			before := descendants(p.initPid())
			start := time.Now()
			release(t, fifo)
			if code := p.wait(); code != 3 {
				t.Fatalf("exit status %d, want 3; output:\n%s", code, p.stderr)
			}
			took := p.ended.Sub(start)
			for _, name := range []string{"plain", "setsid", "orphan"} {
				if !strings.Contains(readFile(log), name+"\n") {
					t.Errorf("%s job did not get SIGTERM; log:\n%s", name, readFile(log))
				}
			}
			for pid := range before {
				if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
					t.Errorf("pid %d still exists after tini-hot exited", pid)
				}
			}
			// The TERM-ignoring job holds tini-hot until SIGKILL at 1 s.
			if took < time.Second || took > 5*time.Second {
				t.Errorf("exited %v after the child, want the 1s kill timeout", took)
			}
			t.Logf("%s: %d leftovers ended, tini-hot exited %v after its child", m.name, len(before), took.Round(time.Millisecond))
		})
	}
}
