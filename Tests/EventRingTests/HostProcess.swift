import Glibc
import Posix
import XCTest

/// A spawned `forkscope-testhost` with a pipe to its stdin and from its
/// stdout. Every wait has a deadline; when one passes the host is
/// SIGKILLed and the test fails, so a hung host is found fast.
final class HostProcess {
    let pid: pid_t
    private var input: FileDescriptor?
    private let output: FileDescriptor
    private var buffered: [UInt8] = []
    private var reaped = false

    static var executable: String {
        // The test bundle and the test host are built side by side.
        let me = (try? ProcessControl.currentExecutablePath()) ?? ""
        return String(me[..<(me.lastIndex(of: "/") ?? me.endIndex)]) + "/forkscope-testhost"
    }

    init(_ arguments: [String]) throws {
        let stdin = try FileDescriptor.pipe()
        let stdout = try FileDescriptor.pipe()
        pid = try Spawn.run(
            HostProcess.executable, arguments: ["forkscope-testhost"] + arguments,
            fileActions: [.duplicate(stdin.read, as: .standardInput), .duplicate(stdout.write, as: .standardOutput)]
        )
        try stdin.read.close()
        try stdout.write.close()
        input = stdin.write
        output = stdout.read
    }

    deinit {
        if !reaped {
            try? ProcessControl.send(SIGKILL, to: pid)
            _ = try? ProcessControl.wait(for: pid)
        }
        try? input?.close()
        try? output.close()
    }

    func send(_ text: String) throws { try input?.writeAll(text) }

    func closeInput() throws {
        try input?.close()
        input = nil
    }

    /// The next line of output, waiting at most `seconds`.
    func readLine(within seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let deadline = Deadline(seconds: seconds)
        while true {
            if let newline = buffered.firstIndex(of: 10) {
                let text = String(decoding: buffered[..<newline], as: UTF8.self)
                buffered.removeSubrange(...newline)
                return text
            }
            var fds = [pollfd(fd: output.rawValue, events: Int16(POLLIN), revents: 0)]
            guard try poll(&fds, timeoutMilliseconds: Int32(deadline.remainingMilliseconds)) > 0 else {
                kill()
                XCTFail("host \(pid) printed no line within \(seconds)s", file: file, line: line)
                throw SystemError("poll", .timedOut)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let n = try chunk.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try output.read(into: raw) } }.get()
            if n == 0 {
                throw SystemError("read", path: "host \(pid) stdout (closed before a full line)", .brokenPipe)
            }
            buffered += chunk[..<n]
        }
    }

    /// Waits for the host to exit or stop (WUNTRACED), at most `seconds`.
    @discardableResult
    func wait(untraced: Bool = false, within seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> WaitStatus {
        let deadline = Deadline(seconds: seconds)
        while true {
            if let (_, status) = try ProcessControl.wait(for: pid, options: WNOHANG | (untraced ? WUNTRACED : 0)) {
                if case .stopped = status {} else { reaped = true }
                return status
            }
            guard deadline.remainingMilliseconds > 0 else {
                kill()
                XCTFail("host \(pid) did not \(untraced ? "stop" : "exit") within \(seconds)s", file: file, line: line)
                throw SystemError("waitpid", .timedOut)
            }
            // Bounded wait for the next state change: poll on nothing, 5 ms.
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 5)
        }
    }

    func kill() {
        try? ProcessControl.send(SIGKILL, to: pid)
        _ = try? ProcessControl.wait(for: pid)
        reaped = true
    }
}
