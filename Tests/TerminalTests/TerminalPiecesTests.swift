@testable import Dashboard
import EventRing
import Glibc
import Posix
import Synchronization
@testable import Terminal
import TestSupport
import XCTest

/// The terminal layer's pieces without a terminal: the reaper (in a spawned
/// fixture host, since it makes its process a subreaper), the log tail, the
/// session catalog, the headless summary and the controller worker.
final class TerminalPiecesTests: XCTestCase {
    func testReaperEndsEveryDescendantIncludingOrphansAndTermIgnorers() throws {
        let scratch = try ScratchSession()
        _ = try scratch.createRing()
        let host = try SpawnedProcess(executable: "dashboard-fixture-host", ["reaper", scratch.ringPath])
        let output = try host.readToEnd(within: 30)
        let errors = try host.readErrors()
        XCTAssertEqual(try host.wait(within: 30), .exited(0), errors)
        var keys: [(pid_t, UInt64)] = []
        for line in output.split(separator: "\n") where line.hasPrefix("proc") {
            let words = line.split(separator: " ")
            keys.append((pid_t(words[1])!, UInt64(words[2])!))
        }
        XCTAssertEqual(keys.count, 3, "two spawned, one orphan re-parented to the subreaper: \(output)")
        XCTAssertTrue(output.contains("report terminated=2 killed=1 survivors=0"), output)
        for (pid, start) in keys {
            XCTAssertFalse(ProcessControl.isAlive(pid: pid, startTime: start), "\(pid) still alive")
        }
    }

    func testLogTailKeepsTheLastLinesAndRereadsOnlyChangedFiles() throws {
        let scratch = try ScratchSession()
        let directory = scratch.session.path
        try write("one\ntwo\r\n\tthree\n", to: directory + "/agent.log")
        try write("x", to: directory + "/not-a-log.txt")
        let tail = LogTail(directory: directory)
        XCTAssertTrue(tail.refresh())
        XCTAssertEqual(tail.snapshot.files.map(\.name), ["agent.log"])
        XCTAssertEqual(tail.snapshot.files[0].lines, ["one", "two", " three"])
        XCTAssertFalse(tail.refresh(), "nothing changed")
        try write("one\ntwo\r\n\tthree\nfour", to: directory + "/agent.log")
        XCTAssertTrue(tail.refresh())
        XCTAssertEqual(tail.snapshot.files[0].lines.last, "four")
        // A big file: only its end is read, from a whole line.
        var big = ""
        for n in 0..<20_000 { big += "line \(n)\n" }
        try write(big, to: directory + "/master.log")
        tail.refresh()
        let lines = try XCTUnwrap(tail.snapshot.files.first { $0.name == "master.log" }?.lines)
        XCTAssertEqual(lines.last, "line 19999")
        XCTAssertTrue(lines.first!.hasPrefix("line "))
        XCTAssertLessThanOrEqual(lines.count, LogTail.linesPerFile)
    }

    func testLogSnapshotPrefersTheFileNamedByPidThenRoleThenName() {
        let snapshot = LogSnapshot(files: [
            .init(name: "agent.log", lines: [], size: 0), .init(name: "worker-4242.log", lines: [], size: 0),
            .init(name: "unicorn.log", lines: [], size: 0),
        ])
        var process = ProcessModel(key: ProcessKey(pid: 4242, start: 1), time: 0)
        XCTAssertEqual(snapshot.preferredFile(for: process), 1)
        process.key.pid = 7
        process.role = .agent
        XCTAssertEqual(snapshot.preferredFile(for: process), 0)
        process.role = .master
        process.name = "unicorn master"
        XCTAssertEqual(snapshot.preferredFile(for: process), 2)
        process.name = "other"
        XCTAssertNil(snapshot.preferredFile(for: process))
    }

