// Package control is tini-hot's control socket: a unix stream socket
// private to the container through which `tini-hot reload`, `status`,
// `probe` and `prestop` talk to the running supervisor.
//
// Protocol: the client connects, writes one JSON [Request] (at most
// [MaxRequestSize] bytes, optionally ending in a newline), and reads one
// JSON [Response]; then both close. Unknown fields and unknown operations
// are errors, so the protocol can grow without old servers misreading new
// requests. A malformed, oversized, slow or unauthorised request gets an
// error response and never reaches the supervisor. The status document
// travels as raw JSON: this package does not read it.
//
// Access: the socket file is created mode 0600, and every peer is checked
// with SO_PEERCRED: only root and the server's own uid are served.
//
// Nothing can wedge it: a request's [Handler] gets a context that ends
// when the client goes away (it closes its end; one that only shuts down
// its sending side still gets its answer) or the server closes, and a
// request whose client has gone is not answered. At most 64 requests may
// wait for a long answer (reload); more are answered "busy" at once.
// Probes, status and prestop never wait for a place. Of the connections
// that have sent nothing yet (each may take 5 s), the oldest is closed when
// more than 128 are open, so a new client is always read. Answers are sent
// with MSG_NOSIGNAL: a client that went away never raises SIGPIPE.
// [Server.Close] closes every connection within a fraction of a second.
package control
