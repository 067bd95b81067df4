import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import Wire

public struct WriterConfiguration: Sendable {
    /// Spans held at most (queued + in flight); beyond, new traces are dropped (`buffer_full`).
    public var bufferCapacity = 10_000
    /// A flush happens at least this often when spans are waiting.
    public var flushIntervalMilliseconds: UInt64 = 1_000
    /// …and as soon as this many spans wait.
    public var flushThreshold = 1_000
    /// The most spans in one payload.
    public var maxSpansPerSend = 5_000
    /// Attempts per payload before it is dropped (`retries_exhausted`).
    public var maxAttempts = 5
    public var backoffBaseMilliseconds: UInt64 = 50
    public var backoffMaxMilliseconds: UInt64 = 2_000
    public var apiVersion: TraceAPIVersion = .v04
    /// Strings the direct span API (`enqueue(spanCount:encode:)`) writes
    /// as constants; every payload is built with them.
    public var payloadConstants: PayloadConstants?
    public var tracer = TracerIdentity(language: "swift", languageVersion: "6", tracerVersion: "forkscope-0.1")

    public init() {}

    /// A payload encoder for this writer's API version and constants.
    func emptyPayload() -> TracePayloadEncoder { TracePayloadEncoder(version: apiVersion, constants: payloadConstants) }
}

/// Counters of one process's writer. At every quiescent point
/// `accepted == sent + buffered + dropped` (buffered includes in flight).
public struct WriterCounters: Equatable, Sendable {
    public var accepted: UInt64 = 0
    public var sent: UInt64 = 0
    public var buffered: UInt64 = 0
    public var requeued: UInt64 = 0
    public var cancelled: UInt64 = 0
    public var failed: UInt64 = 0
    public var dropped: [DropReason: UInt64] = [:]

    public var droppedTotal: UInt64 { dropped.values.reduce(0, +) }
    public var isBalanced: Bool { accepted == sent + buffered + droppedTotal }
}

/// Buffers traces and sends them from a flush worker on the fork-safe
/// runtime: on an interval and when enough spans wait; retries with
/// exponential backoff on 5xx, 408, 429, timeouts, resets and refusals;
/// re-queues a cancelled payload (it is sent later, never lost); drops only
/// with a counted reason. Publishes the writer gauge at each flush and at
/// least once a second, so the dashboard shows state, not only transitions.
public final class TraceWriter: @unchecked Sendable {
    public let transport: Transport
    public let runtime: WorkerRuntime
    public let configuration: WriterConfiguration

    /// An encoded payload on its way: sent, or kept for a retry with the
    /// same bytes.
    private struct Batch {
        var payload: [UInt8]
        var traces: Int
        var spans: Int
        var attempts = 0
        var notBefore: UInt64 = 0
    }

    // Lock order: the transport's send lock is never taken while holding this.
    private let lock = Lock()
    /// Traces are encoded as they are accepted (under the lock: the flush
    /// worker holds it only to swap the encoder out), so the flush worker
    /// only finishes and sends, and no `Span` outlives `enqueue`.
    private var building: TracePayloadEncoder
    /// Encoders that reached `maxSpansPerSend`, oldest first.
    private var sealed: [TracePayloadEncoder] = []
    /// The last encoder the flush worker finished: empty, with its buffer's
    /// capacity, the next `building`. A fresh encoder grows its buffer (and
    /// faults its pages in) a span at a time, on the request path. Only the
    /// flush worker (or `stop`, after it) touches it: no lock.
    private var finished: TracePayloadEncoder?
    /// Spans in `building` and `sealed`.
    private var queuedSpans = 0
    private var retry: Batch?
    private var inFlightSpans = 0
    private var counters = WriterCounters()
    private var lastFlush: UInt64
    private var lastGauge: UInt64 = 0
    private var stopping = false
    /// The participant's fork observer, asked on every trace before the
    /// participant itself (see `ForkParticipant.observer`).
    private let forkObserver: ForkObserver

    public init(endpoint: AgentEndpoint, policy: SendPolicy, configuration: WriterConfiguration = WriterConfiguration(),
                timeouts: Timeouts = Timeouts(), registry: AtForkRegistry = .shared) throws(SystemError) {
        self.configuration = configuration
        building = configuration.emptyPayload()
        // Tick often enough for backoff and the once-a-second gauge; the
        // flush interval itself is checked on each tick.
        let tickMilliseconds = min(100, configuration.flushIntervalMilliseconds)
        var flush: (() -> Void)?
        var hasWork: (() -> Bool)?
        runtime = WorkerRuntime(name: "flush", workers: 1, tickEvery: tickMilliseconds, tick: { flush?() }, hasWork: { hasWork?() ?? false })
        transport = try Transport(endpoint: endpoint, policy: policy, runtime: runtime, timeouts: timeouts, registry: registry)
        forkObserver = transport.participant.observer
        lastFlush = Clock.monotonicNanoseconds()
        flush = { [unowned self] in self.tick() }
        hasWork = { [unowned self] in self.lock.withLock { self.queuedSpans > 0 || self.retry != nil } }
        transport.afterChildReset = { [unowned self] in self.resetInChild() }
        runtime.start()
    }

