@testable import Dashboard
import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The model folds real events: published by real forked processes
/// (`dashboard-fixture-host`) or by this process into a scratch ring, then
/// read back through `RingReader` with its validation and accounting.
final class DashboardModelTests: XCTestCase {
    // MARK: scenarios with real forked processes

    func testForkDuringSendCancelsTheSendRequeuesItsSpansAndLinksTheChild() throws {
        let run = try FixtureRun("fork-during-send")
        let model = try run.fold()
        let master = try model.require(try run.key("master"))
        let worker = try model.require(try run.key("worker"))

        // The send in flight when the fork began was cancelled by the fork …
        XCTAssertEqual(master.timeline.sends.map(\.id), [1, 2])
        let cancelled = master.timeline.sends[0]
        XCTAssertEqual(cancelled.outcome, .cancelled(.fork))
        XCTAssertEqual(cancelled.start, model.at(1000))
        XCTAssertEqual(cancelled.end, model.at(1101))
        XCTAssertEqual(cancelled.cancelRequestedAt, model.at(1100.1))
        // … its spans re-queued, and sent after the fork (attempt 2).
        XCTAssertEqual(master.gauge.requeuedSpans, 12)
        XCTAssertEqual(master.timeline.sends[1].outcome, .completed(status: 200))
        XCTAssertEqual(master.timeline.sends[1].attempt, 2)
        XCTAssertEqual(master.timeline.sends[1].spans, 12)
        XCTAssertNil(master.inFlight)
        XCTAssertEqual([master.sendsOK, master.sendsCancelled, master.sendsFailed], [1, 1, 0])
        XCTAssertEqual(master.policy, .cancel)
        // The quiesce window covers the cancel and ends when fork() returns.
        XCTAssertEqual(master.timeline.windows, [QuiesceWindow(start: model.at(1100), end: model.at(1105))])
        XCTAssertNil(master.timeline.openWindow)
        XCTAssertEqual(master.timeline.marks.filter { $0.kind != .processStart }.map(\.kind), [.forkBefore, .forkParent])
        XCTAssertEqual(master.state, .running)
        XCTAssertEqual(master.role, .master)

        // The child: linked under the master (one arrow), its own incarnation.
        let masterIndex = try XCTUnwrap(model.processIndex(master.key))
        let workerIndex = try XCTUnwrap(model.processIndex(worker.key))
        XCTAssertEqual(worker.parent, masterIndex)
        XCTAssertEqual(master.children, [workerIndex])
        XCTAssertEqual(model.arrows.map { [$0.parent, $0.child] }, [[masterIndex, workerIndex]])
        XCTAssertEqual(worker.role, .worker)
        XCTAssertEqual(worker.name, "worker 0")
        XCTAssertEqual(worker.forkGeneration, 1)
        XCTAssertEqual(worker.runtimeGeneration, 2)
        XCTAssertEqual(worker.timeline.marks.filter { $0.kind != .processStart }.map(\.kind), [.forkChild, .rebuild(generation: 2)])
        XCTAssertEqual(worker.state, .running)
        XCTAssertFalse(worker.placeholder)
        XCTAssertEqual(model.tree().map(\.index), [masterIndex, workerIndex])
        XCTAssertEqual(model.processes.count, 2)
    }

    func testOperatorCancelEndsTheInFlightSendAndItsSpansAreSentLater() throws {
        let run = try FixtureRun("cancel")
        let model = try run.fold()
        let worker = try model.require(try run.key("worker"))
        XCTAssertEqual(worker.timeline.sends.map(\.outcome), [.completed(status: 200), .cancelled(.operatorRequest), .completed(status: 200)])
        let cancelled = worker.timeline.sends[1]
        XCTAssertEqual(cancelled.cancelRequestedAt, model.at(2500))
        XCTAssertEqual(cancelled.end! - cancelled.start, 2_002_000_000)
        XCTAssertEqual(worker.cancelRequests, 1)
        XCTAssertEqual(worker.gauge.requeuedSpans, 8)
        XCTAssertEqual(worker.timeline.sends[2].attempt, 2)
        XCTAssertEqual(worker.lastSend?.id, 3)
        XCTAssertEqual(worker.gauge.requeued, 8)
        XCTAssertEqual(worker.gauge.cancelled, 1)
        XCTAssertNil(worker.inFlight)
    }

