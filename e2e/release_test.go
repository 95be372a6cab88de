package e2e

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/tini-hot/tini-hot/internal/imagebuild"
)

// releaseVersion is what TestRelease stamps its release with.
const releaseVersion = "v0.0.0-e2e"

// releaseArchs are the release's architectures: file name, ELF machine,
// and OCI platform.
var releaseArchs = []struct {
	name     string
	machine  elf.Machine
	platform string
}{
	{"amd64", elf.EM_X86_64, "linux/amd64"},
	{"arm64", elf.EM_AARCH64, "linux/arm64"},
	{"armv7", elf.EM_ARM, "linux/arm/v7"},
	{"386", elf.EM_386, "linux/386"},
	{"ppc64le", elf.EM_PPC64, "linux/ppc64le"},
	{"s390x", elf.EM_S390, "linux/s390x"},
	{"riscv64", elf.EM_RISCV, "linux/riscv64"},
}

// TestRelease runs the release command (go -C release run .) and checks
// what it made: SHA256SUMS holds for every file; each binary is a static
// ELF for its architecture; the arm64 and riscv64 binaries, run under
// qemu-user-static, pass the exit-status cases as PID 1 and print their
// version; the amd64 .deb installs with dpkg and its
// tini-hot answers `version`; the image's manifest list names every
// architecture.
func TestRelease(t *testing.T) {
	// Beside the others: most of its time is compiling, theirs waiting.
	t.Parallel()
	requirePodman(t)
	for _, prog := range []string{"qemu-aarch64-static", "qemu-riscv64-static"} {
		if _, err := exec.LookPath(prog); err != nil {
			need(t, "%s (Debian package qemu-user-static)", prog)
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		need(t, "dpkg")
	}
	dist := t.TempDir()
	image := "localhost/tini-hot-e2e-release"
	env, err := imagebuild.Env()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "-C", "../release", "run", ".", "-o", dist, "-version", releaseVersion, "-image-name", image)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	// Whatever it made is removed when the tests end.
	imagebuild.MadeList(image + ":" + releaseVersion)
	for _, a := range releaseArchs {
		imagebuild.Made(image + ":" + releaseVersion + "-" + a.name)
	}
	if err != nil {
		t.Fatalf("release: %v\n%s", err, out)
	}
	t.Logf("release:\n%s", out)

	sums := exec.Command("sha256sum", "-c", "SHA256SUMS")
	sums.Dir = dist
	if b, err := sums.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, b)
	} else if n := strings.Count(string(b), ": OK\n"); n != 7*4+1 {
		t.Errorf("SHA256SUMS holds %d files, want 7 binaries, 21 packages and the image:\n%s", n, b)
	}

	bins := map[string]string{}
	for _, a := range releaseArchs {
		bin := filepath.Join(dist, fmt.Sprintf("tini-hot_%s_linux_%s", releaseVersion, a.name))
		bins[a.name] = bin
		f, err := elf.Open(bin)
		if err != nil {
			t.Errorf("%s: %v", a.name, err)
			continue
		}
		if f.Machine != a.machine {
			t.Errorf("%s: machine %v, want %v", a.name, f.Machine, a.machine)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s: dynamically linked (PT_INTERP): it would not run FROM scratch", a.name)
			}
		}
		f.Close()
	}

	t.Run("qemu", func(t *testing.T) {
		for _, arch := range []struct{ release, qemu string }{{"arm64", "aarch64"}, {"riscv64", "riscv64"}} {
			registerQemu(t, arch.qemu)
			bin := initBin{"tini-hot-" + arch.release, bins[arch.release]}
			version := regexp.MustCompile(`^tini-hot ` + regexp.QuoteMeta(releaseVersion) + ` \(commit [0-9a-f]{40}(-dirty)?, go1\.[0-9.]+ linux/` + arch.release + `\)\n$`)
			p := startInit(t, bin, mode{name: "plain"}, nil, "version")
			if code := p.wait(); code != 0 || !version.MatchString(p.stderr.String()) {
				t.Errorf("%s version under qemu: status %d, %q, want it to match %s", arch.release, code, p.stderr, version)
			}
			// As PID 1 only: qemu-user (Debian's 7.2) refuses
			// PR_SET_CHILD_SUBREAPER (EINVAL), which a subreaper needs.
			testExitStatus(t, bin, []mode{{"pid1", true}})
		}
	})

	t.Run("dpkg", func(t *testing.T) {
		root := t.TempDir()
		for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range []string{"var/lib/dpkg/status", "var/lib/dpkg/available"} {
			if err := os.WriteFile(filepath.Join(root, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		deb := filepath.Join(dist, "tini-hot_0.0.0~e2e_amd64.deb")
		// --root: installed into a directory of the test's, the host's
		// packages untouched.
		if b, err := exec.Command("dpkg", "--root", root, "--force-not-root", "--force-script-chrootless", "-i", deb).CombinedOutput(); err != nil {
			t.Fatalf("dpkg -i %s: %v\n%s", filepath.Base(deb), err, b)
		}
		b, err := exec.Command("dpkg", "--root", root, "-s", "tini-hot").CombinedOutput()
		if err != nil || !strings.Contains(string(b), "Status: install ok installed") {
			t.Fatalf("dpkg -s tini-hot: %v\n%s", err, b)
		}
		b, err = exec.Command(filepath.Join(root, "usr/bin/tini-hot"), "version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(b), "tini-hot "+releaseVersion+" (commit ") {
			t.Fatalf("the installed tini-hot version: %v: %q", err, b)
		}
		t.Logf("dpkg installed %s; /usr/bin/tini-hot version: %s", filepath.Base(deb), strings.TrimSpace(string(b)))
	})

	t.Run("manifest", func(t *testing.T) {
		var list struct {
			Manifests []struct {
				Platform struct{ Architecture, Variant, OS string }
			}
		}
		if err := json.Unmarshal([]byte(podman(t, "manifest", "inspect", image+":"+releaseVersion)), &list); err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, m := range list.Manifests {
			p := m.Platform.OS + "/" + m.Platform.Architecture
			if m.Platform.Variant != "" {
				p += "/" + m.Platform.Variant
			}
			got = append(got, p)
		}
		for _, a := range releaseArchs {
			want = append(want, a.platform)
		}
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("the image's manifest list: %v, want %v", got, want)
		}
		t.Logf("%s:%s lists %v", image, releaseVersion, got)
	})
}

// registerQemu makes the kernel run arch's binaries with Debian's
// qemu-user-static, as its package registers them on a machine with
// systemd, for this test only: what was registered already stays, what it
// registers is removed when it ends.
func registerQemu(t *testing.T, arch string) {
	t.Helper()
	const dir = "/proc/sys/fs/binfmt_misc"
	if _, err := os.Stat(dir + "/register"); err != nil {
		if err := syscall.Mount("binfmt_misc", dir, "binfmt_misc", 0, ""); err != nil {
			t.Fatalf("mount binfmt_misc: %v", err)
		}
		t.Cleanup(func() { _ = syscall.Unmount(dir, 0) })
	}
	entry := dir + "/qemu-" + arch
	if _, err := os.Stat(entry); err == nil {
		return
	}
	conf, err := os.ReadFile("/usr/lib/binfmt.d/qemu-" + arch + ".conf")
	if err != nil {
		need(t, "qemu-%s's binfmt configuration (Debian package qemu-user-static): %v", arch, err)
	}
	if err := os.WriteFile(dir+"/register", []byte(strings.TrimSpace(string(conf))), 0); err != nil {
		t.Fatalf("register qemu-%s: %v", arch, err)
	}
	t.Cleanup(func() {
		if err := os.WriteFile(entry, []byte("-1"), 0); err != nil {
			t.Errorf("unregister qemu-%s: %v", arch, err)
		}
	})
}
