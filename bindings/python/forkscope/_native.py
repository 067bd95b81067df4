"""ctypes declarations of libforkscope's C ABI (forkscope.h), and its loading.

Every function returns a status; `check` turns a failure into ForkscopeError
carrying the library's own message. Nothing here holds Python locks across
a call: the library's calls release the GIL (ctypes.CDLL), so a fork stage
that waits for an in-flight send does not stop other Python threads.
"""

import ctypes
import os
import shutil

from . import _vocabulary

LIBRARY_NAMES = ("libforkscope-c.so", "libforkscope.so")


class ForkscopeError(Exception):
    """A libforkscope call failed: `status` is the forkscope_status name."""

    def __init__(self, function, status, message):
        self.function = function
        self.status = status
        self.message = message
        super().__init__(f"{function}: {status}: {message}")


class Tag(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_char_p)]


class Metric(ctypes.Structure):
    _fields_ = [("key", ctypes.c_char_p), ("value", ctypes.c_double)]


class SpanStruct(ctypes.Structure):
    _fields_ = [
        ("trace_id", ctypes.c_uint64),
        ("span_id", ctypes.c_uint64),
        ("parent_id", ctypes.c_uint64),
        ("name", ctypes.c_char_p),
        ("resource", ctypes.c_char_p),
        ("service", ctypes.c_char_p),
        ("type", ctypes.c_char_p),
        ("start_ns", ctypes.c_int64),
        ("duration_ns", ctypes.c_int64),
        ("error", ctypes.c_int32),
        ("meta_count", ctypes.c_uint32),
        ("meta", ctypes.POINTER(Tag)),
        ("metrics_count", ctypes.c_uint32),
        ("metrics", ctypes.POINTER(Metric)),
    ]


class CountersStruct(ctypes.Structure):
    _fields_ = [
        ("accepted", ctypes.c_uint64),
        ("sent", ctypes.c_uint64),
        ("buffered", ctypes.c_uint64),
        ("requeued", ctypes.c_uint64),
        ("cancelled", ctypes.c_uint64),
        ("failed", ctypes.c_uint64),
        ("dropped", ctypes.c_uint64),
        ("dropped_by_reason", ctypes.c_uint64 * 8),
        ("runtime_generation", ctypes.c_uint32),
        ("runtime_state", ctypes.c_uint32),
        ("detects_unhooked_forks", ctypes.c_uint32),
        ("pid", ctypes.c_int32),
    ]


_u32, _u64, _i32, _i64 = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32, ctypes.c_int64
_str = ctypes.c_char_p
_PROTOTYPES = {
    "forkscope_abi_version": (_u32, []),
    "forkscope_last_error": (_str, []),
    "forkscope_status_name": (_str, [ctypes.c_int]),
    "forkscope_event_kind_name": (_str, [_u32]),
    "forkscope_ring_open": (ctypes.c_int, [_str]),
    "forkscope_ring_create": (ctypes.c_int, [_str, _u32, _u32]),
    "forkscope_ring_attached": (ctypes.c_int, []),
    "forkscope_intern": (ctypes.c_int, [_str, ctypes.POINTER(_u64)]),
    "forkscope_publish": (ctypes.c_int, [_u32, _u64, _u64, _u64, _u64]),
    "forkscope_publish_typed": (ctypes.c_int, [_u32, ctypes.POINTER(_u64), ctypes.POINTER(_str)]),
    "forkscope_publish_server_hook": (ctypes.c_int, [_str, _str, _u64]),
    "forkscope_before_fork": (ctypes.c_int, []),
    "forkscope_after_fork_parent": (ctypes.c_int, [_i64]),
    "forkscope_after_fork_child": (ctypes.c_int, []),
    "forkscope_fork_generation": (_u32, []),
    "forkscope_exporter_create": (ctypes.c_int, [_str, _str, ctypes.POINTER(_u64)]),
    "forkscope_exporter_set_fork_detection": (ctypes.c_int, [_u64, ctypes.c_int]),
    "forkscope_exporter_enqueue": (ctypes.c_int, [_u64, ctypes.POINTER(SpanStruct), ctypes.c_size_t]),
    "forkscope_exporter_flush": (ctypes.c_int, [_u64, _u32]),
    "forkscope_exporter_counters": (ctypes.c_int, [_u64, ctypes.POINTER(CountersStruct)]),
    "forkscope_exporter_cancel_send": (ctypes.c_int, [_u64, _u32]),
    "forkscope_exporter_cancel_send_signal_safe": (ctypes.c_int, [_u64, _u32]),
    "forkscope_exporter_close": (ctypes.c_int, [_u64, _u32]),
}

_library = None


def library_path():
    """Where libforkscope is: $FORKSCOPE_LIB, else next to the `forkscope`
    executable found on PATH (swift build puts both in .build/<config>/)."""
    explicit = os.environ.get("FORKSCOPE_LIB")
    if explicit:
        return explicit
    executable = shutil.which("forkscope")
    if executable:
        directory = os.path.dirname(os.path.realpath(executable))
        for name in LIBRARY_NAMES:
            candidate = os.path.join(directory, name)
            if os.path.exists(candidate):
                return candidate
    raise ForkscopeError(
        "load", "FORKSCOPE_E_NOT_FOUND",
        "libforkscope not found: set FORKSCOPE_LIB to .build/debug/libforkscope-c.so "
        "(built by `swift build`), or put the forkscope executable's directory on PATH")


def lib():
    """The loaded library, with every prototype declared (loaded once)."""
    global _library
    if _library is None:
        path = library_path()
        try:
            loaded = ctypes.CDLL(path)
        except OSError as error:
            raise ForkscopeError("load", "FORKSCOPE_E_NOT_FOUND", f"cannot load {path}: {error}") from None
        for name, (restype, argtypes) in _PROTOTYPES.items():
            function = getattr(loaded, name)
            function.restype = restype
            function.argtypes = argtypes
        version = loaded.forkscope_abi_version()
        if version != _vocabulary.ABI_VERSION:
            raise ForkscopeError("load", "FORKSCOPE_E_ABI",
                                 f"{path} has ABI version {version}; this binding speaks {_vocabulary.ABI_VERSION}")
        _library = loaded
    return _library


def status_name(status):
    return lib().forkscope_status_name(status).decode()


def last_error():
    return lib().forkscope_last_error().decode("utf-8", "replace")


def check(function, status):
    """Raises ForkscopeError for a failed status (read on the same thread)."""
    if status != 0:
        raise ForkscopeError(function, status_name(status), last_error())
    return status


def call(function, *args):
    """Calls `function` and raises on failure."""
    return check(function, getattr(lib(), function)(*args))


def encode(text):
    """A str as the NUL-terminated UTF-8 the ABI takes (None stays None)."""
    if text is None or isinstance(text, bytes):
        return text
    return str(text).encode("utf-8", "surrogateescape")