    func testAReusedPidIsASecondProcessWithItsOwnHistory() throws {
        let run = try FixtureRun("pid-reuse")
        let model = try run.fold()
        let first = try run.key("first"), second = try run.key("second")
        XCTAssertEqual(first.pid, second.pid, "the fixture host reused no pid: \(run.notes)")
        XCTAssertNotEqual(first.start, second.start)
        let incarnations = model.processes.filter { $0.key.pid == first.pid }
        XCTAssertEqual(incarnations.count, 2, "\(incarnations.map(\.key)) (\(run.notes))")
        let old = try model.require(first), new = try model.require(second)
        XCTAssertEqual(old.name, "first incarnation")
        XCTAssertEqual(old.state, .exited(status: 0, signal: 0))
        XCTAssertEqual(old.timeline.sends.count, 1)
        XCTAssertEqual(new.name, "second incarnation")
        XCTAssertFalse(new.state.isEnded)
        XCTAssertEqual(new.timeline.sends.count, 1)
        XCTAssertEqual(new.timeline.sends.first?.start, model.at(60))
        // The pid names the newest incarnation; the key names each.
        XCTAssertEqual(model.processIndex(pid: first.pid), model.processIndex(second))
        if run.notes.contains("reuse real") {
            let master = try XCTUnwrap(model.processIndex(try run.key("master")))
            XCTAssertEqual(old.parent, master)
            XCTAssertEqual(new.parent, master)
        }
    }

    func testAnOverwrittenLaneIsCountedAndItsProcessIsNotDuplicated() throws {
        let run = try FixtureRun("overwrite", ["300"], ring: RingConfiguration(laneCount: 8, slotsPerLane: 64, stringBytes: 4096))
        let model = try run.fold()
        let noisyKey = try run.key("noisy")
        let accounting = try XCTUnwrap(model.accounting)
        XCTAssertTrue(accounting.total.isBalanced)
        // 301 published into 64 slots: the oldest 237 are gone, process.start among them.
        XCTAssertEqual(accounting.total.overwritten, 237)
        let noisy = model.processes.filter { $0.key.pid == noisyKey.pid }
        XCTAssertEqual(noisy.count, 1, "\(noisy.map(\.key))")
        let process = try XCTUnwrap(noisy.first)
        XCTAssertEqual(process.key.start, noisyKey.start, "the lane owner's start time names it")
        XCTAssertFalse(process.sawStart)
        XCTAssertTrue(model.historyLost(process))
        XCTAssertEqual(process.events, 64)
        XCTAssertEqual(process.role, .worker, "the master's worker.spawned said so")
        XCTAssertEqual(process.parent, model.processIndex(try run.key("master")))
        XCTAssertEqual(process.gauge.buffered, 299)
        XCTAssertEqual(UInt64(model.eventCount), accounting.total.ok)
    }

    // MARK: events this process publishes into a scratch ring

    /// A ring this test writes into, and the model folded from it.
    final class ScratchRing {
        let scratch: ScratchSession
        let ring: Ring
        let reader: RingReader
        var model: DashboardModel
        var w: RingWriter { ring.writer }

        init(logCapacity: Int = 100_000) throws {
            scratch = try ScratchSession()
            ring = try scratch.createRing(RingConfiguration(laneCount: 4, slotsPerLane: 256, stringBytes: 4096))
            reader = try RingReader(path: scratch.ringPath)
            model = DashboardModel(origin: RingOrigin(reader.header), logCapacity: logCapacity)
        }

        func at(_ ms: Double) -> UInt64 { reader.header.createdMonotonic + UInt64(ms * 1_000_000) }

        func publish(_ ms: Double, _ kind: EventKind, _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0) {
            XCTAssertNil(w.publish(kind, at: at(ms), generation: 0, a0, a1, a2, a3))
        }

        /// Reads what was published since the last call and folds it.
        @discardableResult
        func fold() throws -> DashboardModel {
            var events: [Event] = []
            let accounting = try reader.readNew(into: &events)
            RingReader.merge(&events)
            model.record(accounting)
            model.fold(events) { self.reader.string(at: $0) }
            return model
        }

        var me: ProcessModel { model.processes[model.processIndex(pid: getpid())!] }
    }

    func testAProcessSeenFirstThroughAnotherEventIsCreatedAndKeyedByItsLaneOwner() throws {
        let r = try ScratchRing()
        r.publish(5, .writerGauge, 1, 2, 3, 0)
        try r.fold()
        XCTAssertEqual(r.model.processes.count, 1)
        XCTAssertEqual(r.me.key, ProcessKey(pid: getpid(), start: ProcessControl.startTime(of: getpid())!))
        XCTAssertFalse(r.me.sawStart)
        XCTAssertEqual(r.me.state, .running)
        XCTAssertEqual(r.me.displayName, "pid \(getpid())")
        r.publish(6, .processStart, 1, ProcessRole.host.rawValue, r.w.intern("test host"), ProcessControl.startTime(of: getpid())!)
        try r.fold()
        XCTAssertEqual(r.model.processes.count, 1, "process.start of the same incarnation adds no process")
        XCTAssertEqual(r.me.name, "test host")
        XCTAssertEqual(r.me.role, .host)
    }

