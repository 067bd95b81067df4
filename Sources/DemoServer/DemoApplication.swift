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
    /// The payload constants by name, read through `self` on the request
    /// path: as `static let`s each use was a lazy global's `swift_once`.
    private let names = Names()

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
        writerConfiguration.payloadConstants = Self.constants
        writerConfiguration.tracer = TracerIdentity(language: "swift", languageVersion: "6.3", tracerVersion: "forkscope-demo")
        writer = try TraceWriter(endpoint: AgentEndpoint(parsing: configuration.agentURL), policy: configuration.policy,
                                 configuration: writerConfiguration)
        writer.transport.participant.detectsUnhookedForks = configuration.detectForks
    }

    /// Writes the span tree of one request (2–5 spans) straight into the
    /// exporter's payload; returns how many spans it made. The strings that
    /// never change are `Self.constants` (a v0.5 table slot known in
    /// advance); what comes from the request (method, target, status) is
    /// written, and interned, per span as before.
    @discardableResult
    public func trace(method: String, target: String, durationNanoseconds: Int64, status: Int) -> Int {
        var random = SpanIDGenerator.shared
        defer { SpanIDGenerator.shared = random }
        let traceID = UInt64.random(in: 1...UInt64.max, using: &random)
        let rootID = UInt64.random(in: 1...UInt64.max, using: &random)
        let now = Int64(Clock.realtimeNanoseconds())
        let start = now - durationNanoseconds
        let pid = Double(fks_cached_pid())
        let children = Int.random(in: 1...4, using: &random)
        var childIDs: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &childIDs) { ids in
            for index in 0..<children { ids.storeBytes(of: UInt64.random(in: 1...UInt64.max, using: &random), toByteOffset: index * 8, as: UInt64.self) }
        }
        let resource = method + " " + target
        let statusCode = String(status)
        let slice = max(1, durationNanoseconds / Int64(children + 1))
        writer.enqueue(spanCount: children + 1) { payload in
            payload.beginTrace(spanCount: children + 1)
            payload.beginSpan(service: names.service, name: names.httpRequest, resource: .dynamic(resource), traceID: traceID, spanID: rootID,
                              parentID: 0, start: start, duration: durationNanoseconds, error: status >= 500 ? 1 : 0)
            payload.beginMeta(count: 4)
            payload.tag(names.httpMethod, .dynamic(method))
            payload.tag(names.httpURL, .dynamic(target))
            payload.tag(names.httpStatusCode, .dynamic(statusCode))
            payload.tag(names.component, names.service)
            payload.beginMetrics(count: 3)
            payload.metric(names.processID, pid)
            payload.metric(names.topLevel, 1)
            payload.metric(names.samplingPriority, 1)
            payload.endSpan(type: names.web)
            withUnsafeBytes(of: childIDs) { ids in
                for index in 0..<children {
                    let name = names.childNames[index]
                    payload.beginSpan(service: names.service, name: name, resource: name, traceID: traceID,
                                      spanID: ids.load(fromByteOffset: index * 8, as: UInt64.self), parentID: rootID,
                                      start: start + slice * Int64(index), duration: slice, error: 0)
                    // `process_id` only on the root, as Datadog tracers
                    // write it: the agent reads a chunk's from its first
                    // span that carries one.
                    payload.beginMeta(count: 0)
                    payload.beginMetrics(count: 0)
                    payload.endSpan(type: index == 1 ? names.sql : names.custom)
                }
            }
        }
        return children + 1
    }

    /// Every string of the demo's spans that does not depend on the request.
    static let constants = PayloadConstants([
        "forkscope-demo", "http.request", "web", "http.method", "http.url", "http.status_code", "component",
        "process_id", "_dd.top_level", "_sampling_priority_v1", "app.handler", "db.query", "cache.get", "template.render",
        "sql", "custom",
    ])

    /// `constants` by name (positions in that list).
    struct Names {
        let service = SpanText.constant(constants[0])
        let httpRequest = SpanText.constant(constants[1])
        let web = SpanText.constant(constants[2])
        let httpMethod = constants[3]
        let httpURL = constants[4]
        let httpStatusCode = constants[5]
        let component = constants[6]
        let processID = constants[7]
        let topLevel = constants[8]
        let samplingPriority = constants[9]
        let childNames = (10...13).map { SpanText.constant(constants[$0]) }
        let sql = SpanText.constant(constants[14])
        let custom = SpanText.constant(constants[15])
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
