import EventRing

/// One process incarnation: a pid names a process only together with its
/// start time (clock ticks since boot, `/proc/<pid>/stat` field 22), since
/// pids are reused. `start` is 0 while the start time is unknown (the
/// process never published `process.start` with it and owned no lane whose
/// owner start the reader saw).
public struct ProcessKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var pid: Int32
    public var start: UInt64

    public init(pid: Int32, start: UInt64) {
        self.pid = pid
        self.start = start
    }

    public static func < (a: ProcessKey, b: ProcessKey) -> Bool { (a.pid, a.start) < (b.pid, b.start) }

    public var description: String { start == 0 ? "\(pid)" : "\(pid)@\(start)" }
}

/// Where a process is in its life, as the events say.
public enum ProcessState: Equatable, Sendable {
    /// Seen starting (or forked) but not yet serving.
    case starting
    case running
    /// A fork's `before` stage: no new send may start, the in-flight one is
    /// drained or cancelled, workers are joined.
    case quiescing
    /// `before` succeeded: fork() is being called, parent or child next.
    case inFork
    /// Ended: exit status, or the signal that killed it (0 when none).
    case exited(status: Int32, signal: Int32)
    /// No longer alive, but no exit event was seen (SIGKILL of a process
    /// whose parent publishes nothing): reported by a liveness check.
    case gone

    public var isEnded: Bool {
        switch self {
        case .exited, .gone: true
        default: false
        }
    }

    /// A short label for tables: `running`, `exit 0`, `SIGKILL`, `gone`.
    public var label: String {
        switch self {
        case .starting: "starting"
        case .running: "running"
        case .quiescing: "quiescing"
        case .inFork: "in fork"
        case .exited(let status, let signal): signal != 0 ? SignalName.name(signal) : "exit \(status)"
        case .gone: "gone"
        }
    }
}

/// How a send ended (or that it has not).
public enum SendOutcome: Equatable, Sendable {
    case inFlight
    /// The agent answered with this HTTP status.
    case completed(status: UInt16)
    case cancelled(CancelReason?)
    case failed(String)
    /// The process exited (or vanished) with the send still in flight.
    case unfinished

    public var isFinished: Bool { self != .inFlight }

    public var label: String {
        switch self {
        case .inFlight: "in flight"
        case .completed(let status): status >= 200 && status < 300 ? "ok \(status)" : "status \(status)"
        case .cancelled(let reason): "cancelled (\(reason?.name ?? "?"))"
        case .failed(let text): "failed: \(text)"
        case .unfinished: "unfinished"
        }
    }
}

/// One send of a payload to the agent: a bar on the timeline.
public struct Send: Equatable, Sendable {
    public var id: UInt64
    public var start: UInt64
    /// nil while in flight.
    public var end: UInt64?
    public var spans: UInt64
    public var bytes: UInt64
    public var attempt: UInt64
    public var outcome: SendOutcome
    /// When an operator or a fork asked to cancel it (`cancel.requested`).
    public var cancelRequestedAt: UInt64?
    /// The start event was lost (overwritten): the start is the end minus
    /// the duration the outcome event carries.
    public var startReconstructed = false
}

/// What a mark on the timeline stands for.
public enum MarkKind: Equatable, Sendable {
    case processStart
    /// `fork.before.start`: the `before` stage begins.
    case forkBefore
    /// `fork.parent`: fork() returned in the parent.
    case forkParent
    /// `fork.child`: the child's first event.
    case forkChild
    case forkFailed
    /// The child found it was forked without the hooks having run.
    case unhookedFork
    /// The runtime was rebuilt at this generation.
    case rebuild(generation: UInt32)
    case exit(signaled: Bool)
    case operatorCommand
    /// The agent received a payload (`agent.request`).
    case agentRequest
}

public struct Mark: Equatable, Sendable {
    public var time: UInt64
    public var kind: MarkKind
}

/// A span of time during which the process was quiesced for a fork.
public struct QuiesceWindow: Equatable, Sendable {
    public var start: UInt64
    /// nil while still quiesced.
    public var end: UInt64?
}

/// A fork (or a spawn a master reported) from one process row to another.
public struct ForkArrow: Equatable, Sendable {
    public var time: UInt64
    /// Indices into `DashboardModel.processes`.
    public var parent: Int
    public var child: Int
}

/// One at-fork hook run (`hook.run`) or server hook (`server.hook`).
public struct HookRun: Equatable, Sendable {
    public var time: UInt64
    /// nil for a server hook point (`before_fork`, `after_fork`, …).
    public var stage: ForkStage?
    public var name: String
    public var outcome: Outcome
    public var micros: UInt64
}

/// The exporter's writer state, from `writer.gauge`, `writer.losses` and
/// `span.requeued`/`span.dropped`.
public struct WriterGauge: Equatable, Sendable {
    public var buffered: UInt64 = 0
    public var accepted: UInt64 = 0
    public var sent: UInt64 = 0
    public var lockHolder: UInt64 = 0
    public var requeued: UInt64 = 0
    public var dropped: UInt64 = 0
    public var cancelled: UInt64 = 0
    public var failed: UInt64 = 0
    /// When the last gauge arrived (0: never).
    public var updated: UInt64 = 0
    /// Spans dropped, by reason, summed from `span.dropped` events.
    public var droppedByReason: [DropReason: UInt64] = [:]
    /// Spans re-queued, summed from `span.requeued` events.
    public var requeuedSpans: UInt64 = 0
}

