import CPosix
import Glibc
import XCTest
@testable import Posix

final class SpawnTests: XCTestCase {
    func testShellExitStatusComesBackThroughWaitpid() throws {
        let pid = try spawnShell("exit 7")
        XCTAssertGreaterThan(pid, 0)
        XCTAssertEqual(try waitForExit(pid), .exited(7))
    }

    func testStaticRunTakesTheWholeArgumentVector() throws {
        let pid = try Spawn.run("/bin/sh", arguments: ["sh", "-c", "exit $#", "zero", "one", "two"])
        XCTAssertEqual(try waitForExit(pid), .exited(2))
    }

    func testStdoutRedirectedToAPipeReachesTheParent() throws {
        let (output, status) = try runShell("echo hello; echo from-spawn")
        XCTAssertEqual(output, "hello\nfrom-spawn\n")
        XCTAssertEqual(status, .exited(0))
    }

    func testEnvironmentIsGivenOrInherited() throws {
        XCTAssertEqual(try runShell("echo \"$FKS_GIVEN|$FKS_INHERITED\"", environment: ["FKS_GIVEN=42"]).output, "42|\n")
        setenv("FKS_INHERITED", "yes", 1)
        defer { unsetenv("FKS_INHERITED") }
        XCTAssertEqual(try runShell("echo \"$FKS_GIVEN|$FKS_INHERITED\"").output, "|yes\n")
    }

    func testMissingProgramFailsInTheParentNamingThePath() {
        do {
            _ = try Spawn(path: "/nonexistent/forkscope-program").run()
            XCTFail("spawned a missing program")
        } catch {
            XCTAssertEqual(error.description, "posix_spawn(/nonexistent/forkscope-program): No such file or directory (ENOENT)")
        }
    }

    func testLogFileAndNullDeviceActionsKeepChildOutputOffOurTerminal() throws {
        try withTemporaryDirectory { directory in
            let log = directory + "/worker.log"
            let pid = try spawnShell(
                "echo to-log; echo to-null >&2; exit 0",
                fileActions: [.appendingLog(log, as: .standardOutput), .nullDevice(as: .standardError), .nullDevice(as: .standardInput)]
            )
            XCTAssertEqual(try waitForExit(pid), .exited(0))
            XCTAssertEqual(String(decoding: try FileSystem.readFile(log), as: UTF8.self), "to-log\n")
            XCTAssertEqual(try FileSystem.linkStatus(log).permissions, 0o600)
        }
    }

    func testCloseActionClosesTheChildDescriptor() throws {
        XCTAssertEqual(try runShellWithActions("if [ -e /proc/self/fd/2 ]; then echo open; else echo closed; fi", []).0, "open\n")
        let (output, _) = try runShellWithActions("if [ -e /proc/self/fd/2 ]; then echo open; else echo closed; fi", [.close(.standardError)])
        XCTAssertEqual(output, "closed\n")
    }

    /// A descriptor duplicated onto its own number loses close-on-exec in
    /// the child (glibc 2.29+), so the child can use it under that number.
    func testDuplicateOntoItselfHandsOverACloseOnExecDescriptor() throws {
        let (read, write) = try FileDescriptor.pipe()
        defer { try? read.close() }
        XCTAssertTrue(try write.closesOnExec())
        let pid: pid_t
        do {
            defer { try? write.close() }
            // dash redirects only descriptors 0-9, so write through /proc.
            pid = try spawnShell("echo handed-over >/proc/self/fd/\(write.rawValue)", fileActions: [.duplicate(write, as: write)])
        }
        XCTAssertEqual(try readToEnd(read), "handed-over\n")
        XCTAssertEqual(try waitForExit(pid), .exited(0))
    }

    /// Neither a blocked signal (per thread) nor an ignored one (per process)
    /// is reset by exec; without the reset a worker would never see SIGTERM.
    func testChildrenDoNotInheritBlockedOrIgnoredSignals() throws {
        let previous = try Signals.block([SIGUSR1])
        defer { _ = try? Signals.setMask(previous) }
        try Signals.ignore(SIGUSR2)
        defer { try? Signals.restoreDefault(SIGUSR2) }
        let script = "exec grep -E '^Sig(Blk|Ign):' /proc/self/status"

        let reset = try signalMasks(try runShell(script).output)
        XCTAssertEqual(reset.blocked & bit(SIGUSR1), 0)
        XCTAssertEqual(reset.ignored & bit(SIGUSR2), 0)

        // Control: without the reset both are inherited, so the check above can fail.
        let inherited = try signalMasks(try runShell(script, resetsSignals: false).output)
        XCTAssertNotEqual(inherited.blocked & bit(SIGUSR1), 0)
        XCTAssertNotEqual(inherited.ignored & bit(SIGUSR2), 0)
    }

    func testNewProcessGroupIsLedByTheChild() throws {
        let (holdRead, holdWrite) = try FileDescriptor.pipe()
        defer { try? holdWrite.close() }
        let pid: pid_t
        do {
            defer { try? holdRead.close() }
            pid = try Spawn(
                path: "/bin/sh", arguments: ["sh", "-c", "read line"],
                fileActions: [.duplicate(holdRead, as: .standardInput)], newProcessGroup: true
            ).run()
        }
        // Field 5 of /proc/<pid>/stat is the process group; posix_spawn set it before exec.
        XCTAssertEqual(ProcessControl.withStatLine(of: pid) { ProcessControl.parseStatField(5, $0) }, UInt64(pid))
        XCTAssertNotEqual(getpgrp(), pid)
        try holdWrite.close()
        XCTAssertEqual(try waitForExit(pid), .exited(1)) // read at end of file fails
    }

    private func runShellWithActions(_ script: String, _ actions: [Spawn.FileAction]) throws -> (String, WaitStatus) {
        let (read, write) = try FileDescriptor.pipe()
        defer { try? read.close() }
        let pid: pid_t
        do {
            defer { try? write.close() }
            pid = try spawnShell(script, fileActions: [.duplicate(write, as: .standardOutput)] + actions)
        }
        let output = try readToEnd(read)
        return (output, try waitForExit(pid))
    }

    private func bit(_ signal: CInt) -> UInt64 { 1 << UInt64(signal - 1) }

    /// The SigBlk and SigIgn masks from /proc/<pid>/status lines.
    private func signalMasks(_ status: String) throws -> (blocked: UInt64, ignored: UInt64) {
        var masks: [String: UInt64] = [:]
        for line in status.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2, let value = UInt64(parts[1].trimmingPrefix(while: { $0 == "\t" || $0 == " " }), radix: 16) else { continue }
            masks[String(parts[0])] = value
        }
        let blocked = try XCTUnwrap(masks["SigBlk"], status)
        let ignored = try XCTUnwrap(masks["SigIgn"], status)
        return (blocked, ignored)
    }
}