    deinit { stop() }

    /// Accepts a trace, or drops it (`buffer_full`, `closed`) with a count.
    @discardableResult
    public func enqueue(_ trace: [Span]) -> Bool {
        accept(spans: trace.count) { $0.append(trace: trace) }
    }

    /// Accepts a trace of `spanCount` spans that `encode` writes straight
    /// into the payload with the encoder's direct span API (`beginTrace`
    /// with this count, then each span), under the writer's lock: no `Span`
    /// values are built. Or drops it, as `enqueue(_:)` does.
    @discardableResult
    public func enqueue(spanCount: Int, encode: (inout TracePayloadEncoder) -> Void) -> Bool {
        accept(spans: spanCount, encode)
    }

    private func accept(spans: Int, _ encode: (inout TracePayloadEncoder) -> Void) -> Bool {
        // A raw fork() may have left us a dead flush thread and a lock
        // held by a thread that does not exist: recover before locking.
        if forkObserver.hasUnseenFork { transport.participant.recoverFromUnhookedFork() }
        let (accepted, wake): (Bool, Bool) = lock.withLock {
            counters.accepted += UInt64(spans)
            if stopping {
                counters.dropped[.closed, default: 0] += UInt64(spans)
                return (false, false)
            }
            if queuedSpans + inFlightSpans + (retry?.spans ?? 0) + spans > configuration.bufferCapacity {
                counters.dropped[.bufferFull, default: 0] += UInt64(spans)
                return (false, false)
            }
            if building.spanCount > 0 && building.spanCount + spans > configuration.maxSpansPerSend {
                sealed.append(building)
                building = configuration.emptyPayload()
            }
            let before = building.spanCount
            encode(&building)
            precondition(building.spanCount == before + spans, "a trace must hold the spans it was accepted with")
            queuedSpans += spans
            // Wake the flush worker once, when the threshold is crossed, not
            // on every trace after it (a lock and a broadcast each).
            let threshold = configuration.flushThreshold
            return (true, queuedSpans >= threshold && queuedSpans - spans < threshold)
        }
        if !accepted {
            Telemetry.publish(.spanDropped, UInt64(spans), (stopping ? DropReason.closed : .bufferFull).rawValue)
        }
        if wake { runtime.requestTick() } else if accepted { runtime.startIfDeferred() }
        return accepted
    }

    /// Asks the flush worker to flush now.
    public func flushSoon() { runtime.requestTick() }

    public var snapshot: WriterCounters {
        lock.withLock {
            var copy = counters
            copy.buffered = UInt64(queuedSpans + inFlightSpans + (retry?.spans ?? 0))
            return copy
        }
    }

    /// Flushes what is buffered (bounded by `deadlineMilliseconds`), then
    /// stops the worker and closes the transport. What could not be sent
    /// in time is dropped as `shutdown_deadline`. Idempotent.
    public func stop(deadlineMilliseconds: UInt64 = 5_000) {
        let already: Bool = lock.withLock {
            defer { stopping = true }
            return stopping
        }
        if already { return }
        // A writer whose flush thread never existed in this process (a fork
        // no hook handled, detection off) flushes nothing: its spans stay
        // buffered, as in the second seed. The final gauge shows them.
        let healthy = runtime.threadsExistHere || runtime.state != .running
        runtime.stop()
        if !healthy {
            publishGauge()
            transport.close()
            return
        }
        let deadline = Deadline.after(milliseconds: deadlineMilliseconds)
        while !deadline.hasPassed, flushOnce(force: true, deadline: deadline) {}
        let leftover: Int = lock.withLock {
            let left = queuedSpans + (retry?.spans ?? 0)
            if left > 0 { counters.dropped[.shutdownDeadline, default: 0] += UInt64(left) }
            building = configuration.emptyPayload()
            sealed = []
            finished = nil
            queuedSpans = 0
            retry = nil
            return left
        }
        if leftover > 0 { Telemetry.publish(.spanDropped, UInt64(leftover), DropReason.shutdownDeadline.rawValue) }
        publishGauge()
        transport.close()
    }

    // MARK: the flush worker

    private func tick() {
        while flushOnce(force: false, deadline: .never) {}
        if Clock.monotonicNanoseconds() - lock.withLock({ lastGauge }) >= 1_000_000_000 { publishGauge() }
    }

    /// Sends one batch if one is due; returns whether to look again at once.
    private func flushOnce(force: Bool, deadline: Deadline) -> Bool {
        if transport.participant.isQuiescing { return false }
        let now = Clock.monotonicNanoseconds()
        guard var batch = takeBatch(now: now, force: force) else { return false }
        let payload = EncodedPayload(
            path: configuration.apiVersion.path, bytes: batch.payload,
            headers: TracePayload.requestHeaders(traceCount: batch.traces, tracer: configuration.tracer),
            traceCount: batch.traces, spanCount: batch.spans
        )
        batch.attempts += 1
        let outcome = transport.send(payload, attempt: batch.attempts)
        settle(batch, outcome)
        publishGauge()
        if case .deferred = outcome { return false }
        return !deadline.hasPassed
    }

