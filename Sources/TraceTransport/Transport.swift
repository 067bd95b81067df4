import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import Wire

/// An encoded trace payload, ready to send.
public struct EncodedPayload: Sendable {
    public var path: String
    public var bytes: [UInt8]
    public var headers: HTTPHeaders
    public var traceCount: Int
    public var spanCount: Int

    public init(path: String, bytes: [UInt8], headers: HTTPHeaders, traceCount: Int, spanCount: Int) {
        self.path = path
        self.bytes = bytes
        self.headers = headers
        self.traceCount = traceCount
        self.spanCount = spanCount
    }
}

/// What became of one send.
public enum SendOutcome: Equatable, Sendable {
    /// The agent answered (any status; the writer decides what it means).
    case responded(status: Int, micros: UInt64, body: [UInt8])
    /// Cancelled mid-send (by the operator, a fork, shutdown, close…).
    case cancelled(CancelReason, micros: UInt64)
    /// No usable answer.
    case failed(TransportError, micros: UInt64)
    /// Not sent: a fork is quiescing this exporter. Keep the payload.
    case deferred
}

/// Sends payloads to the agent, one at a time under the participant's send
/// lock, each cancellable. Plugs into the fork participant with its policy
/// (`drain`, `cancel`, `drain:T`).
public final class Transport: @unchecked Sendable {
    public let endpoint: AgentEndpoint
    public let participant: ForkParticipant
    public let id: UInt64
    /// Guarded by the participant's send lock.
    private var connection: AgentConnection
    private let closed: UnsafeMutablePointer<UInt64>

    /// Transport ids, unique in the process. A heap cell: atomics need a
    /// stable address, which `&` on a static variable does not promise.
    nonisolated(unsafe) private static let lastID: UnsafeMutablePointer<UInt64> = {
        let cell = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        cell.initialize(to: 0)
        return cell
    }()
    private let holder: UnsafeMutablePointer<UInt64>

    /// The owner's own reset in a forked child (after the connection is
    /// forgotten), e.g. the writer dropping the parent's buffer. Set once,
    /// before the process forks.
    public var afterChildReset: (() -> Void)?

    /// The tid of the thread holding the send lock, or 0.
    public var sendLockHolder: UInt64 { fks_load_relaxed_u64(holder) }

    public init(
        endpoint: AgentEndpoint, policy: SendPolicy, runtime: WorkerRuntime? = nil,
        timeouts: Timeouts = Timeouts(), registry: AtForkRegistry = .shared
    ) throws(SystemError) {
        self.endpoint = endpoint
        connection = AgentConnection(endpoint: endpoint, timeouts: timeouts)
        participant = try ForkParticipant(name: "transport \(endpoint)", policy: policy, runtime: runtime, registry: registry)
        closed = .allocate(capacity: 1)
        closed.initialize(to: 0)
        holder = .allocate(capacity: 1)
        holder.initialize(to: 0)
        id = fks_fetch_add_u64(Transport.lastID, 1) + 1
        // The inherited socket is shared with the parent's: the child must
        // never write to it. Closing the child's copy leaves the parent's.
        participant.resetInChild = { [unowned self] in
            self.connection.close()
            self.afterChildReset?()
        }
        Telemetry.publish(.transportOpen, id, Telemetry.intern(endpoint.description), policy.eventPolicy.rawValue)
    }

    deinit {
        close()
        closed.deallocate()
        holder.deallocate()
    }

    public var isClosed: Bool { fks_load_acquire_u64(closed) != 0 }

    /// Sends one payload. Publishes `send.start`, then one of
    /// `send.complete` / `send.cancel` / `send.fail`.
    public func send(_ payload: EncodedPayload, attempt: Int = 1) -> SendOutcome {
        participant.recoverFromUnhookedFork()
        if isClosed { return .failed(.closed, micros: 0) }
        guard participant.acquireSendPermit() else { return .deferred }
        fks_store_relaxed_u64(holder, UInt64(UInt32(bitPattern: fks_cached_tid())))
        defer {
            fks_store_relaxed_u64(holder, 0)
            participant.releaseSendPermit()
        }
        if isClosed { return .failed(.closed, micros: 0) }

        let generation = participant.runtime?.generation ?? 0
        let cancellation = participant.cancellation
        let token = cancellation.begin()
        let started = Clock.monotonicNanoseconds()
        Telemetry.publish(.sendStart, generation: generation, token.sequence, UInt64(payload.spanCount), UInt64(payload.bytes.count), UInt64(attempt))
        var headers = payload.headers
        headers.set(name: "Host", value: endpoint.host)
        let request = HTTPRequest(method: "PUT", target: payload.path, headers: headers, body: payload.bytes)
        let result = connection.exchange(request, token: token)
        let reason = cancellation.end(token)
        let micros = (Clock.monotonicNanoseconds() - started) / 1000
        let spans = UInt64(payload.spanCount)
        switch result {
        case .success(let response):
            Telemetry.publish(.sendComplete, generation: generation, token.sequence, UInt64(response.head.status), micros, spans)
            return .responded(status: response.head.status, micros: micros, body: response.body)
        case .failure(.cancelled(let why)):
            let why = reason ?? why
            Telemetry.publish(.sendCancel, generation: generation, token.sequence, why.rawValue, micros, spans)
            return .cancelled(why, micros: micros)
        case .failure(let error):
            let errno: UInt64 = if case .system(let system) = error { UInt64(system.errno.rawValue) } else { 0 }
            Telemetry.publish(.sendFail, generation: generation, token.sequence, Telemetry.intern("\(error)"), micros, errno)
            return .failed(error, micros: micros)
        }
    }

    /// Cancels the send in flight, if any.
    @discardableResult
    public func cancelInFlight(reason: CancelReason) -> Bool {
        participant.cancellation.cancelCurrent(reason: reason)
    }

    /// Deregisters the fork hooks, waits for a send in flight, closes the
    /// connection. Idempotent; a send after close fails with `.closed`.
    public func close() {
        var open: UInt64 = 0
        guard fks_cas_u64(closed, &open, 1) else { return }
        let started = Clock.monotonicNanoseconds()
        participant.close()
        participant.sendLock.lock()  // waits for an in-flight send
        connection.close()
        participant.sendLock.unlock()
        Telemetry.publish(.transportClose, id, microsSince(started))
    }
}

@inline(__always)
func microsSince(_ start: UInt64) -> UInt64 { (Clock.monotonicNanoseconds() &- start) / 1000 }