    func testAStartAfterAnExitIsANewIncarnationEvenWithTheSameStartTick() throws {
        // Start times are 10 ms clock ticks: a pid reused at once can repeat one.
        let r = try ScratchRing()
        let ticks = ProcessControl.startTime(of: getpid())!
        r.publish(1, .processStart, 1, ProcessRole.worker.rawValue, r.w.intern("one"), ticks)
        r.publish(2, .processExit, 0, 0)
        r.publish(3, .processStart, 1, ProcessRole.worker.rawValue, r.w.intern("two"), ticks)
        r.publish(4, .sendStart, 1, 1, 1, 1)
        try r.fold()
        XCTAssertEqual(r.model.processes.map(\.name), ["one", "two"])
        XCTAssertEqual(r.model.processes.map(\.state), [.exited(status: 0, signal: 0), .running])
        XCTAssertEqual(r.model.processes[1].timeline.inFlight.count, 1)
        XCTAssertEqual(r.model.processIndex(pid: getpid()), 1)
    }

    func testThreadsDeferredAfterAForkUntilTheFirstThreadStarts() throws {
        let r = try ScratchRing()
        r.publish(1, .threadStart, UInt64(getpid()), r.w.intern("fks-flush0"))
        r.publish(2, .runtimeQuiesce, 1, 1)
        r.publish(3, .threadStop, UInt64(getpid()), r.w.intern("fks-flush0"))
        r.publish(4, .runtimeResume, 1, 0)
        try r.fold()
        XCTAssertEqual(r.me.threads, 0)
        XCTAssertTrue(r.me.threadsDeferred, "resumed with no thread started: they start on first use")
        r.publish(5, .threadStart, UInt64(getpid()), r.w.intern("fks-flush0"))
        try r.fold()
        XCTAssertEqual(r.me.threads, 1)
        XCTAssertFalse(r.me.threadsDeferred)
        r.publish(6, .runtimeQuiesce, 1, 1)
        r.publish(7, .threadStop, UInt64(getpid()), r.w.intern("fks-flush0"))
        r.publish(8, .runtimeResume, 1, 1)
        try r.fold()
        XCTAssertFalse(r.me.threadsDeferred, "work waited: the thread started at resume")
    }

    func testAnOutcomeWhoseStartWasLostIsDrawnFromItsDuration() throws {
        let r = try ScratchRing()
        r.publish(1000, .sendCancel, 7, CancelReason.shutdown.rawValue, 250_000, 4)
        try r.fold()
        let send = try XCTUnwrap(r.me.timeline.sends.first)
        XCTAssertTrue(send.startReconstructed)
        XCTAssertEqual(send.start, r.at(750))
        XCTAssertEqual(send.end, r.at(1000))
        XCTAssertEqual(send.outcome, .cancelled(.shutdown))
    }

    func testExitWithASendInFlightLeavesItUnfinishedAndClosesTheQuiesceWindow() throws {
        let r = try ScratchRing()
        r.publish(1, .processStart, 1, ProcessRole.worker.rawValue, r.w.intern("w"), 0)
        r.publish(10, .sendStart, 1, 5, 100, 1)
        r.publish(20, .forkBeforeStart, 1, ForkPolicy.drain.rawValue)
        r.publish(30, .processExit, 3, 0)
        try r.fold()
        XCTAssertEqual(r.me.state, .exited(status: 3, signal: 0))
        XCTAssertEqual(r.me.timeline.sends.map(\.outcome), [.unfinished])
        XCTAssertNil(r.me.inFlight)
        XCTAssertEqual(r.me.timeline.windows, [QuiesceWindow(start: r.at(20), end: r.at(30))])
        XCTAssertEqual(r.me.endedAt, r.at(30))
        XCTAssertEqual(r.me.timeline.marks.last?.kind, .exit(signaled: false))
    }

    func testAWorkerTheMasterReportsKilledIsExitedBySignal() throws {
        let r = try ScratchRing()
        let child: UInt64 = 999_999
        r.publish(1, .processStart, 1, ProcessRole.master.rawValue, r.w.intern("m"), 0)
        r.publish(2, .workerSpawned, child, 0)
        r.publish(9, .workerExited, child, 0, UInt64(SIGKILL), 0)
        try r.fold()
        let worker = try XCTUnwrap(r.model.processIndex(pid: 999_999).map { r.model.processes[$0] })
        XCTAssertTrue(worker.placeholder)
        XCTAssertEqual(worker.role, .worker)
        XCTAssertEqual(worker.state, .exited(status: 0, signal: SIGKILL))
        XCTAssertEqual(worker.state.label, "SIGKILL")
        XCTAssertEqual(worker.parent, r.model.processIndex(pid: getpid()))
        XCTAssertEqual(r.model.arrows.count, 1)
    }

