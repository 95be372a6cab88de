// Package hotapp is the small, dependency-free helper for Go servers run by
// tini-hot (or systemd): it takes the listeners tini-hot hands over
// (LISTEN_FDS, LISTEN_PID, LISTEN_FDNAMES), tells tini-hot when the server
// is ready (sd_notify READY=1 on NOTIFY_SOCKET) and drains correctly on
// the drain signal.
//
// # The drain trap
//
// Every generation accepts from the same kernel socket. When an old
// generation drains, it must first close its listeners — its copy of the
// socket; the socket itself and its queue of pending connections stay with
// tini-hot and the new generation — and only then shut down its server.
// An unmodified net/http server that calls Server.Shutdown while its
// listener is still open drops about one request per upgrade: connections
// it accepted but had not read yet are closed without a reply. [Serve]
// does it in the right order: close listeners, stop keep-alives, send
// STOPPING=1, then Shutdown with a deadline.
//
// A generation that shuts its copy of the socket down with shutdown(2),
// rather than closing it, stops the socket for every generation until
// tini-hot makes it listen again; meanwhile accept fails with EINVAL.
// [Serve] retries that error instead of ending the server.
//
//	ls, err := hotapp.Listeners()      // or net.Listen when run alone
//	srv := &http.Server{Handler: mux}
//	err = hotapp.Serve(ctx, srv, ls, hotapp.Options{})
package hotapp
