// Package watch reloads the application when a watched file or directory
// changes (--watch): the atomic update the kubelet makes to a ConfigMap
// or Secret volume, or any edit of a plain file.
//
// It owns only its fsnotify watches and their debounce: on a change it
// calls a function (the supervisor's Reload) and keeps no generation
// state. A change is a burst of events followed by a quiet window; when
// the window has passed, the watched path's fingerprint (what its entries
// or the file resolve to, their inodes, sizes and times) is compared with
// the last one, so each update gives exactly one reload however its
// events arrive, and events that change nothing give none.
//
// A watch is a convenience, never a reason to stop the application: one
// the system refuses at start (the node's inotify limits, shared by every
// container of the user) or loses later (its directory removed or moved,
// the inotify instance stopped) is logged and tried again, and the
// comparison of fingerprints once it is back turns a change made meanwhile
// into one reload. A queue overflow, where the kernel drops events, has
// every path compared again.
package watch
