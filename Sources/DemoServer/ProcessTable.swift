import EventRing
import ForkSafety
import Glibc
import Posix

/// The processes of the server's own tree, by (pid, start time): the only
/// targets control commands accept. Written by the master loop, read by the
/// control thread.
public final class ProcessTable: @unchecked Sendable {
    public struct Entry: Equatable, Sendable {
        public let pid: pid_t
        public let startTime: UInt64
        public let role: ProcessRole
        public let index: Int
    }

    private let lock = Lock()
    private var entries: [pid_t: Entry] = [:]

    public init() {}

    public func add(pid: pid_t, role: ProcessRole, index: Int) {
        let start = ProcessControl.startTime(of: pid) ?? 0
        lock.withLock { entries[pid] = Entry(pid: pid, startTime: start, role: role, index: index) }
    }

    public func remove(pid: pid_t) { _ = lock.withLock { entries.removeValue(forKey: pid) } }

    public var all: [Entry] { lock.withLock { entries.values.sorted { $0.pid < $1.pid } } }

    /// The entry for (pid, start time), if that incarnation is ours and alive.
    public func lookup(pid: pid_t, startTime: UInt64) -> Entry? {
        guard let entry = lock.withLock({ entries[pid] }), entry.startTime == startTime || startTime == 0,
              ProcessControl.isAlive(pid: pid, startTime: entry.startTime) else { return nil }
        return entry
    }

    /// In a forked child: the table is the master's; the lock may be held.
    func reinitializeInChild() {
        lock.reinitializeInChild()
        entries = [:]
    }
}
