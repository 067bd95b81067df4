// The event vocabulary: the one list every name table (text and JSONL dumps,
// the C header, Perfetto export, the TUI) is generated from or checked
// against. On-disk numbers are stable: append new kinds, never renumber.

/// What an event's argument means, so every consumer renders it the same way.
public enum ArgumentType: Sendable, Equatable {
    case count
    case id
    /// An offset into the ring's string table.
    case string
    case micros
    case pid
    case tid
    case generation
    case httpStatus
    case signal
    case errno
    case bool
    case stage
    case policy
    case role
    case cancelReason
    case dropReason
    case outcome
}

public struct EventArgument: Sendable, Equatable {
    public let name: String
    public let type: ArgumentType
}

public enum EventKind: UInt16, CaseIterable, Sendable {
    case processStart = 1
    case processExit = 2
    case forkBeforeStart = 3
    case forkBeforeEnd = 4
    case forkParent = 5
    case forkChild = 6
    case forkFailed = 7
    case forkDetectedWithoutHooks = 8
    case hookRun = 9
    case hookRegistered = 10
    case hookRemoved = 11
    case runtimeQuiesce = 12
    case runtimeRebuild = 13
    case runtimeResume = 14
    case threadStart = 15
    case threadStop = 16
    case sendStart = 17
    case sendComplete = 18
    case sendCancel = 19
    case sendFail = 20
    case spanRequeued = 21
    case spanDropped = 22
    case transportOpen = 23
    case transportClose = 24
    case operatorCommand = 25
    case workerSpawned = 26
    case workerExited = 27
    case serverHook = 28
    case writerGauge = 29
    case writerLosses = 30
    case cancelRequested = 31
    case drainWait = 32
    case agentRequest = 33
    case mark = 34

    /// The stable name used by every dump, export and the C header.
    public var name: String {
        switch self {
        case .processStart: "process.start"
        case .processExit: "process.exit"
        case .forkBeforeStart: "fork.before.start"
        case .forkBeforeEnd: "fork.before.end"
        case .forkParent: "fork.parent"
        case .forkChild: "fork.child"
        case .forkFailed: "fork.failed"
        case .forkDetectedWithoutHooks: "fork.detected_without_hooks"
        case .hookRun: "hook.run"
        case .hookRegistered: "hook.registered"
        case .hookRemoved: "hook.removed"
        case .runtimeQuiesce: "runtime.quiesce"
        case .runtimeRebuild: "runtime.rebuild"
        case .runtimeResume: "runtime.resume"
        case .threadStart: "thread.start"
        case .threadStop: "thread.stop"
        case .sendStart: "send.start"
        case .sendComplete: "send.complete"
        case .sendCancel: "send.cancel"
        case .sendFail: "send.fail"
        case .spanRequeued: "span.requeued"
        case .spanDropped: "span.dropped"
        case .transportOpen: "transport.open"
        case .transportClose: "transport.close"
        case .operatorCommand: "operator.command"
        case .workerSpawned: "worker.spawned"
        case .workerExited: "worker.exited"
        case .serverHook: "server.hook"
        case .writerGauge: "writer.gauge"
        case .writerLosses: "writer.losses"
        case .cancelRequested: "cancel.requested"
        case .drainWait: "drain.wait"
        case .agentRequest: "agent.request"
        case .mark: "mark"
        }
    }

