import DemoServer
import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The master's signals, as Unicorn and Puma define them, checked in the ring.
final class ServerSignalTests: XCTestCase {
    /// Polls the ring until `condition` holds for its events (deadline 15 s).
    func waitForRing(_ run: DemoRun, _ what: String, file: StaticString = #filePath, line: UInt = #line,
                     _ condition: ([Event], RingReader) -> Bool) throws {
        let deadline = Deadline(seconds: 15)
        while true {
            let (events, reader) = try run.events()
            if condition(events, reader) { return }
            if deadline.hasPassed {
                XCTFail("timed out waiting for: \(what)", file: file, line: line)
                throw SystemError("ring", path: what, .timedOut)
            }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 20)
        }
    }

    func liveWorkers(_ events: [Event]) -> Set<UInt64> {
        Set(events.of(.workerSpawned).map(\.a0)).subtracting(events.of(.workerExited).map(\.a0))
    }

    func testTTINAddsAWorkerAndTTOURemovesOne() throws {
        let run = try DemoRun(["--workers", "2"])
        try ProcessControl.send(SIGTTIN, to: run.server.pid)
        try waitForRing(run, "a third worker") { events, _ in liveWorkers(events).count == 3 }
        try ProcessControl.send(SIGTTOU, to: run.server.pid)
        try waitForRing(run, "back to two workers") { events, _ in liveWorkers(events).count == 2 && events.of(.workerExited).count == 1 }
        XCTAssertGreaterThan(try run.requests(20), 0)
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
    }

    func testHUPReloadsTheAppAndReplacesEveryWorker() throws {
        let run = try DemoRun(["--workers", "2", "--preload"])
        let made = try run.requests(30)
        try ProcessControl.send(SIGHUP, to: run.server.pid)
        try waitForRing(run, "two new workers and the old two gone") { events, reader in
            events.of(.workerSpawned).count == 4 && events.of(.workerExited).count == 2
                && events.of(.serverHook).contains { reader.string(at: $0.a0) == "app_loaded(reload)" }
        }
        let after = try run.requests(30)
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
        XCTAssertEqual(try run.agentStats()["unique_spans"] as? Int, made + after, "nothing lost across the reload")
    }

    func testUSR2ReExecsANewMasterOnTheSameSocket() throws {
        let run = try DemoRun(["--workers", "1"])
        try ProcessControl.send(SIGUSR2, to: run.server.pid)
        var newMaster: Int32 = 0
        try waitForRing(run, "a new master with its own worker") { events, _ in
            guard let start = events.of(.processStart).first(where: {
                ProcessRole(rawValue: $0.a1) == .master && $0.a0 == UInt64(UInt32(bitPattern: run.server.pid))
            }) else { return false }
            newMaster = start.pid
            return events.of(.workerSpawned).contains { $0.pid == start.pid }
        }
        // Both masters serve the inherited socket; stop the old one, then the new.
        try ProcessControl.send(SIGQUIT, to: run.server.pid)
        XCTAssertGreaterThan(try run.requests(10), 0, "the new master's workers serve the same port")
        try ProcessControl.send(SIGQUIT, to: newMaster)
        XCTAssertEqual(try run.server.wait(within: 20), .exited(0))
        let deadline = Deadline(seconds: 20)
        while ProcessControl.isAlive(pid: newMaster, startTime: 0), !deadline.hasPassed {
            _ = try? ProcessControl.wait(for: newMaster, options: WNOHANG)
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 20)
        }
        XCTAssertFalse(ProcessControl.isAlive(pid: newMaster, startTime: 0), "the new master stopped on QUIT")
    }

    func testReforkForksANewWorkerFromWorkerZero() throws {
        let run = try DemoRun(["--workers", "2", "--profile", "puma"])
        let control = try run.controlClient()
        let list = try control.send(.processes).get()
        let entries = list["processes"]?.arrayValue ?? []
        let workerZero = try XCTUnwrap(entries.first { $0["role"]?.stringValue == "worker" && $0["index"]?.int64Value == 0 })
        let pid = pid_t(workerZero["pid"]?.int64Value ?? 0), start = UInt64(workerZero["start"]?.int64Value ?? 0)
        XCTAssertNoThrow(try control.send(.fork(pid: pid, start: start)).get())
        try waitForRing(run, "a worker forked by worker 0") { events, _ in
            events.of(.workerSpawned).contains { $0.pid == pid } && events.of(.forkChild).contains { $0.a0 == UInt64(UInt32(bitPattern: pid)) }
        }
        let made = try run.requests(40)
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
        XCTAssertEqual(try run.agentStats()["unique_spans"] as? Int, made)
    }

    func testQUITIsGracefulAndTERMIsFast() throws {
        let graceful = try DemoRun(["--workers", "2"])
        let made = try graceful.requests(50)
        XCTAssertEqual(try graceful.stopGracefully(), .exited(0))
        XCTAssertEqual(try graceful.agentStats()["unique_spans"] as? Int, made, "QUIT flushes every span")
        let fast = try DemoRun(["--workers", "2"])
        _ = try fast.requests(5)
        try ProcessControl.send(SIGTERM, to: fast.server.pid)
        XCTAssertEqual(try fast.server.wait(within: 10), .exited(0))
        let (events, _) = try fast.events()
        XCTAssertEqual(events.of(.workerExited).count, 2, "TERM still reaps every worker")
    }
}