/// How a fork's wait for the in-flight send ended.
public struct DrainNote: Equatable, Sendable {
    public var outcome: Outcome
    public var micros: UInt64
}

/// A process's error note: the latest failure text and when it happened.
public struct ErrorNote: Equatable, Sendable {
    public var time: UInt64
    public var text: String
}

/// The timeline of one process, each list sorted by time.
public struct Timeline: Equatable, Sendable {
    /// Finished sends, by start time.
    public var sends: [Send] = []
    /// Sends still in flight (one per transport, normally at most one).
    public var inFlight: [Send] = []
    public var windows: [QuiesceWindow] = []
    public var openWindow: QuiesceWindow?
    public var marks: [Mark] = []
    /// The longest finished send, so a renderer can find every send that
    /// overlaps a time window by binary search on the start.
    public var longestSend: UInt64 = 0
    /// Entries removed to bound memory (oldest first).
    public var trimmed = 0

    static let limit = 16_384

    mutating func add(_ mark: Mark) {
        insertSorted(&marks, mark) { $0.time }
        if marks.count > Timeline.limit { marks.removeFirst(Timeline.limit / 2); trimmed += Timeline.limit / 2 }
    }

    mutating func finish(_ send: Send) {
        if let end = send.end, end >= send.start { longestSend = max(longestSend, end - send.start) }
        insertSorted(&sends, send) { $0.start }
        if sends.count > Timeline.limit { sends.removeFirst(Timeline.limit / 2); trimmed += Timeline.limit / 2 }
    }

    mutating func openQuiesce(at time: UInt64) {
        if openWindow == nil { openWindow = QuiesceWindow(start: time, end: nil) }
    }

    mutating func closeQuiesce(at time: UInt64) {
        guard var window = openWindow else { return }
        window.end = max(time, window.start)
        openWindow = nil
        insertSorted(&windows, window) { $0.start }
        if windows.count > Timeline.limit { windows.removeFirst(Timeline.limit / 2); trimmed += Timeline.limit / 2 }
    }
}

/// Appends `element` keeping `array` sorted by `key`: events arrive merged by
/// time within one read, and almost in order across reads, so this is an
/// append except for a late event from a slow lane.
@inline(__always)
func insertSorted<T>(_ array: inout [T], _ element: T, by key: (T) -> UInt64) {
    let k = key(element)
    if let last = array.last, key(last) > k {
        var low = 0, high = array.count
        while low < high {
            let mid = (low + high) / 2
            if key(array[mid]) <= k { low = mid + 1 } else { high = mid }
        }
        array.insert(element, at: low)
    } else {
        array.append(element)
    }
}

/// Everything the dashboard knows about one process.
public struct ProcessModel: Equatable, Sendable {
    public var key: ProcessKey
    public var ppid: Int32 = 0
    /// Index of the parent in `DashboardModel.processes`.
    public var parent: Int?
    public var children: [Int] = []
    public var role: ProcessRole = .unknown
    public var name: String?
    public var state: ProcessState = .starting
    /// Whether `process.start` was seen (else the process was created on
    /// first sight of another event, or named by its parent).
    public var sawStart = false
    /// Created from a parent's event (`fork.parent`, `worker.spawned`)
    /// before any event of its own.
    public var placeholder = false
    public var firstSeen: UInt64
    public var lastSeen: UInt64
    public var endedAt: UInt64?
    /// The lane it publishes on (-1: none seen).
    public var lane = -1
    /// Fork depth (`fork.child` generation).
    public var forkGeneration: UInt32 = 0
    /// The exporter runtime's generation (rebuilt in each child).
    public var runtimeGeneration: UInt32 = 0
    public var policy: ForkPolicy?
    public var transport: String?
    public var workerIndex: UInt64?
    public var hooks: [HookRun] = []
    public var registeredHooks = 0
    public var threads = 0
    /// After a fork its runtime's threads start on first use
    /// (`runtime.resume` with none started, or `runtime.rebuild`), until a
    /// `thread.start`.
    public var threadsDeferred = false
    public var lastSend: Send?
    public var sendsOK = 0
    public var sendsCancelled = 0
    public var sendsFailed = 0
    public var cancelRequests = 0
    public var gauge = WriterGauge()
    public var lastError: ErrorNote?
    /// The last drain wait of a fork (`drain.wait`).
    public var lastDrain: DrainNote?
    /// For the agent process: requests seen and the delay it applied last.
    public var agentRequests = 0
    public var agentDelayMilliseconds: UInt64 = 0
    public var events = 0
    public var timeline = Timeline()

    init(key: ProcessKey, time: UInt64) {
        self.key = key
        firstSeen = time
        lastSeen = time
    }

    /// `unicorn worker 1`, else the role, else `pid N`.
    public var displayName: String {
        if let name, !name.isEmpty { return name }
        if role != .unknown { return role.name }
        return "pid \(key.pid)"
    }

    /// The in-flight send with the oldest start.
    public var inFlight: Send? { timeline.inFlight.first }

    static let hookHistory = 12

    mutating func noteHook(_ run: HookRun) {
        hooks.append(run)
        if hooks.count > ProcessModel.hookHistory { hooks.removeFirst(hooks.count - ProcessModel.hookHistory) }
    }

    /// Moves out of `starting` on the first sign of work.
    mutating func markRunning() {
        if state == .starting { state = .running }
    }
}
