"""The demo's answer from a WSGI app, for gunicorn under tini-hot.

?sleep=N answers after N seconds."""
import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    sleep = parse_qs(environ.get("QUERY_STRING", "")).get("sleep", ["0"])[0]
    time.sleep(float(sleep))
    body = "ospid:%d master:%d gen:%s\n" % (
        os.getpid(), os.getppid(), os.environ.get("TINI_HOT_GENERATION", ""))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
