package cli

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// VersionUsage is the --help text of `tini-hot version`.
const VersionUsage = `Usage: tini-hot version

Print tini-hot's version, the commit it was built from and the Go version
that built it, on one line. Exit status: 0, or 2 for a usage error.
`

// VersionLine is what `tini-hot version` prints: version and commit as
// the release build stamped them (-ldflags -X), else the commit the Go
// toolchain recorded from the repository ("unknown" without one), and the
// Go version and platform.
func VersionLine(version, commit string) string {
	if commit == "" {
		commit = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			var rev, dirty string
			for _, s := range bi.Settings {
				switch {
				case s.Key == "vcs.revision":
					rev = s.Value
				case s.Key == "vcs.modified" && s.Value == "true":
					dirty = "-dirty"
				}
			}
			if rev != "" {
				commit = rev + dirty
			}
		}
	}
	return fmt.Sprintf("tini-hot %s (commit %s, %s %s/%s)\n", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
