"""Unit tests of the Python binding, against the real library and agent.

Run by ForkscopeCTests (PythonBindingTests) with Debian's /usr/bin/python3:

    FORKSCOPE_LIB=.build/debug/libforkscope-c.so FORKSCOPE_TEST_AGENT=http://127.0.0.1:PORT \
    FORKSCOPE_TEST_DIR=/private/0700/dir python3 -m unittest discover -s bindings/python/tests
"""

import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import forkscope  # noqa: E402
from forkscope import ForkscopeError, _native  # noqa: E402
from forkscope.wsgi import TracingMiddleware  # noqa: E402

AGENT = os.environ.get("FORKSCOPE_TEST_AGENT", "")


def setUpModule():
    directory = os.environ["FORKSCOPE_TEST_DIR"]
    _native.call("forkscope_ring_create", _native.encode(os.path.join(directory, "ring")), 8, 256)


class VocabularyTests(unittest.TestCase):
    def test_names_and_numbers_come_from_the_library(self):
        for name, number in forkscope.EVENT_KINDS.items():
            self.assertEqual(_native.lib().forkscope_event_kind_name(number).decode(), name)

    def test_publish_by_name_with_named_and_string_arguments(self):
        forkscope.publish("server.hook", hook="pre_fork", server="tests", worker_index=3)
        forkscope.publish("mark", 1, 2, 3, 4)
        forkscope.publish(forkscope.EVENT_KINDS["mark"], 5)
        forkscope.publish_server_hook("post_fork", "tests", 1)
        forkscope.publish_process_start("worker", "unit tests")

    def test_bad_kinds_and_arguments_raise_with_the_libraries_message(self):
        with self.assertRaises(ForkscopeError) as caught:
            forkscope.publish("no.such.kind")
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_UNKNOWN_KIND")
        with self.assertRaises(ForkscopeError) as caught:
            forkscope.publish(999)
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_UNKNOWN_KIND")
        with self.assertRaises(ForkscopeError) as caught:
            forkscope.publish("server.hook", "pre_fork", "tests", "not a count")
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_INVALID_ARGUMENT")
        self.assertIn("not a string", caught.exception.message)
        with self.assertRaises(ForkscopeError):
            forkscope.publish("server.hook", bogus=1)

    def test_strings_that_are_not_utf8_are_refused(self):
        with self.assertRaises(ForkscopeError) as caught:
            forkscope.publish_server_hook("bad\udcffname", "tests", 0)  # a lone surrogate from os.fsdecode
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_NOT_UTF8")


class ExporterTests(unittest.TestCase):
    def setUp(self):
        self.exporter = forkscope.Exporter(AGENT, "drain")
        self.tracer = forkscope.Tracer("binding-tests", self.exporter)

    def tearDown(self):
        try:
            self.exporter.close(2000)
        except ForkscopeError:
            pass  # the test closed it

    def test_nested_spans_are_one_trace_sent_when_the_root_ends(self):
        with self.tracer.span("outer", resource="GET /") as outer:
            with self.tracer.span("inner") as inner:
                self.assertIs(self.tracer.active(), inner)
            self.assertEqual(self.exporter.counters()["accepted"], 0, "not before the root ends")
        self.assertEqual((inner.trace_id, inner.parent_id), (outer.trace_id, outer.span_id))
        self.assertEqual(outer.metrics["process_id"], float(os.getpid()))
        self.exporter.flush(5000)
        counters = self.exporter.counters()
        self.assertEqual((counters["accepted"], counters["sent"], counters["buffered"]), (2, 2, 0))
        self.assertEqual(counters["runtime_state"], "running")

    def test_an_exception_marks_the_span_and_propagates(self):
        with self.assertRaises(KeyError):
            with self.tracer.span("failing") as span:
                raise KeyError("x")
        self.assertEqual(span.error, 1)
        self.assertEqual(span.meta["error.type"], "KeyError")

    def test_bad_configuration_and_closed_handles_raise(self):
        with self.assertRaises(ForkscopeError) as caught:
            forkscope.Exporter("ftp://127.0.0.1:1", "drain")
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_INVALID_ARGUMENT")
        self.assertIn("ftp", caught.exception.message)
        with self.assertRaises(ForkscopeError) as caught:
            forkscope.Exporter(AGENT, "sometimes")
        self.assertIn("sometimes", caught.exception.message)
        self.exporter.close(100)
        with self.assertRaises(ForkscopeError) as caught:
            self.exporter.close(100)
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_CLOSED")
        with self.assertRaises(ForkscopeError) as caught:
            self.exporter.counters()
        self.assertEqual(caught.exception.status, "FORKSCOPE_E_CLOSED")

    def test_cancel_without_a_send_in_flight_is_false(self):
        self.assertFalse(self.exporter.cancel_send("operator"))

    def test_wsgi_middleware_makes_one_span_per_request_and_skips_excluded_paths(self):
        def app(environ, start_response):
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]

        middleware = TracingMiddleware(app, tracer=self.tracer, exclude=("/_internal/",))
        statuses = []
        for path in ("/a", "/b", "/_internal/state"):
            body = middleware({"PATH_INFO": path, "REQUEST_METHOD": "GET"}, lambda s, h, e=None: statuses.append(s))
            self.assertEqual(b"".join(body), b"ok")
            getattr(body, "close", lambda: None)()
        self.assertEqual(statuses, ["200 OK"] * 3)
        self.assertEqual(self.exporter.counters()["accepted"], 2)

    def test_fork_hooks_rebuild_the_exporter_in_the_child(self):
        forkscope.register_fork_hooks()
        self.assertTrue(forkscope.fork_hooks_registered())
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                with self.tracer.span("in child"):
                    pass
                self.exporter.flush(5000)
                counters = self.exporter.counters()
                ok = (counters["sent"], counters["runtime_generation"], counters["pid"]) == (1, 2, os.getpid())
                code = 0 if ok and _native.lib().forkscope_fork_generation() == 1 else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        self.assertEqual(self.exporter.counters()["runtime_generation"], 1, "the parent keeps its generation")
        self.assertEqual(_native.lib().forkscope_fork_generation(), 0)


if __name__ == "__main__":
    unittest.main()
