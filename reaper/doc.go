// Package reaper does the duties of a container's PID 1: it reaps every
// zombie, collects the exit statuses of the processes it started, relays the
// signals it receives and, at the end, terminates whatever is left.
//
// One loop, and only one, calls wait4(-1, WNOHANG): [Reaper.Reap]. Its caller
// matches the exits it returns to the pids it started, so an exit status can
// never be stolen by a second waiter. Nothing in tini-hot calls os/exec's
// Wait on a process the reaper may reap.
//
// When the process is not PID 1, [New] makes it a child subreaper
// (PR_SET_CHILD_SUBREAPER), so orphans of its descendants are reparented to
// it instead of to the host's init, and reaped here all the same.
//
// Signals: [New] subscribes to every catchable signal. SIGCHLD drives
// reaping; every other signal is delivered on [Reaper.Signals] for the
// caller to forward. SIGURG is not subscribed: the Go runtime sends it to
// its own threads for goroutine preemption, so it cannot be told apart from
// a user's kill -URG and is never forwarded; nor is SIGPROF, which the
// runtime keeps for its profiler, nor SIGPIPE, which tini-hot drops
// because its own writes to a client that went away raise it. SIGTERM has
// a channel of its own ([Reaper.Terminations]) that other signals cannot
// fill. Signals that the kernel raises
// for a fault (SIGSEGV, SIGBUS, ...) still crash the process as they must;
// the same signals sent with kill(2) are only relayed, so PID 1 cannot be
// killed by a stray kill -SEGV 1.
package reaper
