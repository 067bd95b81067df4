"""gunicorn's own hook points as server.hook events.

A gunicorn config file defines functions named after the hooks; each one
here publishes the hook's real name, "gunicorn", and the worker's age (the
arbiter's spawn counter: 1, 2, ... for each worker ever spawned; 0 for the
master's own hooks). The example config (examples/gunicorn) uses them.
"""

import forkscope

SERVER = "gunicorn"


def publish(hook, worker=None):
    forkscope.publish_server_hook(hook, SERVER, getattr(worker, "age", 0) if worker is not None else 0)


def on_starting(server):
    forkscope.publish_process_start("master", "gunicorn master")
    publish("on_starting")


def on_reload(server):
    publish("on_reload")


def when_ready(server):
    publish("when_ready")


def pre_fork(server, worker):
    publish("pre_fork", worker)


def post_fork(server, worker):
    forkscope.publish_process_start("worker", f"gunicorn worker {worker.age}")
    publish("post_fork", worker)


def post_worker_init(worker):
    publish("post_worker_init", worker)


def worker_int(worker):
    publish("worker_int", worker)


def worker_abort(worker):
    publish("worker_abort", worker)


def pre_exec(server):
    publish("pre_exec")


def child_exit(server, worker):
    publish("child_exit", worker)


def worker_exit(server, worker):
    publish("worker_exit", worker)
    # Last chance to send this worker's spans: the worker leaves right after.
    forkscope.shutdown()


def nworkers_changed(server, new_value, old_value):
    publish("nworkers_changed")


def on_exit(server):
    publish("on_exit")
    forkscope.shutdown()


# Every hook above, by name: a config file can take them all with
# `globals().update(forkscope.gunicorn.HOOKS)` or pick some.
HOOKS = {name: function for name, function in globals().items()
         if callable(function) and name not in ("publish",) and not name.startswith("_")
         and getattr(function, "__module__", None) == __name__}
