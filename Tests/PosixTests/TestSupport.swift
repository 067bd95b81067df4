import Glibc
import XCTest
@testable import Posix

/// A wait in a test that reached its deadline: the test fails instead of hanging.
struct TestDeadlinePassed: Error, CustomStringConvertible {
    let what: String
    var description: String { "deadline passed waiting for \(what)" }
}

/// How long any single wait in these tests may take before the test fails.
let testDeadlineMilliseconds: UInt64 = 10_000

/// Reads `fd` until end of file; every read waits in `poll` with a deadline.
func readToEnd(_ fd: FileDescriptor, deadline: Deadline = .after(milliseconds: testDeadlineMilliseconds)) throws -> String {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        guard try fd.poll(for: Int16(POLLIN), deadline: deadline) != 0 else { throw TestDeadlinePassed(what: "end of file") }
        let count = try chunk.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try fd.read(into: raw) } }.get()
        if count == 0 { return String(decoding: bytes, as: UTF8.self) }
        bytes += chunk[..<count]
    }
}

/// Reads `fd` one byte at a time up to and without a newline.
func readLine(_ fd: FileDescriptor, deadline: Deadline = .after(milliseconds: testDeadlineMilliseconds)) throws -> String {
    var bytes: [UInt8] = []
    var byte: UInt8 = 0
    while true {
        guard try fd.poll(for: Int16(POLLIN), deadline: deadline) != 0 else { throw TestDeadlinePassed(what: "a line") }
        let count = try withUnsafeMutableBytes(of: &byte) { raw in Result { () throws(SystemError) in try fd.read(into: raw) } }.get()
        if count == 0 || byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
        bytes.append(byte)
    }
}

/// Reaps `pid`, failing (after killing it) if it outlives the deadline.
func waitForExit(_ pid: pid_t, deadline: Deadline = .after(milliseconds: testDeadlineMilliseconds)) throws -> WaitStatus {
    if let status = try ProcessControl.wait(for: pid, deadline: deadline) { return status }
    try? ProcessControl.send(SIGKILL, to: pid)
    _ = try? ProcessControl.wait(for: pid, deadline: .after(milliseconds: testDeadlineMilliseconds))
    throw TestDeadlinePassed(what: "process \(pid) to exit")
}

/// Runs `script` with /bin/sh -c.
func spawnShell(
    _ script: String, fileActions: [Spawn.FileAction] = [], environment: [String]? = nil, resetsSignals: Bool = true
) throws -> pid_t {
    try Spawn(
        path: "/bin/sh", arguments: ["sh", "-c", script], environment: environment,
        fileActions: fileActions, resetsSignals: resetsSignals
    ).run()
}

/// Runs `script` with stdout on a pipe; returns its output and exit status.
func runShell(_ script: String, environment: [String]? = nil, resetsSignals: Bool = true) throws -> (output: String, status: WaitStatus) {
    let (read, write) = try FileDescriptor.pipe()
    defer { try? read.close() }
    let pid: pid_t
    do {
        defer { try? write.close() }
        pid = try spawnShell(
            script, fileActions: [.duplicate(write, as: .standardOutput)],
            environment: environment, resetsSignals: resetsSignals
        )
    }
    let output = try readToEnd(read)
    return (output, try waitForExit(pid))
}

/// A fresh directory under /tmp (short, so Unix socket paths fit), removed afterwards.
func withTemporaryDirectory<R>(_ body: (String) throws -> R) throws -> R {
    let directory = try FileSystem.makeTemporaryDirectory(prefix: "fks-test-")
    defer { try? FileSystem.removeTree(directory) }
    return try body(directory)
}

/// Writes all of `text` to `fd`.
func write(_ text: String, to fd: FileDescriptor) throws {
    try fd.writeAll(text)
}
