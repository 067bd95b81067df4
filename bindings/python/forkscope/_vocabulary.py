"""The event vocabulary's numbers, as in forkscope.h.

Generated from the one Swift list (Sources/EventRing/EventKind.swift); the
ForkscopeCTests check it, and regenerate it when run with
FORKSCOPE_REGENERATE=1 (`swift test --filter VocabularyTests`).
"""

ABI_VERSION = 1

# BEGIN GENERATED: vocabulary
EVENT_KINDS = {
    "process.start": 1,
    "process.exit": 2,
    "fork.before.start": 3,
    "fork.before.end": 4,
    "fork.parent": 5,
    "fork.child": 6,
    "fork.failed": 7,
    "fork.detected_without_hooks": 8,
    "hook.run": 9,
    "hook.registered": 10,
    "hook.removed": 11,
    "runtime.quiesce": 12,
    "runtime.rebuild": 13,
    "runtime.resume": 14,
    "thread.start": 15,
    "thread.stop": 16,
    "send.start": 17,
    "send.complete": 18,
    "send.cancel": 19,
    "send.fail": 20,
    "span.requeued": 21,
    "span.dropped": 22,
    "transport.open": 23,
    "transport.close": 24,
    "operator.command": 25,
    "worker.spawned": 26,
    "worker.exited": 27,
    "server.hook": 28,
    "writer.gauge": 29,
    "writer.losses": 30,
    "cancel.requested": 31,
    "drain.wait": 32,
    "agent.request": 33,
    "mark": 34,
}
# The arguments a0..a3 of each kind: (name, type); "string" = interned.
EVENT_ARGUMENTS = {
    "process.start": (("ppid", "pid"), ("role", "role"), ("name", "string"), ("start_ticks", "count")),
    "process.exit": (("status", "count"), ("signal", "signal")),
    "fork.before.start": (("hooks", "count"),),
    "fork.before.end": (("outcome", "outcome"), ("us", "micros"), ("failed_hooks", "count")),
    "fork.parent": (("child", "pid"), ("us", "micros")),
    "fork.child": (("parent", "pid"), ("generation", "generation")),
    "fork.failed": (("errno", "errno"), ("stage", "stage")),
    "fork.detected_without_hooks": (("previous_pid", "pid"), ("fork_count", "count")),
    "hook.run": (("stage", "stage"), ("name", "string"), ("outcome", "outcome"), ("us", "micros")),
    "hook.registered": (("stage", "stage"), ("handle", "id"), ("name", "string")),
    "hook.removed": (("stage", "stage"), ("handle", "id"), ("found", "bool")),
    "runtime.quiesce": (("generation", "generation"), ("workers", "count")),
    "runtime.rebuild": (("from", "generation"), ("to", "generation"), ("reason", "string")),
    "runtime.resume": (("generation", "generation"), ("workers", "count")),
    "thread.start": (("tid", "tid"), ("name", "string")),
    "thread.stop": (("tid", "tid"), ("name", "string")),
    "send.start": (("send", "id"), ("spans", "count"), ("bytes", "count"), ("attempt", "count")),
    "send.complete": (("send", "id"), ("status", "httpStatus"), ("us", "micros"), ("spans", "count")),
    "send.cancel": (("send", "id"), ("reason", "cancelReason"), ("us", "micros"), ("spans", "count")),
    "send.fail": (("send", "id"), ("error", "string"), ("us", "micros"), ("errno", "errno")),
    "span.requeued": (("spans", "count"), ("reason", "cancelReason"), ("send", "id")),
    "span.dropped": (("spans", "count"), ("reason", "dropReason"), ("send", "id")),
    "transport.open": (("transport", "id"), ("url", "string"), ("policy", "policy")),
    "transport.close": (("transport", "id"), ("waited_us", "micros")),
    "operator.command": (("command", "string"), ("from_pid", "pid"), ("uid", "count"), ("target", "pid")),
    "worker.spawned": (("worker", "pid"), ("index", "count")),
    "worker.exited": (("worker", "pid"), ("status", "count"), ("signal", "signal"), ("index", "count")),
    "server.hook": (("hook", "string"), ("server", "string"), ("worker_index", "count")),
    "writer.gauge": (("buffered", "count"), ("accepted", "count"), ("sent", "count"), ("lock_holder", "tid")),
    "writer.losses": (("requeued", "count"), ("dropped", "count"), ("cancelled", "count"), ("failed", "count")),
    "cancel.requested": (("send", "id"), ("reason", "cancelReason"), ("matched", "bool")),
    "drain.wait": (("send", "id"), ("timeout_ms", "count"), ("outcome", "outcome"), ("us", "micros")),
    "agent.request": (("spans", "count"), ("bytes", "count"), ("status", "httpStatus"), ("delay_ms", "count")),
    "mark": (("a0", "count"), ("a1", "count"), ("a2", "count"), ("a3", "count")),
}
FORK_STAGE = {
    "before": 1,
    "parent": 2,
    "child": 3,
}
FORK_POLICY = {
    "drain": 1,
    "cancel": 2,
    "drain:T": 3,
}
PROCESS_ROLE = {
    "unknown": 0,
    "master": 1,
    "worker": 2,
    "daemon": 3,
    "child": 4,
    "agent": 5,
    "host": 6,
    "tool": 7,
}
CANCEL_REASON = {
    "fork": 1,
    "operator": 2,
    "shutdown": 3,
    "thread_killed": 4,
    "drain_timeout": 5,
    "close": 6,
    "agent_error": 7,
}
DROP_REASON = {
    "buffer_full": 1,
    "retries_exhausted": 2,
    "closed": 3,
    "encoding_failed": 4,
    "agent_rejected": 5,
    "shutdown_deadline": 6,
}
OUTCOME = {
    "ok": 0,
    "failed": 1,
    "timed_out": 2,
    "cancelled": 3,
}
# END GENERATED: vocabulary
