// Package watch reloads the application when a watched file or directory
// changes (--watch): the atomic update the kubelet makes to a ConfigMap
// or Secret volume, or any edit of a plain file.
//
// It owns only its inotify watches and their debounce: on a change it
// calls a function (the supervisor's Reload) and keeps no generation
// state. A watched path is followed as the kernel resolves it, through
// every symbolic link at every level; each directory on the way is
// watched for the entries it goes through (created, deleted, moved), and
// what it leads to for its contents, each watch with its own events
// (inotify_linux.go). A change is a burst of events followed by a quiet
// window; when the window has passed, the paths with events are resolved
// again (the watches follow a link that moved) and their fingerprints
// (what their entries or the file resolve to, inodes, sizes and times)
// compared with the last ones, so each update gives exactly one reload,
// however its events arrive and however many watched paths see it, and
// events that change nothing give none.
//
// A watch is a convenience, never a reason to stop the application: one
// the system refuses at start (the node's inotify limits, shared by every
// container of the user) or loses later (its directory removed or moved,
// the inotify instance stopped) is logged and tried again, and the
// comparison of fingerprints once it is back turns a change made meanwhile
// into one reload. A queue overflow, where the kernel drops events, has
// every path compared again.
package watch
