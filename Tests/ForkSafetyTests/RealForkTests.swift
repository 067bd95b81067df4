import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import TestSupport
import XCTest

/// Real forks, inside the spawned `forkscope-testhost` (never the XCTest
/// process). The host's children report the step that failed through their
/// exit code; the host prints `ok …` or `fail STEP WHY`. Afterwards the
/// ring shows what each stage published.
final class RealForkTests: XCTestCase {
    private let mark = ScenarioMarks.self

    // MARK: worker runtime across fork

    func testForkWhileAWorkerIsMidJobWaitsForTheJobThenChildAndParentRunNewJobs() throws {
        let scenario = try ForkScenario("fork-job", ["mid"])
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent")), child = try XCTUnwrap(scenario.reportedPid("child"))
        let ring = try scenario.events()

        // The job in progress ended inside `before`, before the fork.
        let start = try XCTUnwrap(ring.of(.forkBeforeStart, pid: parent).first)
        let end = try XCTUnwrap(ring.of(.forkBeforeEnd, pid: parent).first)
        let jobEnd = try XCTUnwrap(ring.of(.mark, pid: parent).first { $0.a0 == mark.jobEnded })
        XCTAssertTrue(start.time < jobEnd.time && jobEnd.time < end.time, ring.summary)
        let quiesce = try XCTUnwrap(ring.of(.runtimeQuiesce, pid: parent).first)
        XCTAssertTrue(jobEnd.time < quiesce.time, "the quiesce completed once the job had ended")

        // Nothing waited for the workers when the parent resumed: they
        // started again on the parent's next job, not in the fork's path.
        assertFreshRuntime(in: ring, parent: parent, child: child, startedAtResume: 0)
    }

    func testForkBetweenTwoJobsKeepsTheQueuedJobForTheParentAndGivesTheChildAFreshRuntime() throws {
        let scenario = try ForkScenario("fork-job", ["between"])
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent")), child = try XCTUnwrap(scenario.reportedPid("child"))
        let ring = try scenario.events()
        // A job queued while quiesced waits: the workers start at resume.
        assertFreshRuntime(in: ring, parent: parent, child: child, startedAtResume: 2)

        // Each stage's hooks, by name and stage: both `before` hooks
        // (newest first) then `parent` in the parent, `child` in the child
        // (the two processes run at once: no order between them).
        func runs(_ pid: pid_t) -> [String] {
            ring.of(.hookRun, pid: pid).map { "\(ForkStage(rawValue: $0.a0)?.name ?? "?") \(ring.name($0.a1)) \(Outcome(rawValue: $0.a2)?.name ?? "?")" }
        }
        XCTAssertEqual(runs(parent), ["before exporter ok", "before queue-while-quiesced ok", "parent exporter ok"], ring.summary)
        XCTAssertEqual(runs(child), ["child exporter ok"], ring.summary)
        XCTAssertEqual(Set(ring.of(.hookRun).map(\.pid)), [parent, child])
        let before = try XCTUnwrap(ring.of(.forkBeforeStart, pid: parent).first)
        XCTAssertEqual(before.a0, 2, "two before hooks")
        let rebuild = try XCTUnwrap(ring.of(.runtimeRebuild, pid: child).first)
        XCTAssertTrue(ring.name(rebuild.a2).contains("1 queued job(s) of the parent not run here"), ring.name(rebuild.a2))
    }

