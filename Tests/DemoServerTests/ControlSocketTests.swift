import DemoServer
import EventRing
import Foundation
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

final class ControlSocketTests: XCTestCase {
    func processes(_ control: ControlClient) throws -> [(pid: pid_t, start: UInt64, role: String, index: Int)] {
        let reply = try control.send(.processes).get()
        return (reply["processes"]?.arrayValue ?? []).map {
            (pid_t($0["pid"]?.int64Value ?? 0), UInt64($0["start"]?.int64Value ?? 0), $0["role"]?.stringValue ?? "", Int($0["index"]?.int64Value ?? -1))
        }
    }

    func waitFor(_ what: String, _ condition: () throws -> Bool) throws {
        let deadline = Deadline(seconds: 15)
        while try !condition() {
            if deadline.hasPassed { XCTFail("timed out: \(what)"); throw SystemError("wait", path: what, .timedOut) }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 20)
        }
    }

    func testEveryCommandWorksAndIsPublished() throws {
        let run = try DemoRun(["--workers", "2", "--preload"])
        let control = try run.controlClient()
        let table = try processes(control)
        let master = try XCTUnwrap(table.first { $0.role == "master" })
        XCTAssertEqual(table.filter { $0.role == "worker" }.count, 2)

        XCTAssertNoThrow(try control.send(.fork(pid: master.pid, start: master.start)).get())
        try waitFor("three workers") { try processes(control).filter { $0.role == "worker" }.count == 3 }
        XCTAssertNoThrow(try control.send(.forkUnsafe).get())
        try waitFor("four workers") { try processes(control).filter { $0.role == "worker" }.count == 4 }
        _ = try run.requests(20)  // some land on the unsafely forked worker

        let victim = try XCTUnwrap(try processes(control).first { $0.role == "worker" })
        XCTAssertNoThrow(try control.send(.kill(pid: victim.pid, start: victim.start, signal: SIGTERM)).get())
        try waitFor("the killed worker replaced") {
            let now = try processes(control)
            return !now.contains { $0.pid == victim.pid } && now.filter { $0.role == "worker" }.count == 4
        }

        XCTAssertNoThrow(try control.send(.policy(.drainThenCancel(milliseconds: 100))).get())
        XCTAssertNoThrow(try control.send(.agentDelay(milliseconds: 5)).get())
        XCTAssertEqual(try run.agentStats()["delay_ms"] as? Double, 5)
        XCTAssertNoThrow(try control.send(.agentDelay(milliseconds: 0)).get())
        XCTAssertNoThrow(try control.send(.agentFault("429")).get())
        XCTAssertNoThrow(try control.send(.agentFault("none")).get())

        let before = try run.agentStats()["requests"] as? Int ?? 0
        XCTAssertNoThrow(try control.send(.burst(25)).get())
        try waitFor("25 burst requests traced and sent") {
            let stats = try run.agentStats()
            return (stats["spans"] as? Int ?? 0) > 0 && (stats["requests"] as? Int ?? 0) > before
        }

        XCTAssertNoThrow(try control.send(.daemonize).get())
        try waitFor("the daemon's spans") {
            let (events, _) = try run.events()
            return events.of(.processStart).contains { ProcessRole(rawValue: $0.a1) == .daemon }
                && events.of(.processExit).contains { exit in events.of(.processStart).contains { $0.pid == exit.pid && ProcessRole(rawValue: $0.a1) == .daemon } }
        }
        let (events, reader) = try run.events()
        let daemon = try XCTUnwrap(events.of(.processStart).first { ProcessRole(rawValue: $0.a1) == .daemon }).pid
        let daemonStages = events.of(.hookRun).filter { $0.pid == daemon }.map { ForkStage(rawValue: $0.a0) }
        XCTAssertTrue(daemonStages.contains(.child) && !daemonStages.contains(.parent), "daemon = before + child")
        let commands = events.of(.operatorCommand).compactMap { reader.string(at: $0.a0) }
        for name in ["processes", "fork", "fork-unsafe", "kill", "policy", "agent-delay", "agent-fault", "burst", "daemonize"] {
            XCTAssertTrue(commands.contains(name), "operator.command \(name) published")
        }
        XCTAssertFalse(events.of(.forkDetectedWithoutHooks).isEmpty, "the unsafe fork was detected on first use")
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
    }

    func testCancelStopsAWorkersHeldSendAndThePayloadIsDeliveredLater() throws {
        let run = try DemoRun(["--workers", "1", "--preload", "--policy", "drain"])
        let control = try run.controlClient()
        _ = try run.agentControl("/control/hold")
        let made = try run.requests(3)
        XCTAssertEqual(try http(String(run.agentURL.dropFirst(7)), "GET", "/control/wait-held?count=1&timeout_ms=10000").head.status, 200, "a send is held")
        _ = try run.agentControl("/control/hold?enabled=false")
        let worker = try XCTUnwrap(try processes(control).first { $0.role == "worker" })
        XCTAssertNoThrow(try control.send(.cancel(pid: worker.pid, start: worker.start)).get())
        try waitFor("the send cancelled and the payload delivered again") {
            let (events, _) = try run.events()
            let unique = try run.agentStats()["unique_spans"] as? Int
            return events.of(.sendCancel).contains { $0.pid == worker.pid && CancelReason(rawValue: $0.a1) == .operatorRequest }
                && unique == made
        }
        _ = try run.agentControl("/control/release")
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
        let stats = try run.agentStats()
        XCTAssertEqual(stats["unique_spans"] as? Int, made, "nothing lost")
        XCTAssertEqual(stats["duplicate_spans"] as? Int, made, "the agent had read the cancelled payload: at-least-once shows it twice")
    }

    func testTargetsOutsideTheTreeAreRefused() throws {
        let run = try DemoRun(["--workers", "1"])
        let control = try run.controlClient()
        let start = ProcessControl.startTime(of: 1) ?? 1
        guard case .failure(let error) = control.send(.kill(pid: 1, start: start, signal: SIGTERM)) else { return XCTFail("pid 1 accepted") }
        XCTAssertTrue("\(error)".contains("not a live process of this server's tree"), "\(error)")
        let master = try XCTUnwrap(try processes(control).first { $0.role == "master" })
        guard case .failure = control.send(.cancel(pid: master.pid, start: master.start + 1)) else { return XCTFail("wrong start time accepted") }
        guard case .failure(let unknown) = control.send(["command": "reboot"]) else { return XCTFail("unknown command accepted") }
        XCTAssertTrue("\(unknown)".contains("unknown command"), "\(unknown)")
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
    }

    func testAMillionMalformedBytesLeaveTheMasterServing() throws {
        let run = try DemoRun(["--workers", "1"])
        var generator = SystemRandomNumberGenerator()
        for i in 0..<1_000 {
            let control = try run.controlClient()
            switch i % 4 {
            case 0: try control.sendRaw((0..<64).map { _ in UInt8.random(in: 0...255, using: &generator) })
            case 1: try control.sendRaw([0, 0, 0, 5, 0xc1, 0xc1, 0xc1, 0xc1, 0xc1])  // reserved msgpack bytes
            case 2: _ = control.send(["command": .int(7)], within: 5)
            default: _ = control.send(["command": "kill", "pid": .string("x")], within: 5)
            }
        }
        XCTAssertNoThrow(try run.controlClient().send(.processes).get(), "the control socket still answers")
        XCTAssertGreaterThan(try run.requests(10), 0, "the server still serves")
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
    }

    func testAClientOfAnotherUserIsRefusedByItsUid() throws {
        try XCTSkipIf(geteuid() != 0, "needs root to run a client as nobody")
        let run = try DemoRun(["--workers", "1"])
        // Open the way on purpose, so only the uid check can refuse.
        XCTAssertEqual(chmod(run.scratch.root, 0o755), 0)
        XCTAssertEqual(chmod(run.scratch.session.path, 0o777), 0)
        XCTAssertEqual(chmod(run.scratch.session.controlSocketPath, 0o666), 0)
        let frame = try ControlFrame.encode(ControlRequest.processes.message)
        let hex = frame.map { String(format: "%02x", $0) }.joined()
        let script = """
        import socket, sys
        s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(bytes.fromhex(sys.argv[2]))
        data = b''
        while True:
            chunk = s.recv(4096)
            if not chunk: break
            data += chunk
        sys.stdout.write(data[4:].decode('latin-1'))
        """
        let client = try SpawnedProcess(path: "/usr/bin/setpriv",
                                        ["--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script,
                                         run.scratch.session.controlSocketPath, hex])
        let output = try client.readToEnd()
        let errors = try client.readErrors()
        XCTAssertEqual(try client.wait(), .exited(0), errors)
        XCTAssertTrue(output.contains("refused: uid 65534"), output)
        let (events, reader) = try run.events()
        XCTAssertTrue(events.of(.operatorCommand).contains { reader.string(at: $0.a0) == "refused: foreign uid" })
        XCTAssertEqual(try run.stopGracefully(), .exited(0))
    }
}
