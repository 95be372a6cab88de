// Package e2e holds black-box tests of the built tini-hot binary: it runs
// as a real PID 1 in a new PID namespace (unshare -p -f --kill-child
// --mount-proc) and as a subreaper below the test, against shell scripts
// and helper programs (the test binary itself, re-run with
// TINI_HOT_E2E_HELPER set, as os/exec's tests do).
//
// The exit-status and signal cases take the init under test as a
// parameter and also run against Debian's tini, which proves that the
// tests expect what tini does. They need root, unshare and tini: missing
// ones skip the tests on a workstation and fail them under CI=true.
package e2e
