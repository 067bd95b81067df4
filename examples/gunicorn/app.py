"""The example WSGI application forkscope runs under real gunicorn.

Every request gets one span (forkscope.wsgi.TracingMiddleware) and answers
with the pid that served it. /_forkscope/state (not traced) reports this
process's exporter: counters, runtime generation and state, and the names
of its threads, so a test or a curious user can see whether the flush
thread exists in a worker.
"""

import json
import os

import forkscope
from forkscope.wsgi import TracingMiddleware

forkscope.install()
# The exporter starts here, at import: with --preload that is in the
# gunicorn master, before it forks the workers (the case the fork stages,
# or fork detection, must handle); without, in each worker.
TRACER = forkscope.tracer(os.environ.get("FORKSCOPE_SERVICE") or "forkscope-gunicorn-example")


def _thread_names():
    names = []
    for tid in sorted(os.listdir("/proc/self/task"), key=int):
        try:
            with open(f"/proc/self/task/{tid}/comm") as comm:
                names.append(comm.read().strip())
        except OSError:
            pass  # the thread ended while we looked
    return names


def _state():
    exporter = forkscope.tracer().exporter
    return {
        "pid": os.getpid(),
        "counters": exporter.counters(),
        "threads": _thread_names(),
        "fork_hooks": forkscope.fork_hooks_registered(),
    }


def _respond(start_response, document, status="200 OK"):
    body = (json.dumps(document) + "\n").encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def hello(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/_forkscope/state":
        return _respond(start_response, _state())
    if path == "/_forkscope/flush":
        forkscope.flush(2000)
        return _respond(start_response, _state())
    return _respond(start_response, {"pid": os.getpid(), "path": path})


application = TracingMiddleware(hello, exclude=("/_forkscope/",))
