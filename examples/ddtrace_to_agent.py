#!/usr/bin/env python3
"""Send spans from the real Python tracer (ddtrace, from PyPI) to an agent.

    DD_TRACE_AGENT_URL=http://127.0.0.1:8126 DD_TRACE_API_VERSION=v0.4 \
        python3 examples/ddtrace_to_agent.py --spans 50 --per-trace 5

Creates SPANS spans in traces of PER_TRACE spans (a root and its children),
flushes, shuts the tracer down, and prints one JSON line:
{"pid": ..., "spans": ..., "traces": ..., "ddtrace": "<version>", "api_version": ...}.

Used by AgentTests (`forkscope agent` must count every span exactly once,
under this process's pid) and usable by hand against `forkscope agent` or a
real Datadog agent. Settings come from the environment, as with any ddtrace
program: DD_TRACE_AGENT_URL (http://host:port or unix:///path),
DD_TRACE_API_VERSION (v0.4 or v0.5).
"""
import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spans", type=int, default=20, help="spans to create in all")
    parser.add_argument("--per-trace", type=int, default=4, help="spans per trace (a root and its children)")
    parser.add_argument("--service", default="forkscope-ddtrace-example")
    args = parser.parse_args()
    if args.spans < 1 or args.per_trace < 1:
        parser.error("--spans and --per-trace must be positive")

    # Imported after argument parsing: ddtrace reads its settings from the
    # environment when it is imported.
    import ddtrace
    from ddtrace.trace import tracer

    created = 0
    traces = 0
    while created < args.spans:
        in_trace = min(args.per_trace, args.spans - created)
        with tracer.trace("forkscope.example.request", service=args.service, resource=f"GET /items/{traces}", span_type="web") as root:
            root.set_tag("forkscope.trace_index", traces)
            for child in range(in_trace - 1):
                with tracer.trace("forkscope.example.step", service=args.service, resource=f"step {child}"):
                    pass
        created += in_trace
        traces += 1

    # Send what is buffered now, then stop the writer (which flushes again).
    tracer.flush()
    tracer.shutdown(timeout=10)
    print(json.dumps({
        "pid": os.getpid(),
        "spans": created,
        "traces": traces,
        "ddtrace": ddtrace.__version__,
        "api_version": os.environ.get("DD_TRACE_API_VERSION", "default"),
    }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
