"""The demo's answer from a WSGI app, for gunicorn under tini-hot."""
import os


def app(environ, start_response):
    body = "ospid:%d master:%d gen:%s\n" % (
        os.getpid(), os.getppid(), os.environ.get("TINI_HOT_GENERATION", ""))
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body.encode()]
