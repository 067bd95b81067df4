import CPosix
import Glibc

/// How a child process ended (or paused), from `waitpid`.
public enum WaitStatus: Equatable, Sendable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    case stopped(Int32)

    init(raw: CInt) {
        if fks_wifexited(raw) { self = .exited(fks_wexitstatus(raw)) }
        else if fks_wifsignaled(raw) { self = .signaled(fks_wtermsig(raw)) }
        else { self = .stopped(fks_wstopsig(raw)) }
    }

    public var description: String {
        switch self {
        case .exited(let code): "exited with status \(code)"
        case .signaled(let sig): "killed by signal \(sig)"
        case .stopped(let sig): "stopped by signal \(sig)"
        }
    }
}

public enum ProcessControl {
    /// Sends `signal` to `pid` (0 probes existence).
    /// The corresponding C function is `kill`.
    public static func send(_ signal: CInt, to pid: pid_t) throws(SystemError) {
        try nothingOrErrno(system_kill(pid, signal)).get("kill(\(pid), \(signal))")
    }

    /// Whether a process with this pid exists (it may be a zombie).
    public static func exists(_ pid: pid_t) -> Bool {
        guard pid > 0 else { return false }
        if system_kill(pid, 0) == 0 { return true }
        return Errno.current != .noSuchProcess
    }

    /// Waits for a child; nil with `WNOHANG` when none changed state.
    /// The corresponding C function is `waitpid`.
    public static func wait(
        for pid: pid_t, options: CInt = 0, retryOnInterrupt: Bool = true
    ) throws(SystemError) -> (pid: pid_t, status: WaitStatus)? {
        var raw: CInt = 0
        let result = try Posix.retryOnInterrupt(retryOnInterrupt) { valueOrErrno(system_waitpid(pid, &raw, options)) }
            .get("waitpid(\(pid))")
        return result == 0 ? nil : (result, WaitStatus(raw: raw))
    }

    /// Waits for the child `pid` to end, at most until `deadline`; nil when
    /// the deadline passed first (the child is left running and unreaped).
    /// Sleeps in `poll` on a pidfd, so the wait ends as soon as the child
    /// does; for `pid` 0 or -1 (any child of a group), or on kernels
    /// without pidfds, it re-checks every 5 ms instead.
    /// The corresponding C functions are `pidfd_open`, `poll` and `waitpid`.
    public static func wait(for pid: pid_t, deadline: Deadline) throws(SystemError) -> WaitStatus? {
        if let (_, status) = try wait(for: pid, options: WNOHANG) { return status }
        var descriptor: FileDescriptor?
        if pid > 0 {
            do {
                descriptor = try openDescriptor(for: pid)
            } catch where error.errno == .notImplemented {
                descriptor = nil // kernels before 5.3
            }
        }
        defer { try? descriptor?.close() }
        while !deadline.hasPassed {
            if let descriptor {
                // Readable once the child is a zombie; the loop re-checks
                // with WNOHANG, so an early wake-up only costs one pass.
                _ = try descriptor.poll(for: Int16(POLLIN), deadline: deadline)
            } else {
                var none: [pollfd] = []
                _ = try poll(&none, deadline: min(deadline, .after(milliseconds: 5)))
            }
            if let (_, status) = try wait(for: pid, options: WNOHANG) { return status }
        }
        return nil
    }

    /// A descriptor that refers to the process `pid` itself, not to a pid
    /// number that may be reused; it polls readable once the process has
    /// exited. Closes on exec. The corresponding C function is `pidfd_open`.
    public static func openDescriptor(for pid: pid_t) throws(SystemError) -> FileDescriptor {
        let fd = try valueOrErrno(system_pidfd_open(pid, 0)).get("pidfd_open(\(pid))")
        return FileDescriptor(rawValue: fd)
    }

    /// The start time of `pid` in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`): with the pid, it names one process incarnation,
    /// since pids are reused. nil when the process does not exist.
    public static func startTime(of pid: pid_t) -> UInt64? {
        withStatLine(of: pid) { parseStartTime($0) }
    }

    /// The parent of `pid` (field 4 of `/proc/<pid>/stat`); nil when the
    /// process does not exist.
    public static func parentID(of pid: pid_t) -> pid_t? {
        withStatLine(of: pid) { line in parseStatField(4, line).flatMap { pid_t(exactly: $0) } }
    }

