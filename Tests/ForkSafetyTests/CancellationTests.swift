import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import TestSupport
import XCTest

// The state the SIGUSR1 handler touches: set before the handler is
// installed, so the handler never runs a lazy initialiser.
nonisolated(unsafe) private var handlerCancellation: UnsafeMutablePointer<fks_cancellation>? = nil
nonisolated(unsafe) private var handlerReason: UInt64 = 0

/// A signal handler does no Swift allocation or reference counting: it
/// hands the C state to the C cancel, which is async-signal-safe.
private func cancelCurrentSend(_ signal: CInt) {
    guard let state = handlerCancellation else { return }
    _ = fks_cancellation_cancel_current(state, handlerReason)
}

/// Does nothing: its delivery is what matters (it interrupts a thread
/// at an arbitrary instruction).
private func interruptOnly(_ signal: CInt) {}

/// Cancellation without fd races. No fork is needed here, so these run in
/// the test process: a sender thread blocks in `CancellationToken.wait` on
/// one end of a socketpair nobody writes; something else cancels it.
final class CancellationTests: XCTestCase {
    private struct WaitResult {
        var outcome: CancellationToken.WaitOutcome?
        var reason: CancelReason?
        var tid: pid_t = 0
        var returnedAt: UInt64 = 0
        var error: String?
    }

    private var silent: (Socket, Socket)!

    override func setUpWithError() throws {
        silent = try Socket.pair()
    }

    override func tearDownWithError() throws {
        try silent.0.fileDescriptor.close()
        try silent.1.fileDescriptor.close()
        handlerCancellation = nil
        try Signals.restoreDefault(SIGUSR1)
    }

    /// Starts a sender thread that begins a send and waits on the silent
    /// socket for at most `seconds`; returns once it sleeps in poll.
    private func startBlockedSender(
        _ source: CancellationSource, seconds: UInt64 = 5
    ) throws -> (TestThread, Shared<WaitResult>, FileDescriptor) {
        let result = Shared(WaitResult())
        let done = try FileDescriptor.pipe()
        let socket = silent.0.fileDescriptor
        let started = try FileDescriptor.pipe()
        let thread = TestThread(name: "fks-sender") {
            let token = source.begin()
            result.update { $0.tid = fks_gettid() }
            try? started.write.writeAll("s")
            do {
                let outcome = try token.wait(for: socket, events: Int16(POLLIN), before: .after(milliseconds: seconds * 1000))
                let returnedAt = Clock.monotonicNanoseconds()
                let reason = source.end(token)
                result.update {
                    $0.outcome = outcome
                    $0.returnedAt = returnedAt
                    $0.reason = reason
                }
            } catch {
                result.update { $0.error = "\(error)" }
                source.end(token)
            }
            try? done.write.writeAll("d")
        }
        XCTAssertNotNil(try readByte(started.read, before: .after(milliseconds: 5000)), "the sender began")
        try started.read.close()
        try started.write.close()
        XCTAssertTrue(waitUntilBlockedInPoll(tid: result.get().tid, before: .after(milliseconds: 5000)), "the sender sleeps in poll")
        return (thread, result, done.read)
    }

    private func finish(_ thread: TestThread, _ done: FileDescriptor, within milliseconds: UInt64 = 6000) throws {
        XCTAssertNotNil(try readByte(done, before: .after(milliseconds: milliseconds)), "the sender returned")
        thread.join()
        try done.close()
    }

    func testCancelFromAnotherThreadWakesASenderBlockedOnASilentSocket() throws {
        let source = try CancellationSource()
        let (thread, result, done) = try startBlockedSender(source)
        let sequence = try XCTUnwrap(source.runningSend)
        let cancelledAt = Clock.monotonicNanoseconds()
        XCTAssertTrue(source.cancel(sequence: sequence, reason: .operatorRequest))
        try finish(thread, done, within: 1000)
        let outcome = result.get()
        XCTAssertNil(outcome.error)
        XCTAssertEqual(outcome.outcome, .cancelled)
        XCTAssertEqual(outcome.reason, .operatorRequest, "the reason reaches the send's end")
        XCTAssertLessThan(outcome.returnedAt - cancelledAt, 500_000_000, "woken, not timed out")
        XCTAssertNil(source.runningSend)
        XCTAssertEqual(source.cancellations, 1)
    }

    func testCancelFromASignalHandlerOnAnotherThreadWakesTheBlockedSender() throws {
        let source = try CancellationSource()
        handlerCancellation = source.signalSafeState
        handlerReason = CancelReason.shutdown.rawValue
        try Signals.install(cancelCurrentSend, for: SIGUSR1)
        let (thread, result, done) = try startBlockedSender(source)
        // raise() returns after the handler ran here, on this thread.
        try Signals.raise(SIGUSR1)
        try finish(thread, done, within: 1000)
        XCTAssertEqual(result.get().outcome, .cancelled)
        XCTAssertEqual(result.get().reason, .shutdown)
    }

