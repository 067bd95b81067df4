import CPosix
import EventRing
import Glibc
import Posix

/// What a fork does with a send in flight.
public enum SendPolicy: Equatable, Sendable, CustomStringConvertible {
    /// Wait for the send to finish (the fork waits as long as the agent does).
    case drain
    /// Cancel it at once; the payload is re-queued and sent later.
    case cancel
    /// Wait up to the given time, then cancel.
    case drainThenCancel(milliseconds: UInt64)

    public var eventPolicy: ForkPolicy {
        switch self {
        case .drain: .drain
        case .cancel: .cancel
        case .drainThenCancel: .drainThenCancel
        }
    }

    public var description: String {
        switch self {
        case .drain: "drain"
        case .cancel: "cancel"
        case .drainThenCancel(let ms): "drain:\(ms)ms"
        }
    }

    /// Parses `drain`, `cancel` or `drain:T` (T in ms, or with an `ms`/`s` suffix).
    public init?(parsing text: String) {
        switch text {
        case "drain": self = .drain
        case "cancel": self = .cancel
        default:
            guard text.hasPrefix("drain:") else { return nil }
            var value = Substring(text.dropFirst(6))
            var scale: UInt64 = 1
            if value.hasSuffix("ms") { value = value.dropLast(2) } else if value.hasSuffix("s") { value = value.dropLast(); scale = 1000 }
            guard let number = UInt64(value) else { return nil }
            self = .drainThenCancel(milliseconds: number * scale)
        }
    }
}

/// The one object an exporter registers with the at-fork registry. Its
/// stages keep the order written in DESIGN.md:
///
/// `before`: (1) set `quiescing`, so no new send starts (a sender checks it
/// before it takes the send lock, and again after); (2) by policy, cancel
/// the in-flight send or wait for it (`drain:T` waits up to T, then
/// cancels); (3) join the workers; (4) hold the send lock across fork().
///
/// `parent`: release the send lock, clear `quiescing`, restart the workers
/// (their threads start on first use, or at once if work waits).
///
/// `child`: never join or unlock what was inherited: re-initialise the
/// locks, set the eventfd shared with the parent aside (the first send
/// here takes a fresh one), and rebuild the runtime at
/// generation + 1.
///
/// A raw fork() that ran none of this is detected on first use
/// (`recoverFromUnhookedFork()`, called by the exporter at each entry
/// point): the same child work, published as `forkDetectedWithoutHooks`.
public final class ForkParticipant: @unchecked Sendable {
    public let name: String
    public let runtime: WorkerRuntime?
    public let cancellation: CancellationSource
    /// Held by a sender for the whole send, and by `before` across fork().
    public let sendLock = Lock()
    public var policy: SendPolicy {
        get { policyLock.withLock { _policy } }
        set { policyLock.withLock { _policy = newValue } }
    }

    /// The owner's own child work (e.g. forget an inherited connection),
    /// run in the child — after a hooked or a detected fork — once the
    /// locks are fresh and before the runtime restarts. Set before forking.
    public var resetInChild: (() -> Void)? {
        get { policyLock.withLock { _resetInChild } }
        set { policyLock.withLock { _resetInChild = newValue } }
    }
    private var _resetInChild: (() -> Void)?

    private let registry: AtForkRegistry
    /// Sees the forks this participant has not handled. A hot path may ask
    /// it (`hasUnseenFork`, no reference to the participant) before calling
    /// `recoverFromUnhookedFork`: the participant is held weakly by its
    /// hooks, so each retain of it takes the side table's slow path.
    public let observer = ForkObserver()
    private let quiescing: UnsafeMutablePointer<UInt64>
    private let policyLock = Lock()
    private var _policy: SendPolicy
    private var handles: [HookHandle] = []
    private var pidAtLastCheck: pid_t

    public init(name: String, policy: SendPolicy, runtime: WorkerRuntime?, registry: AtForkRegistry = .shared) throws(SystemError) {
        self.name = name
        self.runtime = runtime
        self.registry = registry
        _policy = policy
        cancellation = try CancellationSource()
        quiescing = .allocate(capacity: 1)
        quiescing.initialize(to: 0)
        pidAtLastCheck = getpid()
        // Hooks reach the participant weakly: the registry must not keep a
        // closed exporter alive (dd-trace-rb's finalizer lesson). Through an
        // immutable holder rather than a `[weak self]` capture, which is a
        // mutable box with a dynamic exclusivity check on each call — code
        // a forked child would otherwise page in during its `child` stage.
        let target = WeakParticipant(self)
        handles = registry.register([
            (.before, { try target.participant?.before() }),
            (.parent, { target.participant?.parent() }),
            (.child, { target.participant?.child() }),
        ], name: name)
    }