    /// CPU time `pid` has used, user plus system, in clock ticks (fields 14
    /// and 15 of `/proc/<pid>/stat`); nil when the process does not exist.
    public static func cpuTicks(of pid: pid_t) -> UInt64? {
        withStatLine(of: pid) { line in
            guard let user = parseStatField(14, line), let system = parseStatField(15, line) else { return nil }
            return user + system
        }
    }

    /// Calls `body` with the bytes of `/proc/<pid>/stat`; nil when the
    /// process does not exist.
    static func withStatLine<R>(of pid: pid_t, _ body: (UnsafeBufferPointer<UInt8>) -> R?) -> R? {
        guard pid > 0 else { return nil }
        // Stack buffers and no allocation: this also runs right after fork().
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { path -> R? in
            var i = 0
            func put(_ c: UInt8) { path[i] = c; i += 1 }
            for c in "/proc/".utf8 { put(c) }
            var divisor: UInt32 = 1_000_000_000
            var n = UInt32(pid), started = false
            while divisor > 0 {
                let digit = n / divisor
                if digit > 0 || started || divisor == 1 { put(UInt8(48 + digit)); started = true }
                n %= divisor
                divisor /= 10
            }
            for c in "/stat".utf8 { put(c) }
            put(0)
            let fd = path.withMemoryRebound(to: CChar.self) { cPath in
                Posix.retryOnInterrupt(true) { valueOrErrno(system_open(cPath.baseAddress!, O_RDONLY | O_CLOEXEC, 0)) }
            }
            guard case .success(let fd) = fd else { return nil }
            defer { _ = system_close(fd) }
            // The line is one read: the command name is at most 15 bytes, so
            // it stays far below 1024 bytes.
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { stat -> R? in
                let count = Posix.retryOnInterrupt(true) { valueOrErrno(system_read(fd, stat.baseAddress, stat.count)) }
                guard case .success(let count) = count, count > 0 else { return nil }
                return body(UnsafeBufferPointer(rebasing: stat[..<count]))
            }
        }
    }

    /// Field 22 of a `/proc/<pid>/stat` line.
    static func parseStartTime(_ line: UnsafeBufferPointer<UInt8>) -> UInt64? {
        parseStatField(22, line)
    }

    /// Numeric field `number` (3 or more) of a `/proc/<pid>/stat` line. The
    /// command name (field 2) is in parentheses and may hold spaces and ')':
    /// fields count from the last ')'.
    static func parseStatField(_ number: Int, _ line: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard number >= 3, let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 2, value: UInt64 = 0, digits = 0
        for c in line[(close + 1)...] {
            if c == UInt8(ascii: " ") {
                if field == number { break }
                field += 1
            } else if field == number, c >= 48, c <= 57 {
                value = value &* 10 &+ UInt64(c - 48)
                digits += 1
            }
        }
        return field == number && digits > 0 ? value : nil
    }

    /// Whether the incarnation (pid, start time) is still running.
    public static func isAlive(pid: pid_t, startTime: UInt64) -> Bool {
        guard let now = self.startTime(of: pid) else { return false }
        return startTime == 0 || now == startTime
    }

    /// Makes this process the reaper of its orphaned descendants, so the
    /// TUI, scenarios and tests can end every process they caused.
    public static func becomeChildSubreaper() throws(SystemError) {
        try nothingOrErrno(fks_set_child_subreaper()).get("prctl(PR_SET_CHILD_SUBREAPER)")
    }
}

/// The one clock of the project: monotonic nanoseconds (plus the realtime
/// clock, read once beside it to anchor a ring's timeline to the wall).
public enum Clock {
    @inline(__always)
    public static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }

    public static func realtimeNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}

/// Waits for events on descriptors. The corresponding C function is `poll`.
public func poll(_ fds: inout [pollfd], timeoutMilliseconds: Int32, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
    let count = nfds_t(fds.count)
    return Int(try fds.withUnsafeMutableBufferPointer { buffer in
        // baseAddress may be nil for an empty array: poll accepts that with a count of 0.
        Posix.retryOnInterrupt(retryOnInterrupt) { valueOrErrno(system_poll(buffer.baseAddress, count, timeoutMilliseconds)) }
    }.get("poll"))
}

/// Waits for events on descriptors until `deadline`; 0 when it passed.
/// A retry after `EINTR` waits only for the time that is left.
/// The corresponding C function is `poll`.
public func poll(_ fds: inout [pollfd], deadline: Deadline, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
    let count = nfds_t(fds.count)
    return Int(try fds.withUnsafeMutableBufferPointer { buffer in
        Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_poll(buffer.baseAddress, count, deadline.remainingMilliseconds))
        }
    }.get("poll"))
}
