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

    /// The start time of `pid` in clock ticks since boot (field 22 of
    /// `/proc/<pid>/stat`): with the pid, it names one process incarnation,
    /// since pids are reused. nil when the process does not exist.
    public static func startTime(of pid: pid_t) -> UInt64? {
        // Stack buffers and no allocation: this also runs right after fork().
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 32) { path -> UInt64? in
            var i = 0
            func put(_ c: UInt8) { path[i] = c; i += 1 }
            for c in "/proc/".utf8 { put(c) }
            var divisor: UInt32 = 1_000_000_000
            var n = UInt32(bitPattern: pid), started = false
            while divisor > 0 {
                let digit = n / divisor
                if digit > 0 || started || divisor == 1 { put(UInt8(48 + digit)); started = true }
                n %= divisor
                divisor /= 10
            }
            for c in "/stat".utf8 { put(c) }
            put(0)
            let fd = path.withMemoryRebound(to: CChar.self) { system_open($0.baseAddress!, O_RDONLY | O_CLOEXEC, 0) }
            guard fd >= 0 else { return nil }
            defer { _ = system_close(fd) }
            return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 1024) { stat -> UInt64? in
                let count = system_read(fd, stat.baseAddress, stat.count)
                guard count > 0 else { return nil }
                return parseStartTime(UnsafeBufferPointer(rebasing: stat[..<count]))
            }
        }
    }

    /// Field 22 of a `/proc/<pid>/stat` line. The command name (field 2) is
    /// in parentheses and may hold spaces and ')': fields count from the last ')'.
    static func parseStartTime(_ line: UnsafeBufferPointer<UInt8>) -> UInt64? {
        guard let close = line.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        var field = 2, value: UInt64 = 0, digits = 0
        for c in line[(close + 1)...] {
            if c == UInt8(ascii: " ") {
                if field == 22 { break }
                field += 1
            } else if field == 22, c >= 48, c <= 57 {
                value = value &* 10 &+ UInt64(c - 48)
                digits += 1
            }
        }
        return field == 22 && digits > 0 ? value : nil
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
        Posix.retryOnInterrupt(retryOnInterrupt) { valueOrErrno(system_poll(buffer.baseAddress!, count, timeoutMilliseconds)) }
    }.get("poll"))
}