    deinit {
        close()
        quiescing.deallocate()
    }

    /// Deregisters the hooks. Idempotent.
    public func close() {
        let mine = policyLock.withLock { () -> [HookHandle] in
            let all = handles
            handles = []
            return all
        }
        for handle in mine { registry.remove(handle) }
    }

    public var isRegistered: Bool { policyLock.withLock { !handles.isEmpty } }
    public var isQuiescing: Bool { fks_load_acquire_u64(quiescing) != 0 }

    // MARK: senders

    /// Takes the send lock unless a fork is quiescing this exporter; false
    /// means "do not send now" (keep the payload queued).
    public func acquireSendPermit() -> Bool {
        if isQuiescing { return false }
        sendLock.lock()
        // A fork may have begun while we waited for the lock.
        if isQuiescing {
            sendLock.unlock()
            return false
        }
        return true
    }

    public func releaseSendPermit() { sendLock.unlock() }

    /// Whether `recoverFromUnhookedFork` acts (the demo can switch it off
    /// to show the second seed's failure in full). Set before forking.
    public var detectsUnhookedForks = true

    /// Detects a fork() that bypassed the hooks (one load when there was
    /// none) and rebuilds this process's state. Call at every entry point.
    @discardableResult
    public func recoverFromUnhookedFork() -> Bool {
        guard detectsUnhookedForks, observer.claimUnseenFork() else { return false }
        let previous = pidAtLastCheck
        pidAtLastCheck = getpid()
        // Not `runtime.generation`: its lock may have been copied held.
        Telemetry.publish(.forkDetectedWithoutHooks, generation: runtime?.generationBeforeRebuild ?? 0, UInt64(pid: previous), fks_fork_count())
        rebuildInChild(reason: "fork detected without hooks")
        return true
    }

    // MARK: stages

    func before() throws {
        fks_store_release_u64(quiescing, 1)
        let generation = runtime?.generation ?? 0
        switch policy {
        case .cancel:
            // And a send that begins from now on: its sender may hold the
            // permit already (it checked `quiescing` just before we set it).
            cancellation.cancelCurrentAndNew(reason: .fork)
            _ = cancellation.waitUntilIdle(before: .never)
        case .drain:
            if let send = cancellation.runningSend {
                let start = Clock.monotonicNanoseconds()
                Telemetry.publish(.drainWait, generation: generation, send, 0, Outcome.ok.rawValue, 0)
                _ = cancellation.waitUntilIdle(before: .never)
                Telemetry.publish(.drainWait, generation: generation, send, 0, Outcome.ok.rawValue, microsSince(start))
            }
        case .drainThenCancel(let milliseconds):
            let start = Clock.monotonicNanoseconds()
            let deadline = Deadline.after(milliseconds: milliseconds)
            if let send = cancellation.runningSend {
                if cancellation.waitUntilIdle(before: deadline) {
                    Telemetry.publish(.drainWait, generation: generation, send, milliseconds, Outcome.ok.rawValue, microsSince(start))
                } else {
                    Telemetry.publish(.drainWait, generation: generation, send, milliseconds, Outcome.timedOut.rawValue, microsSince(start))
                    cancellation.cancel(sequence: send, reason: .drainTimeout)
                    _ = cancellation.waitUntilIdle(before: .never)
                }
            } else if sendLock.lock(before: deadline) {
                sendLock.unlock()
            } else {
                // A sender holds the permit but had not begun: it checked
                // `quiescing` just before we set it. Its send gets the same
                // time, then is cancelled like a running one.
                Telemetry.publish(.drainWait, generation: generation, cancellation.runningSend ?? 0, milliseconds, Outcome.timedOut.rawValue, microsSince(start))
                cancellation.cancelCurrentAndNew(reason: .drainTimeout)
                _ = cancellation.waitUntilIdle(before: .never)
            }
        }
        runtime?.quiesce()
        sendLock.lock()
    }

    func parent() {
        cancellation.stopCancellingNewSends()
        sendLock.unlock()
        fks_store_release_u64(quiescing, 0)
        runtime?.resume()
    }

    func child() {
        observer.acknowledge()
        pidAtLastCheck = getpid()
        rebuildInChild(reason: "fork child hook")
    }

    private func rebuildInChild(reason: String) {
        sendLock.reinitializeInChild()
        policyLock.reinitializeInChild()
        cancellation.resetInChild()
        fks_store_release_u64(quiescing, 0)
        resetInChild?()
        runtime?.rebuildInChild(reason: reason)
    }
}

private final class WeakParticipant: Sendable {
    weak let participant: ForkParticipant?
    init(_ participant: ForkParticipant) { self.participant = participant }
}
