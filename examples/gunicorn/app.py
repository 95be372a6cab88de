"""A WSGI app for gunicorn under tini-hot. gunicorn does the rest itself:

    tini-hot -l http=tcp://:8080 --ready notify -- gunicorn -w 2 app:app

gunicorn takes the socket from LISTEN_FDS (it never binds when it is
given one), sends READY=1 to $NOTIFY_SOCKET once its workers run, and on
SIGTERM stops accepting, lets each worker finish its request and exits
(--graceful-timeout, 30 s by default: keep it below tini-hot's
--drain-timeout). A sync worker that holds a connection on which no
request has come yet waits for it until then, so that is how long a drain
can last.

GET /?sleep=N answers after N seconds: "ospid:PID gen:N".
"""
import os
import sys
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    sleep = float(parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0])
    if sleep > 0:
        print("app: pid %d: /?%s started" % (os.getpid(), environ["QUERY_STRING"]), file=sys.stderr, flush=True)
        time.sleep(sleep)
    body = ("ospid:%d gen:%s\n" % (os.getpid(), os.environ.get("TINI_HOT_GENERATION", ""))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
