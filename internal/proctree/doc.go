// Package proctree reads the process table from /proc and finds the
// processes of one generation of the application, so that tini-hot can
// signal a whole process tree, including setsid and double-forked
// processes, without being fooled by a pid that was reused.
//
// Identity: a pid alone names a process only until it is reaped; after
// that the kernel may give it to any new process. [Signal] therefore opens
// a pidfd for the pid, checks that the process behind it still has the
// start time the snapshot saw, and signals through the pidfd, so a process
// that ended and whose pid went to someone else since the snapshot is
// never hit.
package proctree
