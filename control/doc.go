// Package control is tini-hot's control socket: a unix stream socket
// private to the container through which `tini-hot reload`, `tini-hot
// status` (and later probes and hooks) talk to the running supervisor.
//
// Protocol: the client connects, writes one JSON [Request] (at most
// [MaxRequestSize] bytes, optionally ending in a newline), and reads one
// JSON [Response]; then both close. Unknown fields and unknown operations
// are errors, so the protocol can grow without old servers misreading new
// requests. A malformed, oversized, slow or unauthorised request gets an
// error response and never reaches the supervisor.
//
// Access: the socket file is created mode 0600, and every peer is checked
// with SO_PEERCRED: only root and the server's own uid are served.
package control
