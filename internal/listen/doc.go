// Package listen parses tini-hot's -l/--listen values and binds the
// sockets that tini-hot holds for the container's life and hands to every
// generation of the application.
//
// A [Spec] is [NAME=]URL: tcp://HOST:PORT, tcp4://, tcp6://[::]:PORT,
// udp://, udp4://, udp6:// or unix:///absolute/path. NAME goes into
// LISTEN_FDNAMES. [Bind] binds one and keeps a close-on-exec duplicate of
// the socket in non-blocking mode (see [Listener] for why). [Guard] keeps
// the stream sockets listening when a generation shuts one down.
package listen