    /// What every hooked fork publishes: `fork.before.start/end`,
    /// `runtime.quiesce` and `runtime.resume` at generation 1 and
    /// `fork.parent` in the parent; `fork.child` (generation 1) and
    /// `runtime.rebuild` 1 → 2 in the child, whose new workers start at
    /// generation 2 — on its first job, not in the fork — and run it.
    /// `startedAtResume`: the parent's workers started by `runtime.resume`
    /// itself (0 when no work waited: they start on first use).
    private func assertFreshRuntime(in ring: RingEvents, parent: pid_t, child: pid_t, startedAtResume: UInt64,
                                    file: StaticString = #filePath, line: UInt = #line) {
        let kinds = ring.events.filter { $0.pid == parent && $0.kind != .mark && $0.kind != .threadStart && $0.kind != .threadStop && $0.kind != .hookRun }
            .compactMap(\.kind).drop { $0 != .forkBeforeStart }
        XCTAssertEqual(Array(kinds.prefix(5)), [.forkBeforeStart, .runtimeQuiesce, .forkBeforeEnd, .forkParent, .runtimeResume], ring.summary, file: file, line: line)
        let quiesce = ring.of(.runtimeQuiesce, pid: parent).first
        XCTAssertEqual(quiesce?.a0, 1, "quiesced at generation 1", file: file, line: line)
        XCTAssertEqual(quiesce?.a1, 2, "two workers joined", file: file, line: line)
        let resume = ring.of(.runtimeResume, pid: parent).first
        XCTAssertEqual(resume?.a0, 1, "the parent resumes at the same generation", file: file, line: line)
        XCTAssertEqual(resume?.a1, startedAtResume, "workers started at resume", file: file, line: line)
        let parentStarts = ring.of(.threadStart, pid: parent).filter { $0.time > (resume?.time ?? .max) }
        // (The scenario may end before the second one has started.)
        XCTAssertFalse(parentStarts.isEmpty, "the parent's workers started again after the fork", file: file, line: line)
        XCTAssertEqual(ring.of(.forkParent, pid: parent).first?.a0, UInt64(child), file: file, line: line)
        XCTAssertEqual(ring.of(.forkBeforeEnd, pid: parent).first?.a0, Outcome.ok.rawValue, file: file, line: line)

        let forkChild = ring.of(.forkChild, pid: child).first
        XCTAssertEqual(forkChild?.a0, UInt64(parent), file: file, line: line)
        XCTAssertEqual(forkChild?.a1, 1, "Fork.generation 1", file: file, line: line)
        XCTAssertEqual(forkChild?.generation, 1, file: file, line: line)
        let rebuild = ring.of(.runtimeRebuild, pid: child).first
        XCTAssertEqual(rebuild?.a0, 1, "rebuilt from generation 1", file: file, line: line)
        XCTAssertEqual(rebuild?.a1, 2, "to generation 2", file: file, line: line)
        XCTAssertEqual(rebuild?.generation, 2, file: file, line: line)
        XCTAssertEqual(ring.of(.threadStart, pid: child).map(\.generation), [2, 2], "two fresh workers at generation 2", file: file, line: line)
        XCTAssertTrue(ring.of(.threadStart, pid: child).allSatisfy { $0.time > (rebuild?.time ?? .max) }, "started after the rebuild", file: file, line: line)
        let childJobs = ring.of(.mark, pid: child).filter { $0.a0 == mark.jobRan }
        XCTAssertEqual(childJobs.map(\.a2), [2], "the child's workers ran a job at generation 2", file: file, line: line)
        XCTAssertTrue(childJobs.allSatisfy { $0.tid != child }, "on a worker thread, not main", file: file, line: line)
        let parentJobsAfterFork = ring.of(.mark, pid: parent).filter { $0.a0 == mark.jobRan && $0.time > (resume?.time ?? .max) }
        XCTAssertFalse(parentJobsAfterFork.isEmpty, "the resumed parent ran a job", file: file, line: line)
        XCTAssertTrue(ring.hookRuns(.parent, pid: child).isEmpty && ring.hookRuns(.child, pid: parent).isEmpty, file: file, line: line)
    }

    func testTwoHundredConsecutiveForksWithBusyWorkersDoNotHang() throws {
        let scenario = try ForkScenario("fork-many", ["200"])
        try scenario.expectSuccess(within: 30)
        XCTAssertEqual(scenario.reported("forks"), "200", scenario.output.joined(separator: "\n"))
        let jobs = Int(scenario.reported("jobs") ?? "") ?? 0
        XCTAssertGreaterThan(jobs, 0, "the workers were busy across the forks")
        print("200 forks with busy workers: \(scenario.reported("ms") ?? "?") ms, \(jobs) jobs meanwhile")
    }

    // MARK: daemon

