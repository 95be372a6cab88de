// Package upgrade supervises the application: it starts it as a numbered
// generation, relays signals to it, collects its exit status through the
// reaper and, when it ends, terminates whatever it left behind.
//
// One goroutine, the one running [Supervisor.Run], owns all generation
// state; everything else reaches it through channels. With no listeners and
// no reload signal a Supervisor behaves as tini: one generation, every
// signal forwarded, the container ends with the child's status.
//
// When the main child exits and other processes remain (orphans it left,
// daemons it started, setsid grandchildren), each gets SIGTERM, and SIGKILL
// once [Options.KillTimeout] has passed; Run returns only when no process
// is left below tini-hot, so nothing is cut off mid-write by the kernel's
// SIGKILL at the end of a PID namespace and nothing escapes as a
// subreaper's leftover.
package upgrade