    func testSessionCatalogTellsLiveEndedAndStaleApartAndRemovesOnlyStale() throws {
        let scratch = try ScratchSession()
        let root = scratch.root + "/sessions"
        // Stale: ended, created in 1970 (its name starts with the ms time).
        let stale = try SessionDirectory.create(name: "1000-1", root: root)
        try fillWithDemoHost(stale)
        // Ended but young: kept.
        let young = try SessionDirectory.create(name: "\(Clock.realtimeNanoseconds() / 1_000_000)-2", root: root)
        try fillWithDemoHost(young)
        // Old but live: a process holds a lane.
        let live = try SessionDirectory.create(name: "2000-3", root: root)
        _ = try Ring.create(at: live.ringPath, configuration: RingConfiguration(laneCount: 4, slotsPerLane: 64, stringBytes: 4096))
        let holder = try SpawnedProcess(["hold", live.ringPath])
        XCTAssertEqual(try holder.readLine(), "held")

        let infos = Dictionary(uniqueKeysWithValues: SessionCatalog.list(root: root).map { ($0.session.path, $0) })
        XCTAssertEqual(infos.count, 3)
        XCTAssertTrue(infos[stale.path]!.isStale(olderThan: SessionCatalog.staleAfterSeconds))
        XCTAssertFalse(infos[young.path]!.isLive)
        XCTAssertFalse(infos[young.path]!.isStale(olderThan: SessionCatalog.staleAfterSeconds))
        XCTAssertTrue(infos[live.path]!.isLive)
        XCTAssertEqual(infos[stale.path]!.model?.processes.count, 3)

        XCTAssertEqual(SessionCatalog.removeStale(root: root), [stale.path])
        XCTAssertFalse(FileSystem.exists(stale.path))
        XCTAssertTrue(FileSystem.exists(young.path))
        XCTAssertTrue(FileSystem.exists(live.path))
        try holder.closeInput()
        XCTAssertEqual(try holder.wait(), .exited(0))
    }

    func testHeadlessSummaryListsEveryProcessInTreeOrder() throws {
        let scratch = try ScratchSession()
        try fillWithDemoHost(scratch.session)
        let text = try HeadlessSummary.run(ringPath: scratch.ringPath, title: "t")
        let lines = text.split(separator: "\n")
        XCTAssertTrue(lines[0].hasPrefix("forkscope: t ("), text)
        XCTAssertTrue(lines[0].contains("3 processes"), text)
        XCTAssertTrue(lines[1].hasPrefix("PID"), text)
        XCTAssertTrue(lines[2].contains("demo master"), text)
        XCTAssertTrue(lines[3].hasPrefix(" ") && lines[3].contains("demo worker 0"), text)
        XCTAssertTrue(lines[4].contains("demo worker 1") && lines[4].contains("exit 0"), text)
    }

    func testControllerWorkerRunsCommandsInOrderOffTheCallingThreadAndWakesTheLoop() throws {
        let wake = try SignalPipe()
        defer { wake.close() }
        let controller = RecordingController()
        let worker = try ControllerWorker(controller: controller, wake: wake)
        let key = ProcessKey(pid: 1, start: 2)
        worker.submit(.cancelSend(target: key))
        worker.submit(.burst(requests: 3))
        var results: [(ControlCommand, ControlResult)] = []
        let deadline = Deadline(seconds: 10)
        while results.count < 2 && !deadline.hasPassed {
            _ = try wake.readEnd.poll(for: Int16(POLLIN), deadline: deadline)
            _ = wake.drain()
            results += worker.results()
        }
        worker.stop()
        XCTAssertEqual(results.map(\.0), [.cancelSend(target: key), .burst(requests: 3)])
        XCTAssertEqual(results.map(\.1), [.done("cancel the send of 1"), .done("burst of 3 requests")])
        XCTAssertFalse(controller.threads.withLock { $0.contains(pthread_self()) }, "commands run on the worker thread")
    }

    // MARK: helpers

    func write(_ text: String, to path: String) throws {
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { try? fd.close() }
        try fd.writeAll(text)
    }

    func fillWithDemoHost(_ session: SessionDirectory) throws {
        if !FileSystem.exists(session.ringPath) {
            _ = try Ring.create(at: session.ringPath, configuration: RingConfiguration(laneCount: 8, slotsPerLane: 64, stringBytes: 4096))
        }
        let host = try SpawnedProcess(executable: "forkscope", ["demo-host", session.ringPath, "2"])
        XCTAssertEqual(try host.wait(within: 30), .exited(0))
    }
}

final class RecordingController: Controller, @unchecked Sendable {
    let threads = Mutex<[pthread_t]>([])
    func perform(_ command: ControlCommand) -> ControlResult {
        threads.withLock { $0.append(pthread_self()) }
        return .done(command.description)
    }
}
