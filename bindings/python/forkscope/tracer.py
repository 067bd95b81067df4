"""A tiny tracer: Datadog spans grouped into traces, handed to the exporter
when a trace's local root finishes."""

import ctypes
import os
import threading
import time

from . import _native


def _new_id():
    # 63 random bits, never 0 (os.urandom: no generator state shared with a
    # parent process that forked us).
    return (int.from_bytes(os.urandom(8), "little") >> 1) or 1


class Span:
    """One span. Use as a context manager, or call finish()."""

    def __init__(self, tracer, name, resource=None, span_type=None, service=None, parent=None):
        self.tracer = tracer
        self.name = name
        self.resource = resource or name
        self.span_type = span_type
        self.service = service or tracer.service
        self.parent = parent
        self.trace_id = parent.trace_id if parent else _new_id()
        self.span_id = _new_id()
        self.parent_id = parent.span_id if parent else 0
        self.meta = {}
        self.metrics = {}
        self.error = 0
        self.start_ns = time.time_ns()
        self._monotonic_start = time.monotonic_ns()
        self.duration_ns = None
        self._trace = parent._trace if parent else []
        if parent is None:
            # As real tracers do on a trace's local root: the agent (and the
            # mock agent's per-process counts) attribute the chunk by it.
            self.metrics["process_id"] = float(os.getpid())
            self.metrics["_sampling_priority_v1"] = 1.0
            self.metrics["_dd.top_level"] = 1.0

    def set_tag(self, key, value):
        self.meta[str(key)] = str(value)

    def set_metric(self, key, value):
        self.metrics[str(key)] = float(value)

    def finish(self):
        if self.duration_ns is not None:
            return
        self.duration_ns = time.monotonic_ns() - self._monotonic_start
        self.tracer._finish(self)

    def __enter__(self):
        self.tracer._push(self)
        return self

    def __exit__(self, kind, value, traceback):
        if kind is not None:
            self.error = 1
            self.set_tag("error.type", kind.__name__)
            self.set_tag("error.message", value)
        self.tracer._pop(self)
        self.finish()
        return False

    def fill(self, struct, keep):
        """Writes this span into a forkscope_span; `keep` holds the buffers."""
        encode = _native.encode
        struct.trace_id, struct.span_id, struct.parent_id = self.trace_id, self.span_id, self.parent_id
        strings = [encode(self.name), encode(self.resource), encode(self.service), encode(self.span_type)]
        keep.extend(strings)
        struct.name, struct.resource, struct.service, struct.type = strings
        struct.start_ns, struct.duration_ns, struct.error = self.start_ns, self.duration_ns or 0, self.error
        if self.meta:
            tags = (_native.Tag * len(self.meta))()
            for tag, (key, value) in zip(tags, self.meta.items()):
                tag.key, tag.value = encode(key), encode(value)
                keep.extend((tag.key, tag.value))
            keep.append(tags)
            struct.meta, struct.meta_count = ctypes.cast(tags, ctypes.POINTER(_native.Tag)), len(self.meta)
        if self.metrics:
            metrics = (_native.Metric * len(self.metrics))()
            for metric, (key, value) in zip(metrics, self.metrics.items()):
                metric.key, metric.value = encode(key), value
                keep.append(metric.key)
            keep.append(metrics)
            struct.metrics, struct.metrics_count = ctypes.cast(metrics, ctypes.POINTER(_native.Metric)), len(self.metrics)


class Tracer:
    """Makes spans; a trace goes to the exporter when its local root ends."""

    def __init__(self, service, exporter):
        self.service = service
        self.exporter = exporter
        self._local = threading.local()

    def _stack(self):
        stack = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        return stack

    def active(self):
        stack = self._stack()
        return stack[-1] if stack else None

    def start_span(self, name, resource=None, span_type=None, service=None, child_of=None):
        """A span, child of `child_of` or of the active span (not activated)."""
        return Span(self, name, resource, span_type, service, child_of or self.active())

    def span(self, name, resource=None, span_type=None, service=None):
        """A span to use with `with`: it is the active span inside."""
        return self.start_span(name, resource, span_type, service)

    def _push(self, span):
        self._stack().append(span)

    def _pop(self, span):
        stack = self._stack()
        if stack and stack[-1] is span:
            stack.pop()

    def _finish(self, span):
        span._trace.append(span)
        if span.parent is None:
            self.exporter.enqueue(span._trace)
