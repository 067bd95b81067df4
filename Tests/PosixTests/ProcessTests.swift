import CPosix
import Glibc
import XCTest
@testable import Posix

final class ProcessTests: XCTestCase {
    func testStartTimeOfThisProcessIsKnownAndStable() throws {
        let first = try XCTUnwrap(ProcessControl.startTime(of: getpid()))
        XCTAssertEqual(ProcessControl.startTime(of: getpid()), first)
        XCTAssertTrue(ProcessControl.isAlive(pid: getpid(), startTime: first))
        XCTAssertFalse(ProcessControl.isAlive(pid: getpid(), startTime: first + 1))
    }

    func testStartTimeIsNilForAPidThatCannotExist() throws {
        // pid_max itself is never handed out: pids run from 1 to pid_max - 1.
        let text = String(decoding: try FileSystem.readFile("/proc/sys/kernel/pid_max"), as: UTF8.self)
        let pidMax = try XCTUnwrap(pid_t(text.split(separator: "\n").first ?? ""))
        XCTAssertNil(ProcessControl.startTime(of: pidMax))
        XCTAssertNil(ProcessControl.startTime(of: 0))
        XCTAssertNil(ProcessControl.startTime(of: -1))
        XCTAssertNil(ProcessControl.parentID(of: pidMax))
        XCTAssertFalse(ProcessControl.exists(pidMax))
    }

    func testStatFieldsCountFromTheLastParenthesisOfTheCommandName() {
        // Fields 3 onwards; field 4 (ppid) = 4321 and field 22 (start time) = 987654.
        var fields = ["S"]
        for number in 4...52 { fields.append(number == 22 ? "987654" : number == 4 ? "4321" : "\(number * 10)") }
        // The kernel writes "(" + name + ")"; a name holds up to 15 bytes, any of them ")", "(" or " ".
        for name in ["sh", "a) (b c", "x) (y) ) (", " ", "", ") 5 6 7 8 9 ("] {
            let line = Array(("1234 (\(name)) " + fields.joined(separator: " ") + "\n").utf8)
            line.withUnsafeBufferPointer { buffer in
                XCTAssertEqual(ProcessControl.parseStartTime(buffer), 987654, name)
                XCTAssertEqual(ProcessControl.parseStatField(4, buffer), 4321, name)
                XCTAssertEqual(ProcessControl.parseStatField(52, buffer), 520, name)
                XCTAssertNil(ProcessControl.parseStatField(53, buffer), name)
            }
        }
        Array("1234 no parenthesis S 1".utf8).withUnsafeBufferPointer { XCTAssertNil(ProcessControl.parseStartTime($0)) }
    }

    /// A real process whose command name holds ") (" and spaces: exec
    /// through a symlink with that name, since the kernel names a process
    /// after the file it executed.
    func testStartTimeAndParentOfAProcessNamedWithParenthesesAndSpaces() throws {
        try withTemporaryDirectory { directory in
            let program = directory + "/a) (b c"
            try FileSystem.createSymbolicLink(at: program, to: "/bin/sh")
            let (holdRead, holdWrite) = try FileDescriptor.pipe()
            defer { try? holdWrite.close() }
            let (outRead, outWrite) = try FileDescriptor.pipe()
            defer { try? outRead.close() }
            let pid: pid_t
            do {
                defer { try? holdRead.close(); try? outWrite.close() }
                pid = try Spawn(
                    path: program, arguments: ["sh", "-c", "echo ready; read line"],
                    fileActions: [.duplicate(holdRead, as: .standardInput), .duplicate(outWrite, as: .standardOutput)]
                ).run()
            }
            // posix_spawn returns once the exec has begun, before the kernel
            // renames the process: wait until the shell itself speaks.
            XCTAssertEqual(try readLine(outRead), "ready")
            let comm = String(decoding: try FileSystem.readFile("/proc/\(pid)/comm"), as: UTF8.self)
            XCTAssertEqual(comm, "a) (b c\n")
            let started = try XCTUnwrap(ProcessControl.startTime(of: pid))
            XCTAssertGreaterThanOrEqual(started, try XCTUnwrap(ProcessControl.startTime(of: getpid())))
            XCTAssertEqual(ProcessControl.parentID(of: pid), getpid())
            XCTAssertTrue(try ProcessControl.children(of: getpid()).contains(pid))
            try holdWrite.close()
            XCTAssertEqual(try waitForExit(pid), .exited(1))
            XCTAssertNil(ProcessControl.startTime(of: pid)) // reaped: the pid names nothing now
        }
    }

