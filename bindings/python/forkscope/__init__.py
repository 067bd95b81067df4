"""forkscope: watch a Python process tree's trace exporter around fork().

A ctypes binding (standard library only) to libforkscope, the fork-safe
exporter core. Typical use, in a preforking server's configuration:

    import forkscope
    forkscope.install()                # ring from FORKSCOPE_RING, at-fork stages
    tracer = forkscope.tracer()        # exporter to FORKSCOPE_AGENT_URL
    with forkscope.span("work"):
        ...

Configuration is by environment (see the README's table): FORKSCOPE_LIB,
FORKSCOPE_RING, FORKSCOPE_AGENT_URL, FORKSCOPE_POLICY,
FORKSCOPE_FLUSH_INTERVAL_MS, FORKSCOPE_FORK_HOOKS, FORKSCOPE_DETECT_FORKS,
FORKSCOPE_SERVICE.
"""

import atexit
import ctypes
import os
import sys
import threading

from . import _native
from ._native import ForkscopeError
from ._vocabulary import (CANCEL_REASON, DROP_REASON, EVENT_ARGUMENTS, EVENT_KINDS, FORK_POLICY, FORK_STAGE,
                          OUTCOME, PROCESS_ROLE)
from .tracer import Span, Tracer

__all__ = [
    "ForkscopeError", "Exporter", "Tracer", "Span", "install", "attach", "register_fork_hooks", "tracer", "span",
    "flush", "shutdown", "publish", "publish_server_hook", "publish_process_start", "fork_hooks_registered",
    "EVENT_KINDS", "EVENT_ARGUMENTS", "FORK_STAGE", "FORK_POLICY", "PROCESS_ROLE", "CANCEL_REASON",
    "DROP_REASON", "OUTCOME",
]

RUNTIME_STATES = ("stopped", "running", "quiescing", "quiesced")


def _flag(name, default):
    value = os.environ.get(name, "")
    if value == "":
        return default
    if value not in ("0", "1"):
        raise ForkscopeError("configure", "FORKSCOPE_E_INVALID_ARGUMENT", f"{name}={value!r} is not 0 or 1")
    return value == "1"


# --------------------------------------------------------------------- ring


def attach(ring=None):
    """Attaches this process to a session's ring (`ring`, else
    $FORKSCOPE_RING). Returns False when neither names one: forkscope then
    works unobserved. Children forked later publish into it too."""
    path = ring or os.environ.get("FORKSCOPE_RING")
    if not path:
        return False
    _native.call("forkscope_ring_open", _native.encode(path))
    return True


def publish(kind, *args, **named):
    """Publishes one event of the vocabulary: `kind` is a name
    ("server.hook") or number; arguments by position or by their names
    (EVENT_ARGUMENTS). String arguments are interned by the library."""
    if isinstance(kind, str):
        if kind not in EVENT_KINDS:
            raise ForkscopeError("publish", "FORKSCOPE_E_UNKNOWN_KIND", f"{kind!r} is not in the vocabulary")
        number, arguments = EVENT_KINDS[kind], EVENT_ARGUMENTS[kind]
    else:
        number = int(kind)
        names = [name for name, value in EVENT_KINDS.items() if value == number]
        arguments = EVENT_ARGUMENTS[names[0]] if names else ()
    values = list(args) + [None] * (4 - len(args))
    if len(values) > 4:
        raise ForkscopeError("publish", "FORKSCOPE_E_INVALID_ARGUMENT", "at most 4 arguments")
    for key, value in named.items():
        positions = [i for i, (name, _) in enumerate(arguments) if name == key]
        if not positions:
            raise ForkscopeError("publish", "FORKSCOPE_E_INVALID_ARGUMENT", f"{kind} has no argument {key!r}")
        values[positions[0]] = value
    numbers = (ctypes.c_uint64 * 4)()
    strings = (ctypes.c_char_p * 4)()
    for i, value in enumerate(values):
        if isinstance(value, (str, bytes)):
            strings[i] = _native.encode(value)
        elif value is not None:
            numbers[i] = int(value) & 0xFFFFFFFFFFFFFFFF
    _native.call("forkscope_publish_typed", number, numbers, strings)


def publish_server_hook(hook, server, worker_index=0):
    """A server's own hook point (pre_fork, post_fork, ...) as a server.hook
    event. Silently nothing when no ring is attached."""
    if not _native.lib().forkscope_ring_attached():
        return
    _native.call("forkscope_publish_server_hook", _native.encode(hook), _native.encode(server), int(worker_index))


def publish_process_start(role, name):
    """process.start for this process (`role`: a PROCESS_ROLE name)."""
    if not _native.lib().forkscope_ring_attached():
        return
    publish("process.start", os.getppid(), PROCESS_ROLE[role], name)


# -------------------------------------------------------------- fork stages

_hooks_registered = False
# Per forking thread: whether its `before` stage succeeded. After a failed
# one the library already ran `parent` for what it had quiesced, and a
# child recovers through fork detection: the after-stages are skipped.
_stage = threading.local()


def _report(stage, status):
    # An exception raised in an at-fork callback is only printed by Python
    # ("Exception ignored in..."): say what failed, in one line, instead.
    if status != 0:
        sys.stderr.write(f"forkscope: {stage}: {_native.status_name(status)}: {_native.last_error()}\n")
    return status == 0


def _before_fork():
    _stage.prepared = _report("before_fork", _native.lib().forkscope_before_fork())


