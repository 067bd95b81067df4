import Dashboard
import Glibc
import Posix
import Synchronization

/// Nothing left running: makes this process a child subreaper (orphans of
/// its descendants are re-parented to it, not to init), starts processes
/// with `posix_spawn` (never fork(): this process may run Dispatch, curses,
/// threads), remembers each by (pid, start time), and on `endAll` ends every
/// descendant, signalling a pid only while it still names the same
/// process.
///
/// The demo wiring: `let reaper = try DescendantReaper()`, `reaper.spawn(…)`
/// for the agent and the server, run the dashboard with
/// `options.reaper = reaper`, then `reaper.endAll()` (the dashboard also
/// calls it when it quits).
public final class DescendantReaper: Sendable {
    /// What `endAll` did.
    public struct Report: Equatable, Sendable {
        /// Processes that ended after SIGTERM.
        public var terminated: [ProcessKey] = []
        /// Processes that needed SIGKILL after the grace period.
        public var killed: [ProcessKey] = []
        /// Processes still alive at the end (e.g. in another uid: EPERM).
        public var survivors: [ProcessKey] = []
    }

    private struct State {
        var tracked: [ProcessKey] = []
        var statuses: [ProcessKey: WaitStatus] = [:]
    }

    private let state = Mutex(State())
    private let me = getpid()

    /// Makes this process a child subreaper. The corresponding C function
    /// is `prctl(PR_SET_CHILD_SUBREAPER)`.
    public init() throws(SystemError) {
        try ProcessControl.becomeChildSubreaper()
    }

    /// Starts `spawn` and tracks it; returns its (pid, start time).
    @discardableResult
    public func spawn(_ spawn: Spawn) throws(SystemError) -> ProcessKey {
        let pid = try spawn.run()
        return track(pid)
    }

    /// Tracks a child started elsewhere (by `posix_spawn`).
    @discardableResult
    public func track(_ pid: pid_t) -> ProcessKey {
        let key = ProcessKey(pid: pid, start: ProcessControl.startTime(of: pid) ?? 0)
        state.withLock { $0.tracked.append(key) }
        return key
    }

    /// The processes started or tracked, in order.
    public var tracked: [ProcessKey] { state.withLock { $0.tracked } }

    /// How a tracked process ended, once reaped.
    public func status(of key: ProcessKey) -> WaitStatus? { state.withLock { $0.statuses[key] } }

    /// Reaps every child that has ended (tracked ones and orphans
    /// re-parented here), without waiting; returns them. Only pids that are
    /// our children are waited for, one by one, so statuses other code of
    /// this process waits for are not stolen.
    @discardableResult
    public func reap() -> [(ProcessKey, WaitStatus)] {
        var candidates = Set(state.withLock { $0.tracked.filter { $0.pid > 0 }.map(\.pid) })
        if let children = try? ProcessControl.children(of: me) { candidates.formUnion(children) }
        var reaped: [(ProcessKey, WaitStatus)] = []
        for pid in candidates.sorted() {
            let start = ProcessControl.startTime(of: pid) ?? 0
            guard let (_, status) = try? ProcessControl.wait(for: pid, options: WNOHANG) else { continue }
            if case .stopped = status { continue }
            let key = state.withLock { state -> ProcessKey in
                let key = state.tracked.first { $0.pid == pid && ($0.start == start || start == 0) } ?? ProcessKey(pid: pid, start: start)
                state.statuses[key] = status
                return key
            }
            reaped.append((key, status))
        }
        return reaped
    }

    /// Ends every descendant: SIGTERM to each, then after `grace` seconds
    /// SIGKILL to what is left; reaps them all. Repeats the scan, since a
    /// descendant may fork while it is being ended. A pid is signalled
    /// only while its start time is the one first seen.
    @discardableResult
    public func endAll(grace: Double = 2, within limit: Double = 10) -> Report {
        var report = Report()
        var seen: [pid_t: UInt64] = [:]
        var termed = Set<ProcessKey>()
        var killed = Set<ProcessKey>()
        let graceDeadline = Deadline(seconds: grace)
        let deadline = Deadline(seconds: limit)
        func alive() -> [ProcessKey] {
            var keys: [ProcessKey] = []
            var pids = Set((try? ProcessControl.descendants(of: me)) ?? [])
            for key in state.withLock({ $0.tracked }) where ProcessControl.isAlive(pid: key.pid, startTime: key.start) { pids.insert(key.pid) }
            for pid in pids.sorted() {
                guard let start = ProcessControl.startTime(of: pid) else { continue }
                if let first = seen[pid], first != start { continue }  // reused since: not ours
                seen[pid] = start
                keys.append(ProcessKey(pid: pid, start: start))
            }
            return keys
        }
        while true {
            reap()
            let remaining = alive().filter { !isZombie($0.pid) }
            if remaining.isEmpty { break }
            for key in remaining {
                guard ProcessControl.isAlive(pid: key.pid, startTime: key.start) else { continue }
                if graceDeadline.hasPassed || deadline.hasPassed {
                    if killed.insert(key).inserted { try? ProcessControl.send(SIGKILL, to: key.pid) }
                } else if termed.insert(key).inserted {
                    try? ProcessControl.send(SIGTERM, to: key.pid)
                    // A stopped process only acts on SIGTERM once continued.
                    try? ProcessControl.send(SIGCONT, to: key.pid)
                }
            }
            if deadline.hasPassed {
                report.survivors = remaining
                break
            }
            var none: [pollfd] = []
            _ = try? poll(&none, timeoutMilliseconds: 10)
        }
        reap()
        report.killed = killed.sorted()
        report.terminated = termed.subtracting(killed).sorted()
        return report
    }

    /// A zombie is already dead: it only waits to be reaped (and is, when it
    /// is our child; one that is not is its parent's business).
    private func isZombie(_ pid: pid_t) -> Bool {
        guard let bytes = try? FileSystem.readFile("/proc/\(pid)/stat", limit: 1024),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count else { return false }
        return bytes[close + 2] == UInt8(ascii: "Z") || bytes[close + 2] == UInt8(ascii: "X")
    }
}