    func testDaemonRunsOnlyBeforeAndChildAndTheDaemonWorks() throws {
        let scratch = try ScratchSession()
        let fifo = scratch.session.path + "/daemon.fifo"
        XCTAssertEqual(mkfifo(fifo, 0o600), 0, "mkfifo: \(Errno.current)")
        // Open the reading end first, so the daemon's open of its log (the
        // FIFO) does not wait; non-blocking, so reads wait only in poll.
        let daemonOutput = try FileDescriptor.open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        defer { try? daemonOutput.close() }
        let scenario = try ForkScenario("fork-daemon", [fifo], scratch: scratch)
        XCTAssertTrue(try scenario.line().hasPrefix("daemonizing"))
        try scenario.expectSuccess()
        let original = scenario.host.pid

        let line = try readLine(daemonOutput, within: 10)
        let fields = Dictionary(uniqueKeysWithValues: line.split(separator: " ").dropFirst().compactMap { field -> (String, String)? in
            let parts = field.split(separator: "=", maxSplits: 1)
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        })
        let daemon = try XCTUnwrap(fields["pid"].flatMap { pid_t($0) }, line)
        defer { endDaemon(daemon) }
        XCTAssertTrue(line.hasPrefix("daemon "), line)
        XCTAssertEqual(fields["step"], "0", "the daemon's checks (ChildStep): \(line)")
        XCTAssertNotEqual(fields["session"], "\(daemon)", "not a session leader: it can never reacquire a terminal")

        let ring = try scenario.events()
        XCTAssertEqual(ring.hookRuns(.before, pid: original).count, 1, ring.summary)
        XCTAssertTrue(ring.hookRuns(.parent).isEmpty, "no parent hook ran anywhere for a daemon fork:\n\(ring.summary)")
        XCTAssertTrue(ring.of(.forkParent).isEmpty, ring.summary)
        XCTAssertEqual(ring.hookRuns(.child, pid: daemon).count, 1, ring.summary)
        XCTAssertEqual(ring.of(.forkChild, pid: daemon).first?.a1, 1)
        XCTAssertEqual(ring.of(.runtimeRebuild, pid: daemon).first?.a1, 2)
        XCTAssertEqual(ring.of(.mark, pid: daemon).filter { $0.a0 == mark.jobRan }.map(\.a2), [2], "the daemon's runtime ran a job")
        let stagePids = Set(ring.events.filter { [.forkBeforeStart, .forkChild, .hookRun].contains($0.kind) }.map(\.pid))
        XCTAssertEqual(stagePids, [original, daemon], "the intermediate process runs no stage")
    }

    /// The daemon is no child of ours (it left our session): wait on a
    /// pidfd for it to leave, and kill it if it has not.
    private func endDaemon(_ pid: pid_t) {
        guard let descriptor = try? ProcessControl.openDescriptor(for: pid) else { return }
        defer { try? descriptor.close() }
        if (try? descriptor.poll(for: Int16(POLLIN), deadline: .after(milliseconds: 5000))) ?? 0 == 0 {
            XCTFail("daemon \(pid) still running: killed")
            try? ProcessControl.send(SIGKILL, to: pid)
        }
    }

    // MARK: raw fork, failed fork

    func testRawForkWithoutHooksIsDetectedOnFirstUseAndTheChildRecovers() throws {
        let scenario = try ForkScenario("fork-unhooked")
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent")), child = try XCTUnwrap(scenario.reportedPid("child"))
        let ring = try scenario.events()
        XCTAssertTrue(ring.of(.forkBeforeStart).isEmpty && ring.of(.hookRun).isEmpty, "no hook ran")
        let detected = ring.of(.forkDetectedWithoutHooks)
        XCTAssertEqual(detected.map(\.pid), [child], ring.summary)
        XCTAssertEqual(detected.first?.a0, UInt64(parent), "names the process it was forked from")
        XCTAssertEqual(detected.first?.generation, 1)
        let rebuild = try XCTUnwrap(ring.of(.runtimeRebuild, pid: child).first)
        XCTAssertEqual([rebuild.a0, rebuild.a1], [1, 2])
        XCTAssertEqual(ring.name(rebuild.a2), "fork detected without hooks")
        XCTAssertTrue(detected[0].time < rebuild.time)
        XCTAssertEqual(ring.of(.mark, pid: child).filter { $0.a0 == mark.jobRan }.map(\.a2), [2], "the rebuilt runtime ran a job")
    }

    /// Detection turned on after a raw fork (the C ABI allows it at run
    /// time): the writer's next trace still recovers.
    func testWriterRecoversOnTheFirstTraceAfterDetectionIsTurnedOnInTheChild() throws {
        let scenario = try ForkScenario("fork-unhooked-writer")
        try scenario.expectSuccess()
        let child = try XCTUnwrap(scenario.reportedPid("child"))
        let ring = try scenario.events()
        XCTAssertEqual(ring.of(.forkDetectedWithoutHooks).map(\.pid), [child], ring.summary)
    }

    /// A raw fork copies the runtime's lock held by another thread (never
    /// to be released in the child): the child's first use must still
    /// detect the fork and recover, not block on that lock.
    func testRawForkWhileAnotherThreadHoldsTheRuntimeLockStillRecovers() throws {
        let scenario = try ForkScenario("fork-unhooked-locked", ["20"])
        try scenario.expectSuccess(within: 30)
        XCTAssertEqual(scenario.reported("forks"), "20")
        let ring = try scenario.events()
        XCTAssertEqual(ring.of(.forkDetectedWithoutHooks).count, 20, ring.summary)
    }

