"""A plain-Python HTTP server that tini-hot can upgrade with no request lost.

Standard library only. Run it as tini-hot runs it:

    tini-hot -l http=tcp://:8080 --ready notify -- python3 app.py

GET /?sleep=N answers after N seconds: "ospid:PID gen:N".

The four things any application does to be upgraded in place:
  1. take the socket tini-hot bound: fd 3 (LISTEN_FDS, LISTEN_PID), never bind;
  2. say READY=1 on $NOTIFY_SOCKET once it can serve;
  3. on SIGTERM, close the listening socket first, then finish the requests
     in hand, then exit: the next generation already takes new connections;
  4. leave no connection open that nobody will answer: one request per
     connection here (HTTP/1.0), so no idle keep-alive connection is left,
     and a connection that sends nothing is closed after 5 s.
"""
import os
import signal
import socket
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from urllib.parse import parse_qs, urlparse

SD_LISTEN_FDS_START = 3


def inherited_socket():
    """The first socket tini-hot handed over, or None when run alone."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    if int(os.environ.get("LISTEN_FDS", "0")) < 1:
        return None
    return socket.socket(fileno=SD_LISTEN_FDS_START)


def notify(state):
    """Send state (e.g. "READY=1") to the service manager, if there is one."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return
    if addr.startswith("@"):  # an abstract socket
        addr = "\0" + addr[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.sendto(state.encode(), addr)


class Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after each answer, so a draining
    # process holds no idle connection a client could send to.
    protocol_version = "HTTP/1.0"
    # A connection that sends no request for 5 s is closed: clients open
    # connections they use only later (Go's keeps a spare one), and a
    # drain that waited for them would last until --drain-timeout.
    timeout = 5

    def do_GET(self):
        sleep = float(parse_qs(urlparse(self.path).query).get("sleep", ["0"])[0])
        if sleep > 0:
            print("app: pid %d: %s started" % (os.getpid(), self.path), file=sys.stderr, flush=True)
            time.sleep(sleep)
        body = ("ospid:%d gen:%s\n" % (os.getpid(), os.environ.get("TINI_HOT_GENERATION", ""))).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, HTTPServer):
    # server_close waits for the requests in hand (their threads).
    daemon_threads = False
    block_on_close = True


def main():
    sock = inherited_socket()
    if sock is None:
        server = Server(("", int(os.environ.get("PORT", "8080"))), Handler)
    else:
        server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket = sock
    # Block SIGTERM and SIGINT before any thread starts, so that every
    # thread inherits the block and the signal waits for sigwait below. A
    # Python handler runs only in the main thread, and a signal the kernel
    # gives another thread does not wake a main thread blocked in
    # Event.wait: under load, 3 drains in 4 hung that way.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    threading.Thread(target=server.serve_forever, daemon=True).start()
    notify("READY=1")
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    print("app: pid %d: draining" % os.getpid(), file=sys.stderr, flush=True)
    server.shutdown()      # stop taking connections
    server.server_close()  # close the listener, then wait for the requests in hand
    sys.exit(0)


if __name__ == "__main__":
    main()
