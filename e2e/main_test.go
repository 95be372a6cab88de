package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/tini-hot/tini-hot/internal/imagebuild"
)

// tiniHot is the path of the binary under test and demo the example
// server, both built by TestMain.
var tiniHot, demo string

// helperEnv names the helper a re-run of the test binary should be.
const helperEnv = "TINI_HOT_E2E_HELPER"

// binaryEnv, when set, is the path of a tini-hot binary to test instead of
// building ./cmd/tini-hot.
const binaryEnv = "TINI_HOT_E2E_BINARY"

// helpers are the programs the test binary can be, by name.
var helpers = map[string]func() int{}

// usedHelpers records which helpers the tests asked for.
var usedHelpers = map[string]bool{}

// registerHelper adds a helper program; a name registered twice is a bug.
func registerHelper(name string, main func() int) {
	if _, dup := helpers[name]; dup {
		panic("helper registered twice: " + name)
	}
	helpers[name] = main
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		main, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "e2e: unknown helper %q\n", name)
			os.Exit(2)
		}
		os.Exit(main())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tini-hot-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tiniHot = filepath.Join(dir, "tini-hot")
	demo = filepath.Join(dir, "demo")
	builds := map[string]string{tiniHot: "../cmd/tini-hot", demo: "../examples/demo"}
	if bin := os.Getenv(binaryEnv); bin != "" {
		// Another build under test, e.g. an older commit's, to show that
		// a regression test fails there.
		tiniHot = bin
		delete(builds, tiniHot)
		builds = map[string]string{demo: "../examples/demo"}
	}
	for bin, pkg := range builds {
		// -buildvcs=true: the commit in `tini-hot version` (TestVersion),
		// whatever GOFLAGS says.
		build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: build %s: %v\n", pkg, err)
			return 1
		}
	}
	code := m.Run()
	// The images the container tests built, and their podman
	// configuration: the host is left as it was.
	if err := imagebuild.RemoveBuilt(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: remove the images built: %v\n", err)
		code = max(code, 1)
	}
	if code == 0 && flag.Lookup("test.run").Value.String() == "" {
		// The whole suite ran: every helper must have been used, or it
		// is dead code.
		var unused []string
		for name := range helpers {
			if !usedHelpers[name] {
				unused = append(unused, name)
			}
		}
		sort.Strings(unused)
		if len(unused) > 0 {
			fmt.Fprintf(os.Stderr, "e2e: helpers never used: %v\n", unused)
			return 1
		}
	}
	return code
}