    func testWaitWithADeadlineLeavesARunningChildAlone() throws {
        let (holdRead, holdWrite) = try FileDescriptor.pipe()
        defer { try? holdWrite.close() }
        let pid: pid_t
        do {
            defer { try? holdRead.close() }
            pid = try spawnShell("read line; exit 4", fileActions: [.duplicate(holdRead, as: .standardInput)])
        }
        XCTAssertNil(try ProcessControl.wait(for: pid, deadline: .after(milliseconds: 50)))
        XCTAssertTrue(ProcessControl.exists(pid))
        try holdWrite.writeAll("go\n")
        XCTAssertEqual(try waitForExit(pid), .exited(4))
    }

    /// -pgid waits for any child in a group (no pidfd for that): the
    /// child leads its own group, so no other test's child is reaped here.
    func testWaitForAnyChildOfAGroupWithADeadline() throws {
        let pid = try Spawn.run("/bin/sh", arguments: ["sh", "-c", "exit 5"], newProcessGroup: true)
        let status = try ProcessControl.wait(for: -pid, deadline: .after(milliseconds: testDeadlineMilliseconds))
        XCTAssertEqual(status, .exited(5))
        XCTAssertFalse(ProcessControl.exists(pid))
    }

    func testCurrentExecutablePathIsAnAbsolutePathToAFile() throws {
        let path = try ProcessControl.currentExecutablePath()
        XCTAssertTrue(path.hasPrefix("/"), path)
        XCTAssertTrue(try FileSystem.linkStatus(path).isRegularFile, path)
    }

    /// child (sh) → grandchild (sh): both found as descendants, both killed,
    /// the grandchild although it is not our child.
    func testDescendantsIncludeGrandchildrenAndKillTreeEndsThemAll() throws {
        let (holdRead, holdWrite) = try FileDescriptor.pipe()
        defer { try? holdWrite.close() }
        let (outRead, outWrite) = try FileDescriptor.pipe()
        defer { try? outRead.close() }
        let child: pid_t
        do {
            defer { try? holdRead.close(); try? outWrite.close() }
            // fd 9 keeps the hold pipe for the background job, whose stdin sh points at /dev/null.
            child = try spawnShell(
                "exec 9<&0; sh -c 'read line <&9' & echo $!; read line",
                fileActions: [.duplicate(holdRead, as: .standardInput), .duplicate(outWrite, as: .standardOutput)]
            )
        }
        var killed = false
        defer { if !killed { _ = try? ProcessControl.killTree(root: child, signal: SIGKILL); _ = try? waitForExit(child) } }

        let grandchild = try XCTUnwrap(pid_t(try readLine(outRead)))
        let grandchildExited = try ProcessControl.openDescriptor(for: grandchild)
        defer { try? grandchildExited.close() }
        XCTAssertEqual(try ProcessControl.children(of: child), [grandchild])
        XCTAssertEqual(try ProcessControl.descendants(of: child), [grandchild])
        let ours = try ProcessControl.descendants(of: getpid())
        XCTAssertLessThan(try XCTUnwrap(ours.firstIndex(of: child)), try XCTUnwrap(ours.firstIndex(of: grandchild)), "parents come first")

        let signalled = try ProcessControl.killTree(root: child, signal: SIGKILL)
        killed = true
        XCTAssertEqual(signalled, [child, grandchild])
        XCTAssertEqual(try waitForExit(child), .signaled(SIGKILL))
        XCTAssertNotEqual(
            try grandchildExited.poll(for: Int16(POLLIN), deadline: .after(milliseconds: testDeadlineMilliseconds)), 0,
            "the grandchild outlived killTree"
        )
    }

    func testKillTreeNeverSignalsThisProcess() throws {
        XCTAssertFalse(try ProcessControl.killTree(root: getpid(), signal: 0).contains(getpid()))
    }

    func testDescendantsWalkParentsFirstAndSurviveACycle() {
        let parents: [pid_t: pid_t] = [10: 1, 11: 10, 12: 10, 13: 11, 20: 1, 30: 31, 31: 30, 1: 0]
        XCTAssertEqual(ProcessControl.descendants(of: 10, in: parents), [11, 12, 13])
        XCTAssertEqual(ProcessControl.descendants(of: 13, in: parents), [])
        XCTAssertEqual(ProcessControl.descendants(of: 30, in: parents), [31])
    }
}