    func testCancelFromASignalHandlerOnTheBlockedThreadWakesIt() throws {
        let source = try CancellationSource()
        handlerCancellation = source.signalSafeState
        handlerReason = CancelReason.operatorRequest.rawValue
        try Signals.install(cancelCurrentSend, for: SIGUSR1)
        let (thread, result, done) = try startBlockedSender(source)
        // The handler interrupts the sender's own poll (EINTR, retried: the
        // eventfd the handler wrote is then readable).
        XCTAssertEqual(pthread_kill(thread.thread, SIGUSR1), 0)
        try finish(thread, done, within: 1000)
        XCTAssertEqual(result.get().outcome, .cancelled)
        XCTAssertEqual(result.get().reason, .operatorRequest)
    }

    func testCancelAimedAtAFinishedSendDoesNotCancelTheNextSend() throws {
        let source = try CancellationSource()
        let socket = silent.0.fileDescriptor
        // The first send is cancelled (its eventfd wake-up is written), then ends.
        let first = source.begin()
        XCTAssertTrue(first.cancel(reason: .operatorRequest))
        XCTAssertEqual(source.end(first), .operatorRequest)
        // A send that finished normally, too.
        let second = source.begin()
        XCTAssertNil(source.end(second))

        let next = source.begin()
        XCTAssertFalse(first.cancel(reason: .shutdown), "aimed at a finished send: matches nothing")
        XCTAssertFalse(second.cancel(reason: .shutdown))
        XCTAssertFalse(source.cancel(sequence: first.sequence, reason: .shutdown))
        XCTAssertFalse(next.isCancelled)
        XCTAssertNil(next.cancelReason)
        XCTAssertEqual(try next.wait(for: socket, events: Int16(POLLIN), before: .after(milliseconds: 30)), .timedOut,
                       "no stale wake-up from the first send's cancel")
        XCTAssertNil(source.end(next), "the next send was not cancelled")
        XCTAssertEqual(source.cancellations, 1)
        XCTAssertFalse(source.cancelCurrent(reason: .shutdown), "nothing running: nothing to cancel")
    }

    func testCancelRequestsArePublishedWithWhetherTheyMatched() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        Telemetry.install(ring.writer)
        defer {
            Telemetry.install(nil)
            ring.unmap()
        }
        let source = try CancellationSource()
        let token = source.begin()
        token.cancel(reason: .fork)
        source.end(token)
        token.cancel(reason: .operatorRequest)
        let requests = try RingReader(path: scratch.ringPath).readAll().0.filter { $0.kind == .cancelRequested }
        XCTAssertEqual(requests.map(\.a0), [token.sequence, token.sequence])
        XCTAssertEqual(requests.map(\.a1), [CancelReason.fork.rawValue, CancelReason.operatorRequest.rawValue])
        XCTAssertEqual(requests.map(\.a2), [1, 0], "matched, then aimed at a finished send")
    }

    /// The reason is part of what a cancelled send sees: a sender that
    /// notices the cancellation at once (it checks between two writes,
    /// without waiting for the eventfd) must read this send's reason, never
    /// the previous one's — even when the cancelling thread is interrupted
    /// (preempted, or running a signal handler) in the middle of its cancel.
    func testReasonIsVisibleTogetherWithTheCancellation() throws {
        let source = try CancellationSource()
        let rounds = 100_000
        let sequences = Shared<[UInt64]>([])
        let go = try FileDescriptor.pipe()
        let canceller = TestThread(name: "fks-canceller") {
            var round = 0
            while round < rounds {
                guard let sequence = source.runningSend else { continue }
                // Alternate reasons, so a stale one is seen as the wrong one.
                source.cancel(sequence: sequence, reason: sequence % 2 == 0 ? .shutdown : .operatorRequest)
                round += 1
                // Wait for the sender to start the next send.
                while source.runningSend == sequence {}
            }
            try? go.write.writeAll("d")
        }
        // Interrupt the canceller at arbitrary instructions, over and over.
        try Signals.install(interruptOnly, for: SIGUSR2)
        defer { try? Signals.restoreDefault(SIGUSR2) }
        let stop = Shared(false)
        let interrupter = TestThread(name: "fks-interrupt") {
            while !stop.get() {
                pthread_kill(canceller.thread, SIGUSR2)
                sched_yield()
            }
        }
        var wrong = 0
        for _ in 0..<rounds {
            let token = source.begin()
            let deadline = Deadline.after(milliseconds: 5000)
            while !token.isCancelled && !deadline.hasPassed {}
            let seen = token.cancelReason
            let ended = source.end(token)
            let expected: CancelReason = token.sequence % 2 == 0 ? .shutdown : .operatorRequest
            if seen != expected || ended != expected {
                wrong += 1
                sequences.update { $0.append(token.sequence) }
            }
        }
        XCTAssertNotNil(try readByte(go.read, before: .after(milliseconds: 5000)))
        stop.set(true)
        interrupter.join()
        canceller.join()
        XCTAssertEqual(wrong, 0, "sends that saw another send's reason: \(sequences.get().prefix(10))")
    }
}
