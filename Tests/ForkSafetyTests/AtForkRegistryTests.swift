import CPosix
import EventRing
@testable import ForkSafety
import Glibc
import Posix
import TestSupport
import XCTest

/// The at-fork registry's order and error semantics. Nothing here forks:
/// `Fork.fork` is given a fork function that records its calls and returns
/// a made-up pid (the parent path) or 0 (the child path).
final class AtForkRegistryTests: XCTestCase {
    /// The order hooks ran in, as "stage name".
    private let log = Shared<[String]>([])
    private let forkCalls = Shared(0)

    private struct Refused: Error, CustomStringConvertible {
        let why: String
        var description: String { why }
    }

    /// Registers `before`/`parent`/`child` for `name` as one group (one
    /// participant), each appending to the log; `failing` stages throw.
    @discardableResult
    private func participant(
        _ name: String, in registry: AtForkRegistry, failing: Set<ForkStage> = [], stages: [ForkStage] = ForkStage.allCases
    ) -> [HookHandle] {
        let log = self.log
        return registry.register(stages.map { stage in
            (stage, {
                log.update { $0.append("\(stage.name) \(name)") }
                if failing.contains(stage) { throw Refused(why: "\(name) refuses \(stage.name)") }
            })
        }, name: name)
    }

    /// A fork function that counts its calls and returns `pid`.
    private func recordingFork(returning pid: pid_t) -> Fork.ForkFunction {
        let calls = forkCalls
        return {
            calls.update { $0 += 1 }
            return pid
        }
    }

    private let madeUpChild: pid_t = 0x7FFF_0001

    func testBeforeRunsNewestFirstThenParentRunsInRegistrationOrder() throws {
        let registry = AtForkRegistry()
        for name in ["A", "B", "C"] { participant(name, in: registry) }
        let outcome = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(outcome, .parent(child: madeUpChild))
        XCTAssertEqual(forkCalls.get(), 1)
        XCTAssertEqual(log.get(), ["before C", "before B", "before A", "parent A", "parent B", "parent C"])
    }

    func testChildRunsInRegistrationOrderAndParentDoesNotRunInTheChild() throws {
        let registry = AtForkRegistry()
        for name in ["A", "B", "C"] { participant(name, in: registry) }
        let generation = Fork.generation
        let outcome = try Fork.fork(registry: registry, using: recordingFork(returning: 0))
        XCTAssertEqual(outcome, .child)
        XCTAssertEqual(log.get(), ["before C", "before B", "before A", "child A", "child B", "child C"])
        XCTAssertEqual(Fork.generation, generation + 1, "the child is one generation further")
    }

    func testHookThatRemovesAndRegistersHooksChangesOnlyTheNextRun() throws {
        let registry = AtForkRegistry()
        let log = self.log
        let a = participant("A", in: registry, stages: [.parent])
        participant("B", in: registry, stages: [.parent])
        let e = Shared<[HookHandle]>([])
        let once = Shared(false)
        registry.register(.parent, name: "C") {
            log.update { $0.append("parent C") }
            guard !once.update({ done in defer { done = true }; return done }) else { return }
            // Mid-run: remove A (already ran) and E (not yet run), add D.
            registry.remove(a[0])
            registry.remove(e.get()[0])
            registry.register(.parent, name: "D") { log.update { $0.append("parent D") } }
        }
        e.set(participant("E", in: registry, stages: [.parent]))

        _ = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(log.get(), ["parent A", "parent B", "parent C", "parent E"], "this run is the list as it was when it started")

        log.set([])
        _ = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(log.get(), ["parent B", "parent C", "parent D"], "the next run has the changes")
    }

    func testBeforeHookRemovingALaterEntryDoesNotChangeThisRun() throws {
        let registry = AtForkRegistry()
        let log = self.log
        let a = participant("A", in: registry, stages: [.before])
        registry.register(.before, name: "B") {
            log.update { $0.append("before B") }
            registry.remove(a[0])  // A runs after B in this run (newest first)
        }
        _ = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(log.get(), ["before B", "before A"])
        log.set([])
        _ = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(log.get(), ["before B"])
    }

