// Package upgrade supervises the application: it starts it as a numbered
// generation, relays signals to it, collects its exit status through the
// reaper, upgrades it in place on the held sockets and, when it ends,
// terminates whatever it left behind.
//
// One goroutine, the one running [Supervisor.Run], owns all generation
// state; everything else reaches it through channels: the reaper's
// (exits, signals), the notify sockets', and the typed methods
// ([Supervisor.Reload], [Supervisor.Status], [Supervisor.Probe],
// [Supervisor.Prestop]) and timers, which run functions on it. With no
// listeners and no reload signal a Supervisor behaves as tini: one
// generation, every signal forwarded, the container ends with the
// child's status.
//
// The files follow its concerns: supervisor.go (the loop, timers, the
// methods), generation.go (start, readiness, exits), reload.go (reloads
// and the handover), memory.go (the memory headroom before an upgrade,
// OOM kills named), restart.go (a generation started in place of the
// serving one: after a crash under --restart, or for --on-low-memory
// restart), shutdown.go (SIGTERM, prestop,
// the end), status.go, and sys.go, the private seam to the operating
// system that the unit tests replace with fakes.
//
// Pids: a generation's main process is signalled by pid only until the
// supervisor has reaped it; the supervisor is the only reaper, so until
// then the pid cannot name another process. After that nothing is sent
// to that pid, no exit is matched to that generation, and its remaining
// processes are found only by their TINI_HOT_GENERATION marker and
// signalled through pidfds (internal/proctree).
//
// Reloads during an upgrade are coalesced into at most one more, and so
// are reloads that wait for draining generations to exit (the
// --max-draining bound, or the memory a second generation needs); a reload
// while the first generation starts waits until it is ready, or until its
// ready timeout, after which the first generation keeps running and the
// reload starts a generation that replaces it when ready. The caller of
// [Supervisor.Reload] may stop waiting at any time: the reload goes on.
//
// New capabilities are inputs to this loop, not new owners of its state:
// a file watcher or the metrics endpoint (internal/metrics) lives in a
// package of its own and calls the typed methods (Reload on a change;
// Status for figures: the loop only copies its state, and /proc and the
// cgroup are read outside it); what the container and each generation use
// comes from internal/usage, which the supervisor asks before an upgrade;
// a restart is a generation started in place of the serving one
// (restart.go), decided when the serving generation's exit is reaped.
//
// When an old generation, or a failed one, ends during its drain, the
// processes it left (found by their marker) get the drain signal, and
// SIGKILL at its drain deadline; so do a crashed one's when it is
// restarted.
//
// When the serving generation exits and other processes remain (orphans it
// left, daemons it started, setsid grandchildren), each gets SIGTERM, and
// SIGKILL once [Options.KillTimeout] has passed; generations still
// draining from an upgrade keep their drain deadline instead. Run returns
// only when no process is left below tini-hot, so nothing is cut off
// mid-write by the kernel's SIGKILL at the end of a PID namespace and
// nothing escapes as a subreaper's leftover.
package upgrade
