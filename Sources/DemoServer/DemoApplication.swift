import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// The demo's "application": what a real app sets up when it loads — here,
/// the trace exporter. Where it is created (the master before forking, with
/// preload; each worker after forking, without) is what the second seed is
/// about.
public final class DemoApplication: @unchecked Sendable {
    public let writer: TraceWriter
    public let service = "forkscope-demo"

    public init(configuration: ServerConfiguration) throws {
        var writerConfiguration = WriterConfiguration()
        writerConfiguration.flushIntervalMilliseconds = configuration.flushIntervalMilliseconds
        // Large batches: under full-speed load (wrk) a send per few hundred
        // spans would spend the exporter's time on round trips.
        writerConfiguration.flushThreshold = 2_000
        writerConfiguration.bufferCapacity = 100_000
        writerConfiguration.maxSpansPerSend = 10_000
        // v0.5 (a string table, spans as arrays): a quarter of the bytes of
        // v0.4, and the agent decodes it twice as fast.
        writerConfiguration.apiVersion = .v05
        writerConfiguration.tracer = TracerIdentity(language: "swift", languageVersion: "6.3", tracerVersion: "forkscope-demo")
        writer = try TraceWriter(endpoint: AgentEndpoint(parsing: configuration.agentURL), policy: configuration.policy,
                                 configuration: writerConfiguration)
        writer.transport.participant.detectsUnhookedForks = configuration.detectForks
    }

    /// Builds the span tree of one request (2–5 spans) and hands it to the
    /// exporter; returns how many spans it made.
    @discardableResult
    public func trace(method: String, target: String, durationNanoseconds: Int64, status: Int) -> Int {
        var random = SpanIDGenerator.shared
        defer { SpanIDGenerator.shared = random }
        let traceID = UInt64.random(in: 1...UInt64.max, using: &random)
        let rootID = UInt64.random(in: 1...UInt64.max, using: &random)
        let now = Int64(Clock.realtimeNanoseconds())
        let start = now - durationNanoseconds
        let tags = ProcessTags.current
        var root = Span(traceID: traceID, spanID: rootID, parentID: 0, name: "http.request", resource: method + " " + target,
                        service: service, type: "web", start: start, duration: durationNanoseconds, error: status >= 500 ? 1 : 0)
        root.meta = OrderedMap(distinctKeys: Self.rootMetaKeys, values: [method, target, String(status), "forkscope-demo"])
        root.metrics = tags.rootMetrics
        let children = Int.random(in: 1...4, using: &random)
        var spans: [Span] = []
        spans.reserveCapacity(children + 1)
        spans.append(root)
        let slice = max(1, durationNanoseconds / Int64(children + 1))
        for index in 0..<children {
            let name = Self.childNames[index]
            spans.append(Span(traceID: traceID, spanID: UInt64.random(in: 1...UInt64.max, using: &random), parentID: rootID,
                              name: name, resource: name, service: service, type: index == 1 ? "sql" : "custom",
                              start: start + slice * Int64(index), duration: slice, error: 0, metrics: tags.childMetrics))
        }
        writer.enqueue(spans)
        return spans.count
    }

    // Built once, not per request: the tag names never change.
    static let rootMetaKeys = ["http.method", "http.url", "http.status_code", "component"]
    static let childNames = ["app.handler", "db.query", "cache.get", "template.render"]
}

/// The numeric tags that depend only on the process, built once per
/// process (again after a fork: a preloaded app's worker has a new pid).
struct ProcessTags {
    let pid: Int32
    let rootMetrics: OrderedMap<Double>
    let childMetrics: OrderedMap<Double>

    init(pid: Int32) {
        self.pid = pid
        rootMetrics = OrderedMap(distinctKeys: ["process_id", "_dd.top_level", "_sampling_priority_v1"], values: [Double(pid), 1, 1])
        childMetrics = OrderedMap(distinctKeys: ["process_id"], values: [Double(pid)])
    }

    nonisolated(unsafe) private static var cached = ProcessTags(pid: fks_cached_pid())

    /// One load of the cached pid per request, not a getpid(2).
    static var current: ProcessTags {
        let pid = fks_cached_pid()
        if cached.pid != pid { cached = ProcessTags(pid: pid) }
        return cached
    }
}

/// Span ids from a per-process xorshift generator seeded by the kernel once
/// (and again after every fork, so two workers never draw the same ids):
/// a getrandom(2) per id would cost a system call per span.
struct SpanIDGenerator: RandomNumberGenerator {
    private var state: UInt64
    private var forkCount: UInt64

    nonisolated(unsafe) static var shared = SpanIDGenerator()

    init() {
        var seed = SystemRandomNumberGenerator()
        state = seed.next() | 1
        forkCount = fks_fork_count()
    }

    mutating func next() -> UInt64 {
        if forkCount != fks_fork_count() { self = SpanIDGenerator() }
        // xorshift64*
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
}

// A real-time signal (SIGRTMIN+2) cancels the in-flight send of a worker's
// exporter: the operator's `cancel`. Not USR1/USR2: servers own those
// (USR2 re-execs the master). The handler reads one C-compatible global (the
// cancellation word), so it runs no Swift runtime code.
nonisolated(unsafe) private var cancelState: UnsafeMutablePointer<fks_cancellation>? = nil

nonisolated private func cancelOnSignal(_ signal: CInt) {
    if let state = cancelState { _ = fks_cancellation_cancel_current(state, CancelReason.operatorRequest.rawValue) }
}

public enum CancelSignal {
    public static var signal: CInt { fks_sigrtmin() + 2 }

    /// Points the handler at `writer`'s transport and installs it.
    public static func target(_ writer: TraceWriter) {
        cancelState = writer.transport.participant.cancellation.signalSafeState
        try? Signals.install(cancelOnSignal, for: signal, flags: [.restart])
    }
}
