import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// `forkscope ls`, `logs` and `attach` without a terminal, run as the real
/// binary with sessions under a private `XDG_RUNTIME_DIR`.
final class SessionCommandsTests: XCTestCase {
    var scratch: ScratchSession!
    var root: String { scratch.root + "/forkscope" }
    var environment: [String] {
        var env = Environment.current
        env["XDG_RUNTIME_DIR"] = scratch.root
        return env.map { "\($0.key)=\($0.value)" }
    }

    override func setUpWithError() throws {
        scratch = try ScratchSession()
    }

    func forkscope(_ arguments: [String]) throws -> (status: WaitStatus, output: String, errors: String) {
        let process = try SpawnedProcess(executable: "forkscope", arguments, environment: environment)
        try process.closeInput()
        let output = try process.readToEnd(within: 30)
        let errors = try process.readErrors()
        return (try process.wait(within: 30), output, errors)
    }

    func demoSession(name: String, workers: Int = 2) throws -> SessionDirectory {
        let session = try SessionDirectory.create(name: name, root: root)
        _ = try Ring.create(at: session.ringPath, configuration: RingConfiguration(laneCount: 8, slotsPerLane: 64, stringBytes: 4096))
        let host = try SpawnedProcess(executable: "forkscope", ["demo-host", session.ringPath, String(workers)])
        XCTAssertEqual(try host.wait(within: 30), .exited(0))
        return session
    }

    func testLsListsSessionsWithTheirProcessesAndCleanRemovesStaleOnes() throws {
        let old = try demoSession(name: "1000-1")
        let young = try demoSession(name: "\(Clock.realtimeNanoseconds() / 1_000_000)-2")
        var run = try forkscope(["ls"])
        XCTAssertEqual(run.status, .exited(0), run.errors)
        let lines = run.output.split(separator: "\n")
        XCTAssertTrue(lines[0].hasPrefix(young.path + "  ended  ring of 8 lanes × 64 slots"), run.output)
        XCTAssertTrue(run.output.contains(old.path + "  stale  "), run.output)
        XCTAssertTrue(lines[1].contains("master") && lines[1].contains("demo master"), run.output)
        XCTAssertTrue(lines[2].contains("worker") && lines[2].contains("exit 0") && lines[2].contains("demo worker 0"), run.output)
        run = try forkscope(["ls", "--clean", "--quiet"])
        XCTAssertEqual(run.status, .exited(0), run.errors)
        XCTAssertEqual(run.output.split(separator: "\n").first.map(String.init), "removed \(old.path)")
        XCTAssertFalse(FileSystem.exists(old.path))
        XCTAssertTrue(FileSystem.exists(young.path))
        XCTAssertEqual(run.output.split(separator: "\n").count, 2, run.output)
    }

    func testLogsListsFilesAndPrintsTheEndOfOne() throws {
        let session = try demoSession(name: "\(Clock.realtimeNanoseconds() / 1_000_000)-1")
        let fd = try FileDescriptor.open(session.logPath("agent"), O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o600)
        try fd.writeAll((1...30).map { "agent line \($0)\n" }.joined())
        try fd.close()
        var run = try forkscope(["logs"])
        XCTAssertEqual(run.status, .exited(0), run.errors)
        XCTAssertTrue(run.output.hasPrefix("agent.log"), run.output)
        run = try forkscope(["logs", "agent", "-n", "3"])
        XCTAssertEqual(run.output, "agent line 28\nagent line 29\nagent line 30\n")
        run = try forkscope(["logs", "nothing-like-it"])
        XCTAssertEqual(run.status, .exited(1))
        XCTAssertTrue(run.errors.contains("no log file for nothing-like-it"), run.errors)
    }

    func testAttachWithoutATerminalPrintsTheSummary() throws {
        let session = try demoSession(name: "\(Clock.realtimeNanoseconds() / 1_000_000)-1", workers: 3)
        var run = try forkscope(["attach"])
        XCTAssertEqual(run.status, .exited(0), run.errors)
        XCTAssertTrue(run.output.hasPrefix("forkscope: \(session.path) ("), run.output)
        XCTAssertTrue(run.output.contains("4 processes"), run.output)
        XCTAssertTrue(run.output.contains("demo worker 2"), run.output)
        run = try forkscope(["attach", "--headless", "--duration", "0.3", session.ringPath])
        XCTAssertEqual(run.status, .exited(0), run.errors)
        XCTAssertTrue(run.output.contains("demo worker 2"), run.output)
        run = try forkscope(["attach", scratch.root + "/no-such-ring"])
        XCTAssertEqual(run.status, .exited(2))
        XCTAssertTrue(run.errors.hasPrefix("forkscope: "), run.errors)
    }
}