    private func takeBatch(now: UInt64, force: Bool) -> Batch? {
        enum Taken { case retry(Batch), fresh(TracePayloadEncoder) }
        var recycled = finished.take()
        let taken: Taken? = lock.withLock {
            if let pending = retry {
                guard force || pending.notBefore <= now else { return nil }
                retry = nil
                inFlightSpans = pending.spans
                return .retry(pending)
            }
            guard queuedSpans > 0 else { return nil }
            let due = force || queuedSpans >= configuration.flushThreshold
                || now - lastFlush >= configuration.flushIntervalMilliseconds * 1_000_000
            guard due else { return nil }
            let encoder: TracePayloadEncoder
            if sealed.isEmpty {
                encoder = building
                building = recycled.take() ?? configuration.emptyPayload()
            } else {
                encoder = sealed.removeFirst()
            }
            queuedSpans -= encoder.spanCount
            inFlightSpans = encoder.spanCount
            lastFlush = now
            return .fresh(encoder)
        }
        if recycled != nil { finished = recycled }  // not needed this time
        switch taken {
        case nil: return nil
        case .retry(let batch): return batch
        case .fresh(var encoder):
            // Finished outside the lock: joining the string table and the
            // spans copies the whole payload while a request may be waiting.
            let traces = encoder.traceCount, spans = encoder.spanCount
            let batch = Batch(payload: encoder.finish(), traces: traces, spans: spans)
            finished = encoder
            return batch
        }
    }

    private func settle(_ batch: Batch, _ outcome: SendOutcome) {
        enum Verdict { case sent, retry(CancelReason), requeue(CancelReason), keep, drop(DropReason) }
        let verdict: Verdict
        switch outcome {
        case .responded(let status, _, _) where (200...299).contains(status): verdict = .sent
        case .responded(let status, _, _) where status == 408 || status == 429 || status >= 500: verdict = .retry(.agentError)
        case .responded: verdict = .drop(.agentRejected)
        case .cancelled(let reason, _): verdict = .requeue(reason)
        case .failed(let error, _) where error.isRetryable: verdict = .retry(.agentError)
        case .failed(.closed, _): verdict = .drop(.closed)
        case .failed: verdict = .retry(.agentError)
        case .deferred: verdict = .keep
        }
        let spans = UInt64(batch.spans)
        lock.withLock {
            inFlightSpans = 0
            switch verdict {
            case .sent:
                counters.sent += spans
            case .keep:
                var kept = batch
                kept.attempts -= 1
                retry = kept
            case .requeue:
                // A cancelled payload is not the agent's fault: same attempt count.
                counters.cancelled += 1
                counters.requeued += spans
                var again = batch
                again.attempts -= 1
                retry = again
            case .retry:
                counters.failed += 1
                if batch.attempts >= configuration.maxAttempts {
                    counters.dropped[.retriesExhausted, default: 0] += spans
                } else {
                    counters.requeued += spans
                    var again = batch
                    let backoff = min(configuration.backoffMaxMilliseconds,
                                      configuration.backoffBaseMilliseconds << UInt64(min(batch.attempts - 1, 16)))
                    again.notBefore = Clock.monotonicNanoseconds() + backoff * 1_000_000
                    retry = again
                }
            case .drop(let reason):
                counters.dropped[reason, default: 0] += spans
            }
        }
        switch verdict {
        case .requeue(let reason): Telemetry.publish(.spanRequeued, spans, reason.rawValue)
        case .retry(let reason):
            if batch.attempts >= configuration.maxAttempts {
                Telemetry.publish(.spanDropped, spans, DropReason.retriesExhausted.rawValue)
            } else {
                Telemetry.publish(.spanRequeued, spans, reason.rawValue)
            }
        case .drop(let reason): Telemetry.publish(.spanDropped, spans, reason.rawValue)
        case .sent, .keep: break
        }
    }

    private func publishGauge() {
        let now = Clock.monotonicNanoseconds()
        let counters = lock.withLock { () -> WriterCounters in
            lastGauge = now
            var copy = self.counters
            copy.buffered = UInt64(queuedSpans + inFlightSpans + (retry?.spans ?? 0))
            return copy
        }
        let generation = runtime.generation
        Telemetry.publish(.writerGauge, generation: generation, counters.buffered, counters.accepted, counters.sent, transport.sendLockHolder)
        Telemetry.publish(.writerLosses, generation: generation, counters.requeued, counters.droppedTotal, counters.cancelled, counters.failed)
    }

    /// In a forked child: the buffer and counters are the parent's (it
    /// sends those spans); this process starts empty.
    private func resetInChild() {
        lock.reinitializeInChild()
        building = configuration.emptyPayload()
        sealed = []
        finished = nil
        queuedSpans = 0
        retry = nil
        inFlightSpans = 0
        counters = WriterCounters()
        stopping = false
        lastFlush = Clock.monotonicNanoseconds()
    }
}
