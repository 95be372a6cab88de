// Package launch starts the processes tini-hot supervises.
//
// A process is started through a tiny re-exec of tini-hot itself (the
// trampoline): the forked child runs /proc/self/exe with a private first
// argument, and there, with its own pid known, it
//
//   - gives the application the signal state tini-hot was started with, as
//     far as it could be known ([CaptureSignals]): the inherited ignores
//     and blocks are restored, every other signal gets its default
//     disposition and is unblocked, so nothing the Go runtime or
//     tini-hot itself set up leaks into the application;
//   - marks every fd after 2 and the files handed on purpose close-on-exec,
//     so fds tini-hot inherited from its own parent do not leak;
//   - sets LISTEN_PID to its own pid when LISTEN_FDS is set (the systemd
//     socket-activation protocol requires the receiver's pid, which Go
//     cannot set between fork and exec);
//   - looks the command up in PATH like execvp(3) and execve(2)s it,
//     keeping its pid.
//
// When the exec fails the trampoline prints one line and exits 127 for a
// command that does not exist and 126 for one that cannot be executed, as
// shells and tini do, so the supervisor sees that status through its
// reaper like any other exit.
//
// A program that imports this package is its own trampoline: the package's
// init runs it when the program is started with the private argument, before
// the libraries the program links are initialised, and exits. For that the
// package imports only standard packages initialised early: syscall, not
// golang.org/x/sys/unix; neither fmt nor strings.
package launch
