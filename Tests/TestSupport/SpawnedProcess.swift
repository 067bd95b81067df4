import Glibc
import Posix
import XCTest


/// A spawned process (a built executable of this package) with pipes to
/// its stdin and from its stdout and stderr. Every wait has a deadline;
/// when one passes the process is SIGKILLed and the test fails, so a hung
/// process is found fast.
public final class SpawnedProcess {
    public let pid: pid_t
    private var input: FileDescriptor?
    private let output: FileDescriptor
    private let errors: FileDescriptor
    private var buffered: [UInt8] = []
    private var reaped = false

    /// The path of `name`, an executable product of this package: test
    /// bundles and executables are built side by side.
    public static func builtExecutable(_ name: String) -> String {
        let me = (try? ProcessControl.currentExecutablePath()) ?? ""
        return String(me[..<(me.lastIndex(of: "/") ?? me.endIndex)]) + "/" + name
    }

    /// Starts `forkscope-testhost` with `arguments`.
    public convenience init(_ arguments: [String]) throws {
        try self.init(executable: "forkscope-testhost", arguments)
    }

    /// Starts the built executable `executable` with `arguments`.
    public convenience init(executable: String, _ arguments: [String], environment: [String]? = nil) throws {
        try self.init(path: SpawnedProcess.builtExecutable(executable), arguments, environment: environment)
    }

    /// Starts the program at `path` (argv[0] is its last path component).
    public init(path: String, _ arguments: [String], environment: [String]? = nil) throws {
        let stdin = try FileDescriptor.pipe()
        let stdout = try FileDescriptor.pipe()
        let stderr = try FileDescriptor.pipe()
        let name = String(path[(path.lastIndex(of: "/").map { path.index(after: $0) } ?? path.startIndex)...])
        pid = try Spawn.run(
            path, arguments: [name] + arguments, environment: environment,
            fileActions: [.duplicate(stdin.read, as: .standardInput), .duplicate(stdout.write, as: .standardOutput),
                          .duplicate(stderr.write, as: .standardError)]
        )
        for end in [stdin.read, stdout.write, stderr.write] { try end.close() }
        input = stdin.write
        output = stdout.read
        errors = stderr.read
    }

    /// How the process ended, or nil while it still runs (no waiting).
    public func exitStatusIfExited() throws -> WaitStatus? {
        guard !reaped, let (_, status) = try ProcessControl.wait(for: pid, options: WNOHANG) else { return nil }
        reaped = true
        return status
    }

    deinit {
        if !reaped {
            try? ProcessControl.send(SIGKILL, to: pid)
            _ = try? ProcessControl.wait(for: pid)
        }
        try? input?.close()
        try? output.close()
        try? errors.close()
    }

    public func send(_ text: String) throws { try input?.writeAll(text) }

    public func closeInput() throws {
        try input?.close()
        input = nil
    }

    /// The next line of output, waiting at most `seconds`.
    public func readLine(within seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
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

    /// Everything the process writes to stdout until it closes it (after
    /// what `readLine` consumed), waiting at most `seconds`.
    public func readToEnd(within seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        String(decoding: buffered, as: UTF8.self) + (try drain(output, within: seconds, file: file, line: line))
    }

    /// Everything the process writes to stderr until it closes it.
    public func readErrors(within seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try drain(errors, within: seconds, file: file, line: line)
    }

    private func drain(_ fd: FileDescriptor, within seconds: Double, file: StaticString, line: UInt) throws -> String {
        let deadline = Deadline(seconds: seconds)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            var fds = [pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)]
            guard try poll(&fds, timeoutMilliseconds: Int32(deadline.remainingMilliseconds)) > 0 else {
                kill()
                XCTFail("process \(pid) did not close its output within \(seconds)s", file: file, line: line)
                throw SystemError("poll", .timedOut)
            }
            let n = try chunk.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try fd.read(into: raw) } }.get()
            if n == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[..<n]
        }
    }

    /// Waits for the host to exit or stop (WUNTRACED), at most `seconds`.
    @discardableResult
    public func wait(untraced: Bool = false, within seconds: Double = 20, file: StaticString = #filePath, line: UInt = #line) throws -> WaitStatus {
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

    public func kill() {
        try? ProcessControl.send(SIGKILL, to: pid)
        _ = try? ProcessControl.wait(for: pid)
        reaped = true
    }
}