def _after_fork_in_parent():
    # Python does not tell the callback the child's pid: 0 lets the library
    # find it in /proc/thread-self/children.
    if getattr(_stage, "prepared", False):
        _stage.prepared = False
        _report("after_fork_parent", _native.lib().forkscope_after_fork_parent(0))


def _after_fork_in_child():
    if getattr(_stage, "prepared", False):
        _stage.prepared = False
        _report("after_fork_child", _native.lib().forkscope_after_fork_child())


def register_fork_hooks():
    """Registers the exporter's at-fork stages with os.register_at_fork, so
    every os.fork() of this process (gunicorn's workers, multiprocessing)
    runs before → fork → parent / child. Once per process; forked children
    inherit the registration. Idempotent."""
    global _hooks_registered
    if _hooks_registered:
        return
    _native.lib()
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent,
                        after_in_child=_after_fork_in_child)
    _hooks_registered = True


def fork_hooks_registered():
    return _hooks_registered


def install(ring=None, fork_hooks=None):
    """Attaches the ring (if any) and registers the at-fork stages, unless
    `fork_hooks` is False or FORKSCOPE_FORK_HOOKS=0: then a fork() leaves
    the exporter's flush thread behind, as in the Sqreen post, and only the
    fork counter (FORKSCOPE_DETECT_FORKS, on by default) notices."""
    attach(ring)
    if fork_hooks is None:
        fork_hooks = _flag("FORKSCOPE_FORK_HOOKS", True)
    if fork_hooks:
        register_fork_hooks()


# ------------------------------------------------------------------ exporter


class Exporter:
    """One process's exporter: a buffer, a flush thread and a transport to
    the agent inside libforkscope, behind a handle. The same object keeps
    working in a forked child (the stages, or fork detection, rebuild it)."""

    def __init__(self, agent_url=None, policy=None):
        handle = ctypes.c_uint64(0)
        _native.call("forkscope_exporter_create", _native.encode(agent_url), _native.encode(policy),
                     ctypes.byref(handle))
        self.handle = handle.value

    def set_fork_detection(self, enabled):
        _native.call("forkscope_exporter_set_fork_detection", self.handle, 1 if enabled else 0)

    def enqueue(self, spans):
        """Enqueues one trace (a list of finished Span objects). Returns
        False when it was dropped (and counted)."""
        count = len(spans)
        structs = (_native.SpanStruct * count)()
        keep = []  # the encoded strings and arrays must outlive the call
        for struct, span in zip(structs, spans):
            span.fill(struct, keep)
        status = _native.lib().forkscope_exporter_enqueue(self.handle, structs, count)
        if status == 8:  # FORKSCOPE_E_DROPPED: counted, not an error of ours
            return False
        _native.check("forkscope_exporter_enqueue", status)
        return True

    def flush(self, timeout_ms=5000):
        _native.call("forkscope_exporter_flush", self.handle, int(timeout_ms))

    def counters(self):
        counters = _native.CountersStruct()
        _native.call("forkscope_exporter_counters", self.handle, ctypes.byref(counters))
        result = {name: getattr(counters, name) for name, _ in _native.CountersStruct._fields_
                  if name not in ("dropped_by_reason", "runtime_state")}
        result["dropped_by_reason"] = {name: counters.dropped_by_reason[value] for name, value in DROP_REASON.items()
                                       if counters.dropped_by_reason[value]}
        state = counters.runtime_state
        result["runtime_state"] = RUNTIME_STATES[state] if state < len(RUNTIME_STATES) else str(state)
        return result

    def cancel_send(self, reason="operator"):
        """Cancels the send in flight; False when none was."""
        status = _native.lib().forkscope_exporter_cancel_send(self.handle, CANCEL_REASON[reason])
        if status == 12:  # FORKSCOPE_E_NO_SEND
            return False
        _native.check("forkscope_exporter_cancel_send", status)
        return True

    def close(self, timeout_ms=2000):
        """Sends what is buffered (up to timeout_ms), stops, invalidates."""
        _native.call("forkscope_exporter_close", self.handle, int(timeout_ms))


# ------------------------------------------------------------ default tracer

_lock = threading.Lock()
_tracer = None


def tracer(service=None, agent_url=None, policy=None):
    """The process's tracer, created on first call with its exporter (and
    flush thread) started at once, as a tracer configured at boot does: with
    gunicorn --preload that is in the master, before the workers fork."""
    global _tracer
    with _lock:
        if _tracer is None:
            exporter = Exporter(agent_url, policy)
            _tracer = Tracer(service or os.environ.get("FORKSCOPE_SERVICE") or "forkscope-python", exporter)
        return _tracer


def span(name, resource=None, span_type=None, service=None):
    """`with forkscope.span("name"):` on the process's tracer."""
    return tracer().span(name, resource=resource, span_type=span_type, service=service)


def flush(timeout_ms=5000):
    if _tracer is not None:
        _tracer.exporter.flush(timeout_ms)


def shutdown(timeout_ms=2000):
    """Flushes and closes the process's exporter (idempotent). Called at
    exit, and by the example gunicorn config in worker_exit."""
    global _tracer
    with _lock:
        current, _tracer = _tracer, None
    if current is not None:
        current.exporter.close(timeout_ms)


def _reset_lock_in_child():
    # A thread of the parent may have held it at fork(): it does not exist here.
    global _lock
    _lock = threading.Lock()


os.register_at_fork(after_in_child=_reset_lock_in_child)
atexit.register(shutdown)