    func testInjectedEAGAINThrowsForkFailedRunsParentLeavesNothingLockedAndTheNextForkWorks() throws {
        let scenario = try ForkScenario("fork-eagain")
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent")), child = try XCTUnwrap(scenario.reportedPid("child"))
        let ring = try scenario.events()
        let failed = ring.of(.forkFailed, pid: parent)
        XCTAssertEqual(failed.map(\.a0), [UInt64(EAGAIN)], ring.summary)
        XCTAssertEqual(failed.first?.a1, ForkStage.parent.rawValue)
        let failedAt = try XCTUnwrap(failed.first?.time)
        XCTAssertEqual(ring.hookRuns(.parent, pid: parent).filter { $0.time > failedAt }.count, 2, "parent ran after the failed fork, and after the real one")
        XCTAssertEqual(ring.of(.runtimeResume, pid: parent).count, 2)
        XCTAssertEqual(ring.of(.forkParent, pid: parent).map(\.a0), [UInt64(child)], "the next fork worked")
    }

    // MARK: a send in flight when the fork starts

    func testDrainPolicyMakesBeforeWaitForTheSendInProgress() throws {
        let scenario = try ForkScenario("fork-policy", ["drain"])
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent"))
        XCTAssertEqual(scenario.reported("outcome"), "ready", "the send completed, not cancelled")
        let ring = try scenario.events()
        let send = UInt64(scenario.reported("send") ?? "") ?? 0
        let waits = ring.of(.drainWait, pid: parent)
        XCTAssertEqual(waits.map(\.a0), [send, send], "drain.wait at start and end: \(ring.summary)")
        XCTAssertEqual(waits.map(\.a2), [Outcome.ok.rawValue, Outcome.ok.rawValue])
        let answered = try XCTUnwrap(ring.of(.mark, pid: parent).first { $0.a0 == mark.agentAnswered })
        let ended = try XCTUnwrap(ring.of(.mark, pid: parent).first { $0.a0 == mark.sendEnded })
        let beforeEnd = try XCTUnwrap(ring.of(.forkBeforeEnd, pid: parent).first)
        // The sender publishes `sendEnded` after its `end(token)`, which is
        // what ends the drain: the two may come in either order, both
        // before `before` ends (it then waits for the send lock).
        XCTAssertTrue(waits[0].time < answered.time && answered.time < waits[1].time && waits[1].time < beforeEnd.time
                      && answered.time < ended.time && ended.time < beforeEnd.time,
                      "before waited: drain starts, the agent answers, drain and the send end, before ends\n\(ring.summary)")
        XCTAssertTrue(ring.of(.cancelRequested).isEmpty, "nothing cancelled")
    }

    func testCancelPolicyCancelsTheSendInProgressWithReasonFork() throws {
        let scenario = try ForkScenario("fork-policy", ["cancel"])
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent"))
        XCTAssertEqual(scenario.reported("outcome"), "cancelled")
        XCTAssertEqual(scenario.reported("reason"), "fork", "cancellation.end(token) returned .fork")
        let ring = try scenario.events()
        let send = UInt64(scenario.reported("send") ?? "") ?? 0
        let requests = ring.of(.cancelRequested, pid: parent)
        XCTAssertEqual(requests.map(\.a0), [send], ring.summary)
        XCTAssertEqual(requests.first?.a1, CancelReason.fork.rawValue)
        XCTAssertEqual(requests.first?.a2, 1, "matched the running send")
        XCTAssertTrue(ring.of(.drainWait).isEmpty)
    }

    func testDrainThenCancelPolicyWaitsItsTimeThenCancelsWithDrainTimeout() throws {
        let scenario = try ForkScenario("fork-policy", ["drain:100"])
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent"))
        XCTAssertEqual(scenario.reported("outcome"), "cancelled")
        XCTAssertEqual(scenario.reported("reason"), "drain_timeout")
        XCTAssertGreaterThanOrEqual(Int(scenario.reported("fork_us") ?? "") ?? 0, 100_000)
        let ring = try scenario.events()
        let send = UInt64(scenario.reported("send") ?? "") ?? 0
        let wait = try XCTUnwrap(ring.of(.drainWait, pid: parent).last, ring.summary)
        XCTAssertEqual(wait.a0, send)
        XCTAssertEqual(wait.a1, 100, "timeout_ms")
        XCTAssertEqual(wait.a2, Outcome.timedOut.rawValue)
        XCTAssertGreaterThanOrEqual(wait.a3, 100_000, "waited at least 100 ms")
        let request = try XCTUnwrap(ring.of(.cancelRequested, pid: parent).first)
        XCTAssertEqual([request.a0, request.a1, request.a2], [send, CancelReason.drainTimeout.rawValue, 1])
        XCTAssertTrue(wait.time < request.time)
    }

