import CPosix
import EventRing
import Glibc
import Posix

/// Cancellation without fd races: one per transport, created once.
///
/// Each send gets a sequence number. `cancel` compare-and-swaps *that*
/// send from running to cancelled and writes the eventfd the sender polls
/// beside its socket. A cancel aimed at a send that already finished
/// matches nothing, so it can never cancel the next one. The state lives in
/// a C `_Atomic` word (CPosix `fks_cancellation`), so a signal handler can
/// cancel through `signalSafeState` without Swift allocation or reference
/// counting.
public final class CancellationSource: @unchecked Sendable {
    /// For signal handlers: pass to `fks_cancellation_cancel_current`.
    public let signalSafeState: UnsafeMutablePointer<fks_cancellation>
    private let lock = Lock()
    private let idle = Condition()
    private var nextSequence: UInt64 = 1
    private var running: UInt64 = 0
    /// Set while a fork's `before` cancels: a send that begins meanwhile is
    /// cancelled at once (its sender took the send permit just before the
    /// fork set `quiescing`, and begins after `before` cancelled).
    private var cancelOnBegin: CancelReason? = nil
    /// After a fork, the eventfd this process inherited (shared with the
    /// parent) until the first send here replaces it; -1 otherwise.
    private var inheritedEventFD: Int32 = -1

    public init() throws(SystemError) {
        signalSafeState = .allocate(capacity: 1)
        signalSafeState.initialize(to: fks_cancellation())
        signalSafeState.pointee.eventfd = try EventFD.create().rawValue
    }

    deinit {
        if signalSafeState.pointee.eventfd >= 0 { _ = Glibc.close(signalSafeState.pointee.eventfd) }
        if inheritedEventFD >= 0 { _ = Glibc.close(inheritedEventFD) }
        signalSafeState.deallocate()
    }

    /// The descriptor a sender polls for readability beside its socket. A
    /// wake-up is a hint: after one, check `token.isCancelled`.
    public var wakeDescriptor: FileDescriptor { FileDescriptor(rawValue: signalSafeState.pointee.eventfd) }

    /// Starts a send. Sends through one source are serialised by the
    /// caller's send lock; a second concurrent begin is a programming error.
    public func begin() -> CancellationToken {
        let (sequence, cancelled): (UInt64, CancelReason?) = lock.withLock {
            if signalSafeState.pointee.eventfd < 0 { replaceInheritedEventFD() }
            let sequence = nextSequence
            nextSequence += 1
            running = sequence
            // Under the lock: `cancelCurrentAndNew` either sees this send
            // running, or this begin sees its reason.
            let began = fks_cancellation_begin(signalSafeState, sequence)
            precondition(began, "two sends at once through one CancellationSource")
            return (sequence, cancelOnBegin)
        }
        if let cancelled { cancel(sequence: sequence, reason: cancelled) }
        return CancellationToken(sequence: sequence, source: self)
    }

    /// Ends a send; returns why it was cancelled, or nil if it was not.
    @discardableResult
    public func end(_ token: CancellationToken) -> CancelReason? {
        let cancelled = fks_cancellation_end(signalSafeState, token.sequence)
        lock.withLock {
            if running == token.sequence { running = 0 }
            idle.broadcast()
        }
        guard cancelled else { return nil }
        return CancelReason(rawValue: fks_load_acquire_u64(reasonAddress)) ?? .operatorRequest
    }

    /// Cancels send `sequence` if it is the one running; async-signal-safe.
    @discardableResult
    public func cancel(sequence: UInt64, reason: CancelReason) -> Bool {
        let done = fks_cancellation_cancel(signalSafeState, sequence, reason.rawValue)
        Telemetry.publish(.cancelRequested, sequence, reason.rawValue, done ? 1 : 0)
        return done
    }

    /// Cancels whichever send is running; false when none is.
    @discardableResult
    public func cancelCurrent(reason: CancelReason) -> Bool {
        let sequence = fks_cancellation_running(signalSafeState)
        guard sequence != 0 else { return false }
        return cancel(sequence: sequence, reason: reason)
    }

    /// Cancels the running send and every send that begins until
    /// `stopCancellingNewSends()`: a fork's `before` uses it, so a send
    /// that begins while the fork waits cannot make it wait for a whole send.
    @discardableResult
    func cancelCurrentAndNew(reason: CancelReason) -> Bool {
        lock.withLock { cancelOnBegin = reason }
        return cancelCurrent(reason: reason)
    }