    /// A participant locks in `before` and unlocks in `parent`. If another
    /// participant's `before` closes it mid-fork, its `before` still runs
    /// (the run's snapshot), so its `parent` must run in that same fork, or
    /// what it locked stays locked.
    func testParticipantRemovedDuringBeforeStillGetsItsParentInThatFork() throws {
        let registry = AtForkRegistry()
        let log = self.log
        let first = participant("A", in: registry, stages: [.before, .parent])
        registry.register(.before, name: "closer") {
            log.update { $0.append("before closer") }
            for handle in first { registry.remove(handle) }
        }
        _ = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(log.get(), ["before closer", "before A", "parent A"])
        log.set([])
        _ = try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))
        XCTAssertEqual(log.get(), ["before closer"], "removed for the next fork")
    }

    func testRemovingAnUnknownOrAlreadyRemovedHandleIsANoOpReturningFalse() {
        let registry = AtForkRegistry()
        let handles = participant("A", in: registry)
        let kept = participant("B", in: registry)
        XCTAssertEqual(registry.count(), 6)
        XCTAssertTrue(registry.remove(handles[0]))
        XCTAssertFalse(registry.remove(handles[0]), "already removed")
        XCTAssertFalse(registry.remove(HookHandle(id: 0xDEAD, stage: .before, group: 0xDEAD)), "never issued")
        XCTAssertEqual(registry.count(), 5)
        XCTAssertEqual(registry.count(.before), 1)
        XCTAssertTrue(registry.remove(kept[2]))
        XCTAssertEqual(registry.count(.child), 1)
    }

    /// Handles are registry-specific: a handle another registry issued is
    /// "never issued" here, even when that registry numbers its hooks the
    /// same way.
    func testRemovingAnotherRegistrysHandleRemovesNothing() {
        let first = AtForkRegistry(), second = AtForkRegistry()
        let foreign = participant("A", in: first)
        participant("B", in: second)
        for handle in foreign { XCTAssertFalse(second.remove(handle), "\(handle)") }
        XCTAssertEqual(second.count(), 3)
        XCTAssertEqual(first.count(), 3)
    }

    func testBeforeFailureStopsTheRunSkipsTheForkAndRunsParentOnlyForEntriesWhoseBeforeSucceeded() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 4, slotsPerLane: 256, stringBytes: 4096))
        Telemetry.install(ring.writer)
        defer {
            Telemetry.install(nil)
            ring.unmap()
        }
        let registry = AtForkRegistry()
        participant("A", in: registry)
        participant("B", in: registry, failing: [.before])
        participant("C", in: registry)
        participant("D", in: registry)

        XCTAssertThrowsError(try Fork.fork(registry: registry, using: recordingFork(returning: madeUpChild))) { error in
            guard case .hookFailed(let failure) = error as? ForkError else { return XCTFail("\(error)") }
            XCTAssertEqual(failure.stage, .before)
            XCTAssertEqual(failure.name, "B")
            XCTAssertEqual(failure.message, "B refuses before")
            XCTAssertTrue("\(error)".contains("\"B\""), "the error names the hook: \(error)")
        }
        XCTAssertEqual(forkCalls.get(), 0, "the fork is not performed")
        XCTAssertEqual(log.get(), ["before D", "before C", "before B", "parent C", "parent D"],
                       "A's before never ran: A gets no parent; B failed: no parent")

        let events = try RingReader(path: scratch.ringPath).readAll().0
        let reader = try RingReader(path: scratch.ringPath)
        let runs = events.filter { $0.kind == .hookRun }.map { "\(ForkStage(rawValue: $0.a0)!.name) \(reader.string(at: $0.a1) ?? "?") \(Outcome(rawValue: $0.a2)!.name)" }
        XCTAssertEqual(runs, ["before D ok", "before C ok", "before B failed", "parent C ok", "parent D ok"])
        let kinds = events.map(\.kind).filter { $0 != .hookRun && $0 != .hookRegistered }
        XCTAssertEqual(kinds, [.forkBeforeStart, .forkBeforeEnd, .forkFailed])
        let end = try XCTUnwrap(events.first { $0.kind == .forkBeforeEnd })
        XCTAssertEqual(end.a0, Outcome.failed.rawValue)
        XCTAssertEqual(events.first { $0.kind == .forkFailed }?.a1, ForkStage.before.rawValue)
    }

    func testDaemonBeforeFailureAlsoRunsParentOnlyForEntriesWhoseBeforeSucceeded() throws {
        let registry = AtForkRegistry()
        participant("A", in: registry)
        participant("B", in: registry, failing: [.before])
        participant("C", in: registry)
        XCTAssertThrowsError(try Fork.daemon(registry: registry, using: recordingFork(returning: madeUpChild))) { error in
            guard case .hookFailed(let failure) = error as? ForkError else { return XCTFail("\(error)") }
            XCTAssertEqual(failure.name, "B")
        }
        XCTAssertEqual(forkCalls.get(), 0)
        XCTAssertEqual(log.get(), ["before C", "before B", "parent C"])
    }

    func testFailedForkRunsParentForEveryEntryAndThrowsTheErrno() throws {
        let registry = AtForkRegistry()
        for name in ["A", "B"] { participant(name, in: registry) }
        let calls = forkCalls
        XCTAssertThrowsError(try Fork.fork(registry: registry, using: {
            calls.update { $0 += 1 }
            fks_set_errno(EAGAIN)
            return -1
        })) { error in
            XCTAssertEqual(error as? ForkError, .forkFailed(Errno(rawValue: EAGAIN)))
        }
        XCTAssertEqual(forkCalls.get(), 1)
        XCTAssertEqual(log.get(), ["before B", "before A", "parent A", "parent B"])
        XCTAssertTrue(registry.lock.tryLock(), "the registry lock held across fork() was released")
        registry.lock.unlock()
    }

    func testParentAndChildRunEveryEntryAndReportTheFirstFailureAfterAllRan() {
        let registry = AtForkRegistry()
        participant("A", in: registry, stages: [.parent, .child])
        participant("B", in: registry, failing: [.parent, .child], stages: [.parent, .child])
        participant("C", in: registry, failing: [.parent, .child], stages: [.parent, .child])
        participant("D", in: registry, stages: [.parent, .child])

        let parentFailure = registry.runParent(registry.beginRun(), generation: 0)
        XCTAssertEqual(log.get(), ["parent A", "parent B", "parent C", "parent D"], "all ran despite B and C failing")
        XCTAssertEqual(parentFailure?.name, "B", "the first failure is reported")
        XCTAssertEqual(parentFailure?.stage, .parent)

        log.set([])
        let childFailure = registry.runChild(registry.beginRun(), generation: 1)
        XCTAssertEqual(log.get(), ["child A", "child B", "child C", "child D"])
        XCTAssertEqual(childFailure?.name, "B")
        XCTAssertEqual(childFailure?.stage, .child)
        XCTAssertEqual(childFailure?.message, "B refuses child")
    }

    func testRegistrationAndRemovalArePublished() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        Telemetry.install(ring.writer)
        defer {
            Telemetry.install(nil)
            ring.unmap()
        }
        let registry = AtForkRegistry()
        let handles = participant("exporter", in: registry)
        registry.remove(handles[1])
        registry.remove(handles[1])
        let reader = try RingReader(path: scratch.ringPath)
        let events = try reader.readAll().0
        let registered = events.filter { $0.kind == .hookRegistered }
        XCTAssertEqual(registered.map(\.a0), ForkStage.allCases.map(\.rawValue))
        XCTAssertEqual(registered.map(\.a1), handles.map(\.id))
        XCTAssertEqual(Set(registered.map { reader.string(at: $0.a2) }), ["exporter"])
        let removed = events.filter { $0.kind == .hookRemoved }
        XCTAssertEqual(removed.map(\.a1), [handles[1].id, handles[1].id])
        XCTAssertEqual(removed.map(\.a2), [1, 0], "found, then not found")
    }
}
