"""The demo's answer from a WSGI app, for gunicorn under tini-hot.

?sleep=N answers after N seconds; such a request is logged to stderr when
it starts, as the demo does. WSGI_HOLD_MIB=N holds N MiB, allocated at
import: with gunicorn --preload the master holds it before it forks its
workers, which share it copy-on-write."""
import os
import sys
import time
from urllib.parse import parse_qs

# Written, so that it is resident: b"\1" * n fills every page.
held = b"\1" * (int(os.environ.get("WSGI_HOLD_MIB", "0")) << 20)


def app(environ, start_response):
    query = environ.get("QUERY_STRING", "")
    sleep = parse_qs(query).get("sleep", ["0"])[0]
    if float(sleep) > 0:
        print("wsgiapp: pid %d: /?%s started" % (os.getpid(), query), file=sys.stderr, flush=True)
    time.sleep(float(sleep))
    body = "ospid:%d master:%d gen:%s\n" % (
        os.getpid(), os.getppid(), os.environ.get("TINI_HOT_GENERATION", ""))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