    func stopCancellingNewSends() { lock.withLock { cancelOnBegin = nil } }

    /// The running send's sequence, or nil.
    public var runningSend: UInt64? {
        let sequence = fks_cancellation_running(signalSafeState)
        return sequence == 0 ? nil : sequence
    }

    /// Successful cancellations so far.
    public var cancellations: UInt64 { fks_load_relaxed_u64(cancelsAddress) }

    /// Waits until no send is running, or `deadline`; true when idle.
    public func waitUntilIdle(before deadline: Deadline) -> Bool {
        lock.withLock {
            while running != 0 {
                if !idle.wait(lock, until: deadline) && deadline.hasPassed { return running == 0 }
            }
            return true
        }
    }

    /// In a forked child: the parent's send (if any) does not exist here,
    /// and the inherited eventfd is shared with the parent, so a cancel in
    /// one process would wake (or a drain steal the wake of) a sender in
    /// the other. It is set aside at once — from here on nothing reads or
    /// writes it — and replaced by a fresh one at the first send in this
    /// process, not now: a child that never sends (one that execs or exits
    /// at once) makes no eventfd, and the fork's child stage stays short.
    /// Until then no send runs, so a cancel (even from a signal handler)
    /// finds nothing to wake.
    public func resetInChild() {
        lock.reinitializeInChild()
        idle.reinitializeInChild()
        fks_store_release_u64(signalSafeState, 0)
        if signalSafeState.pointee.eventfd >= 0 {
            if inheritedEventFD >= 0 { _ = Glibc.close(inheritedEventFD) }
            inheritedEventFD = signalSafeState.pointee.eventfd
            signalSafeState.pointee.eventfd = -1
        }
        running = 0
        cancelOnBegin = nil
    }

    /// The first send after a fork: close the inherited eventfd, take a
    /// fresh one. Without one (e.g. EMFILE) the send still runs; a cancel
    /// then takes effect when its wait next wakes (poll ignores fd -1).
    /// Called with `lock` held, before the send is marked running.
    private func replaceInheritedEventFD() {
        if inheritedEventFD >= 0 {
            _ = Glibc.close(inheritedEventFD)
            inheritedEventFD = -1
        }
        do {
            signalSafeState.pointee.eventfd = try EventFD.create().rawValue
        } catch {
            Telemetry.publish(.sendFail, 0, Telemetry.intern("no cancellation eventfd after fork: \(error); cancels wait for the next wake"), 0, UInt64(error.errno.rawValue))
        }
    }

    private var reasonAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(signalSafeState) + 8 }
    private var cancelsAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(signalSafeState) + 16 }
}

/// One send's handle on its cancellation.
public struct CancellationToken: Sendable {
    public let sequence: UInt64
    let source: CancellationSource

    public var isCancelled: Bool { fks_cancellation_is_cancelled(source.signalSafeState, sequence) }

    /// Why this send was cancelled, or nil while it is not.
    public var cancelReason: CancelReason? {
        guard isCancelled else { return nil }
        return CancelReason(rawValue: fks_load_acquire_u64(UnsafeMutableRawPointer(source.signalSafeState) + 8)) ?? .operatorRequest
    }

    /// Cancels this send (a no-op once it has finished).
    @discardableResult
    public func cancel(reason: CancelReason) -> Bool { source.cancel(sequence: sequence, reason: reason) }

    /// Waits until the socket `fd` is ready for `events`, the token is
    /// cancelled, or `deadline` passes.
    public func wait(for fd: FileDescriptor, events: Int16, before deadline: Deadline) throws(SystemError) -> WaitOutcome {
        while true {
            if isCancelled { return .cancelled }
            var fds = [pollfd(fd: fd.rawValue, events: events, revents: 0),
                       pollfd(fd: source.wakeDescriptor.rawValue, events: Int16(POLLIN), revents: 0)]
            let ready = try poll(&fds, deadline: deadline)
            if isCancelled { return .cancelled }
            if ready == 0 { return .timedOut }
            if fds[0].revents != 0 { return .ready(fds[0].revents) }
            // A stale wake-up meant for an earlier send: consume it, look again.
            _ = try? EventFD(rawValue: source.wakeDescriptor.rawValue).drain()
        }
    }

    public enum WaitOutcome: Equatable, Sendable {
        case ready(Int16)
        case cancelled
        case timedOut
    }
}