    /// The sender took its permit just before `quiescing` was set and
    /// begins only while `before` joins the workers: `cancel` cancels it at
    /// once, rather than waiting for the whole send.
    func testCancelPolicyAlsoCancelsASendThatBeginsAfterBeforeCancelled() throws {
        let scenario = try ForkScenario("fork-late-send", ["cancel"])
        try scenario.expectSuccess()
        XCTAssertEqual(scenario.reported("outcome"), "cancelled")
        XCTAssertEqual(scenario.reported("reason"), "fork")
        let ring = try scenario.events()
        XCTAssertEqual(ring.of(.cancelRequested).map(\.a1), [CancelReason.fork.rawValue], ring.summary)
    }

    /// The same late sender under `drain:T` gets T, then is cancelled.
    func testDrainThenCancelPolicyGivesASendThatBeginsLateItsTimeThenCancelsIt() throws {
        let scenario = try ForkScenario("fork-late-send", ["drain:100"])
        try scenario.expectSuccess()
        XCTAssertEqual(scenario.reported("outcome"), "cancelled")
        XCTAssertEqual(scenario.reported("reason"), "drain_timeout")
        XCTAssertGreaterThanOrEqual(Int(scenario.reported("fork_us") ?? "") ?? 0, 100_000)
        let ring = try scenario.events()
        let wait = try XCTUnwrap(ring.of(.drainWait).first, ring.summary)
        XCTAssertEqual([wait.a1, wait.a2], [100, Outcome.timedOut.rawValue])
    }

    // MARK: thread census

    func testWorkersStartOnFirstUseAfterAForkAndAtOnceWhenWorkWaits() throws {
        let scenario = try ForkScenario("fork-deferred")
        try scenario.expectSuccess()
        let parent = try XCTUnwrap(scenario.reportedPid("parent"))
        let ring = try scenario.events()
        // Three hooked forks: resumed with 0, 1 (work waited), 0 workers started.
        XCTAssertEqual(ring.of(.runtimeResume, pid: parent).map(\.a1), [0, 1, 0], ring.summary)
        XCTAssertEqual(ring.of(.forkDetectedWithoutHooks).count, 1, ring.summary)
    }

    func testTheChildSetsTheSharedEventFDAsideAndItsFirstSendTakesItsOwn() throws {
        let scenario = try ForkScenario("fork-eventfd")
        try scenario.expectSuccess()
    }

    func testParentAndChildHaveOnlyTheMainThreadAndOurNamedThreads() throws {
        let scenario = try ForkScenario("fork-census")
        let census = try scenario.line()
        XCTAssertTrue(census.hasPrefix("census "), census)
        let pids = census.split(separator: " ").dropFirst().compactMap { pid_t($0.split(separator: "=").last ?? "") }
        XCTAssertEqual(pids.count, 2, census)
        for (role, pid) in zip(["parent", "child"], pids) {
            let names = try threadNames(of: pid)
            let others = names.filter { $0.key != pid }
            XCTAssertEqual(names[pid], "forkscope-testh", "\(role) main thread (comm keeps 15 bytes)")
            XCTAssertEqual(others.values.sorted(), ["fks-exp0", "fks-exp1"], "\(role) \(pid): \(names)")
        }
        try scenario.host.send("c")
        try scenario.expectSuccess()
    }
}

/// The `mark` tags the host's scenarios publish (ScenarioMark in the host).
enum ScenarioMarks {
    static let jobRan: UInt64 = 1, jobStarted: UInt64 = 2, jobEnded: UInt64 = 3, sendBegan: UInt64 = 4
    static let sendEnded: UInt64 = 5, agentAnswered: UInt64 = 6, daemonReady: UInt64 = 7
}

/// One line from a non-blocking descriptor, waiting in poll at most `seconds`.
func readLine(_ fd: FileDescriptor, within seconds: Double) throws -> String {
    let deadline = Deadline(seconds: seconds)
    var bytes: [UInt8] = []
    while true {
        guard try fd.poll(for: Int16(POLLIN), deadline: deadline) != 0 else { throw DeadlinePassed(what: "a line on \(fd.rawValue)") }
        var byte: UInt8 = 0
        let result = withUnsafeMutableBytes(of: &byte) { raw in Result { () throws(SystemError) in try fd.read(into: raw) } }
        if case .failure(let error) = result, error.errno == .wouldBlock { continue }
        let count = try result.get()
        if count == 0 { throw DeadlinePassed(what: "a line (end of file after \(bytes.count) bytes)") }
        if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(byte)
    }
}