    func testFailedSendsAndHooksLeaveTheLastError() throws {
        let r = try ScratchRing()
        r.publish(1, .sendStart, 1, 5, 100, 1)
        r.publish(2, .sendFail, 1, r.w.intern("connection refused"), 1000, UInt64(ECONNREFUSED))
        try r.fold()
        XCTAssertEqual(r.me.lastError?.text, "send #1 failed: connection refused")
        XCTAssertEqual(r.me.sendsFailed, 1)
        r.publish(3, .hookRun, ForkStage.before.rawValue, r.w.intern("transport"), Outcome.failed.rawValue, 12)
        r.publish(4, .forkBeforeEnd, Outcome.failed.rawValue, 20, 1)
        r.publish(4.1, .forkFailed, 0, ForkStage.before.rawValue)
        try r.fold()
        XCTAssertEqual(r.me.lastError?.text, "fork failed in before: a hook failed")
        XCTAssertEqual(r.me.hooks.last?.outcome, .failed)
        XCTAssertEqual(r.me.state, .running)
        XCTAssertEqual(r.me.timeline.marks.last?.kind, .forkFailed)
    }

    func testUnknownKindsAreCountedAndKeptInTheLog() throws {
        let r = try ScratchRing()
        XCTAssertNil(r.w.publish(rawKind: 999, at: r.at(1), generation: 0, 1, 2, 3, 4))
        try r.fold()
        XCTAssertEqual(r.model.unknownKinds, 1)
        XCTAssertEqual(r.model.log.count, 1)
        XCTAssertEqual(r.model.log[0].rawKind, 999)
    }

    func testALivenessCheckMarksAProcessThatVanishedWithoutAnExitGone() throws {
        let r = try ScratchRing()
        r.publish(1, .sendStart, 1, 5, 100, 1)
        try r.fold()
        let revision = r.model.revision
        r.model.observeLiveness { _ in nil }
        XCTAssertEqual(r.model.revision, revision, "unknown liveness changes nothing")
        r.model.observeLiveness { _ in false }
        XCTAssertEqual(r.me.state, .gone)
        XCTAssertEqual(r.me.endedAt, r.at(1), "gone at its last sign of life")
        XCTAssertEqual(r.me.timeline.sends.map(\.outcome), [.unfinished])
        XCTAssertNotEqual(r.model.revision, revision)
    }

    func testTheLogKeepsTheNewestEventsAndCountsTheOthers() throws {
        let r = try ScratchRing(logCapacity: 10)
        for n in 0..<25 { r.publish(Double(n), .mark, UInt64(n)) }
        try r.fold()
        XCTAssertEqual(r.model.log.count, 10)
        XCTAssertEqual(r.model.log.dropped, 15)
        XCTAssertEqual(r.model.log.map(\.a0), Array(15..<25))
        XCTAssertEqual(r.model.eventCount, 25)
    }

    func testStringsAreResolvedWhenFoldedAndBadOffsetsAreNamed() throws {
        let r = try ScratchRing()
        let name = r.w.intern("hook one")
        r.publish(1, .hookRun, ForkStage.child.rawValue, name, Outcome.ok.rawValue, 5)
        r.publish(2, .hookRun, ForkStage.child.rawValue, 123_456_789, Outcome.ok.rawValue, 5)
        try r.fold()
        XCTAssertEqual(r.model.string(at: name), "hook one")
        XCTAssertNil(r.model.string(at: 123_456_789))
        XCTAssertEqual(r.me.hooks.map(\.name), ["hook one", "<bad string offset 123456789>"])
    }

    func testFoldingInTwoReadsGivesTheSameModelAsInOne() throws {
        let run = try FixtureRun("fork-during-send")
        let whole = try run.fold()
        let reader = try RingReader(path: run.scratch.ringPath)
        var events: [Event] = []
        let accounting = try reader.readNew(into: &events)
        RingReader.merge(&events)
        var split = DashboardModel(origin: RingOrigin(reader.header))
        split.record(accounting)
        let half = events.count / 2
        split.fold(events[..<half]) { reader.string(at: $0) }
        split.fold(events[half...]) { reader.string(at: $0) }
        XCTAssertEqual(split.processes, whole.processes)
        XCTAssertEqual(split.arrows, whole.arrows)
    }
}