    /// The meaning of args 0..3, in order; unused trailing args are omitted.
    public var arguments: [EventArgument] {
        func a(_ name: String, _ type: ArgumentType) -> EventArgument { EventArgument(name: name, type: type) }
        switch self {
        case .processStart: return [a("ppid", .pid), a("role", .role), a("name", .string), a("start_ticks", .count)]
        case .processExit: return [a("status", .count), a("signal", .signal)]
        case .forkBeforeStart: return [a("hooks", .count)]
        case .forkBeforeEnd: return [a("outcome", .outcome), a("us", .micros), a("failed_hooks", .count)]
        case .forkParent: return [a("child", .pid), a("us", .micros)]
        case .forkChild: return [a("parent", .pid), a("generation", .generation)]
        case .forkFailed: return [a("errno", .errno), a("stage", .stage)]
        case .forkDetectedWithoutHooks: return [a("previous_pid", .pid), a("fork_count", .count)]
        case .hookRun: return [a("stage", .stage), a("name", .string), a("outcome", .outcome), a("us", .micros)]
        case .hookRegistered: return [a("stage", .stage), a("handle", .id), a("name", .string)]
        case .hookRemoved: return [a("stage", .stage), a("handle", .id), a("found", .bool)]
        case .runtimeQuiesce: return [a("generation", .generation), a("workers", .count)]
        case .runtimeRebuild: return [a("from", .generation), a("to", .generation), a("reason", .string)]
        case .runtimeResume: return [a("generation", .generation), a("workers", .count)]
        case .threadStart: return [a("tid", .tid), a("name", .string)]
        case .threadStop: return [a("tid", .tid), a("name", .string)]
        case .sendStart: return [a("send", .id), a("spans", .count), a("bytes", .count), a("attempt", .count)]
        case .sendComplete: return [a("send", .id), a("status", .httpStatus), a("us", .micros), a("spans", .count)]
        case .sendCancel: return [a("send", .id), a("reason", .cancelReason), a("us", .micros), a("spans", .count)]
        case .sendFail: return [a("send", .id), a("error", .string), a("us", .micros), a("errno", .errno)]
        case .spanRequeued: return [a("spans", .count), a("reason", .cancelReason), a("send", .id)]
        case .spanDropped: return [a("spans", .count), a("reason", .dropReason), a("send", .id)]
        case .transportOpen: return [a("transport", .id), a("url", .string), a("policy", .policy)]
        case .transportClose: return [a("transport", .id), a("waited_us", .micros)]
        case .operatorCommand: return [a("command", .string), a("from_pid", .pid), a("uid", .count), a("target", .pid)]
        case .workerSpawned: return [a("worker", .pid), a("index", .count)]
        case .workerExited: return [a("worker", .pid), a("status", .count), a("signal", .signal), a("index", .count)]
        case .serverHook: return [a("hook", .string), a("server", .string), a("worker_index", .count)]
        case .writerGauge: return [a("buffered", .count), a("accepted", .count), a("sent", .count), a("lock_holder", .tid)]
        case .writerLosses: return [a("requeued", .count), a("dropped", .count), a("cancelled", .count), a("failed", .count)]
        case .cancelRequested: return [a("send", .id), a("reason", .cancelReason), a("matched", .bool)]
        case .drainWait: return [a("send", .id), a("timeout_ms", .count), a("outcome", .outcome), a("us", .micros)]
        case .agentRequest: return [a("spans", .count), a("bytes", .count), a("status", .httpStatus), a("delay_ms", .count)]
        case .mark: return [a("a0", .count), a("a1", .count), a("a2", .count), a("a3", .count)]
        }
    }
}

// MARK: value tables for enumerated arguments (stable numbers, append only).

/// The at-fork stages, as in `pthread_atfork` and dd-trace-rb's AtForkMonkeyPatch.
public enum ForkStage: UInt64, CaseIterable, Sendable {
    case before = 1, parent = 2, child = 3
    public var name: String { switch self { case .before: "before"; case .parent: "parent"; case .child: "child" } }
}

/// What a fork does with an in-flight send.
public enum ForkPolicy: UInt64, CaseIterable, Sendable {
    case drain = 1, cancel = 2, drainThenCancel = 3
    public var name: String { switch self { case .drain: "drain"; case .cancel: "cancel"; case .drainThenCancel: "drain:T" } }
}

public enum ProcessRole: UInt64, CaseIterable, Sendable {
    case unknown = 0, master = 1, worker = 2, daemon = 3, child = 4, agent = 5, host = 6, tool = 7
    public var name: String {
        switch self {
        case .unknown: "unknown"; case .master: "master"; case .worker: "worker"; case .daemon: "daemon"
        case .child: "child"; case .agent: "agent"; case .host: "host"; case .tool: "tool"
        }
    }
}

public enum CancelReason: UInt64, CaseIterable, Sendable {
    case fork = 1, operatorRequest = 2, shutdown = 3, threadKilled = 4, drainTimeout = 5, close = 6, agentError = 7
    public var name: String {
        switch self {
        case .fork: "fork"; case .operatorRequest: "operator"; case .shutdown: "shutdown"
        case .threadKilled: "thread_killed"; case .drainTimeout: "drain_timeout"; case .close: "close"
        case .agentError: "agent_error"
        }
    }
}

public enum DropReason: UInt64, CaseIterable, Sendable {
    case bufferFull = 1, retriesExhausted = 2, closed = 3, encodingFailed = 4, agentRejected = 5, shutdownDeadline = 6
    public var name: String {
        switch self {
        case .bufferFull: "buffer_full"; case .retriesExhausted: "retries_exhausted"; case .closed: "closed"
        case .encodingFailed: "encoding_failed"; case .agentRejected: "agent_rejected"
        case .shutdownDeadline: "shutdown_deadline"
        }
    }
}

public enum Outcome: UInt64, CaseIterable, Sendable {
    case ok = 0, failed = 1, timedOut = 2, cancelled = 3
    public var name: String { switch self { case .ok: "ok"; case .failed: "failed"; case .timedOut: "timed_out"; case .cancelled: "cancelled" } }
}
