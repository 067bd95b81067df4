"""gunicorn configuration of the forkscope example.

It attaches the master to the session's ring (FORKSCOPE_RING), registers
the exporter's at-fork stages with os.register_at_fork (unless
FORKSCOPE_FORK_HOOKS=0), and publishes gunicorn's own hook points as
server.hook events, so the ring shows gunicorn's real order around each
worker fork:

    master: pre_fork → fork.before.start/end → fork() → fork.parent
    worker: fork.child → post_fork → (app import without --preload)
            → post_worker_init → ... → worker_exit

`forkscope host gunicorn` runs gunicorn with this file; by hand:

    PYTHONPATH=bindings/python:examples/gunicorn FORKSCOPE_LIB=.build/debug/libforkscope-c.so \
        /usr/bin/gunicorn -c examples/gunicorn/gunicorn.conf.py --workers 2 app:application
"""

import os
import sys

_here = os.path.dirname(os.path.abspath(__file__))
for _path in (os.path.join(_here, "..", "..", "bindings", "python"), _here):
    if os.path.normpath(_path) not in map(os.path.normpath, sys.path):
        sys.path.insert(0, _path)

import forkscope  # noqa: E402
import forkscope.gunicorn as hooks  # noqa: E402

forkscope.install()

wsgi_app = "app:application"

# gunicorn calls these by name. pre_request/post_request are left out: one
# span per request already shows each request.
nworkers_changed = hooks.nworkers_changed
on_starting = hooks.on_starting
on_reload = hooks.on_reload
pre_fork = hooks.pre_fork
post_fork = hooks.post_fork
post_worker_init = hooks.post_worker_init
worker_int = hooks.worker_int
worker_abort = hooks.worker_abort
pre_exec = hooks.pre_exec
child_exit = hooks.child_exit
worker_exit = hooks.worker_exit
on_exit = hooks.on_exit


def _write_address(server):
    # With --bind 127.0.0.1:0 only the master knows the port it got: tell
    # `forkscope host` (FORKSCOPE_ADDRESS_FILE) once the sockets exist.
    target = os.environ.get("FORKSCOPE_ADDRESS_FILE")
    if target:
        host, port = server.LISTENERS[0].sock.getsockname()[:2]
        with open(target + ".tmp", "w") as file:
            file.write(f"{host}:{port} {os.getpid()}\n")
        os.rename(target + ".tmp", target)


def when_ready(server):
    hooks.when_ready(server)
    _write_address(server)
