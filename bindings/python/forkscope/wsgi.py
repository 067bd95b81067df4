"""WSGI middleware: one span per request, finished when the server closes
the response (after the body was sent), as PEP 3333 servers do."""

import forkscope


class TracingMiddleware:
    """Wraps a WSGI application. `exclude` lists path prefixes not traced
    (an application's own introspection endpoints)."""

    def __init__(self, app, tracer=None, service=None, exclude=()):
        self.app = app
        self._tracer = tracer
        self.service = service
        self.exclude = tuple(exclude)

    @property
    def tracer(self):
        # Looked up per request, not at import: with gunicorn --preload the
        # app is imported in the master, and the tracer is the process's own.
        return self._tracer or forkscope.tracer(self.service)

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "") or "/"
        if self.exclude and path.startswith(self.exclude):
            return self.app(environ, start_response)
        method = environ.get("REQUEST_METHOD", "GET")
        span = self.tracer.start_span("wsgi.request", resource=f"{method} {path}", span_type="web")
        span.set_tag("http.method", method)
        span.set_tag("http.url", path)
        span.set_tag("span.kind", "server")

        def traced_start_response(status, headers, exc_info=None):
            span.set_tag("http.status_code", status.split(" ", 1)[0])
            if status.startswith("5"):
                span.error = 1
            return start_response(status, headers, exc_info)

        try:
            result = self.app(environ, traced_start_response)
        except BaseException as error:
            span.error = 1
            span.set_tag("error.type", type(error).__name__)
            span.finish()
            raise
        return _FinishingIterable(result, span)


class _FinishingIterable:
    """The application's response, finishing the span on close()."""

    def __init__(self, result, span):
        self.result = result
        self.span = span

    def __iter__(self):
        return iter(self.result)

    def close(self):
        try:
            close = getattr(self.result, "close", None)
            if close is not None:
                close()
        finally:
            self.span.finish()
