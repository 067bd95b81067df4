import Dashboard
import EventRing
import Posix

/// Reads a ring into a `DashboardModel`: the only place the dashboard
/// touches the ring. Each `poll` reads what was committed since the last
/// one, merges it by time and folds it.
public final class RingFeed {
    public let path: String
    public let reader: RingReader
    public private(set) var model: DashboardModel
    /// Whether the ring can still change: mapped live, written during this
    /// boot, and some process that owns a lane still alive (or none has
    /// published yet).
    public private(set) var isLive: Bool
    private var buffer: [Event] = []
    private let canCheckLiveness: Bool

    public init(path: String, mode: RingReader.Mode = .live, logCapacity: Int = 100_000) throws(RingError) {
        self.path = path
        reader = try RingReader(path: path, mode: mode)
        model = DashboardModel(origin: RingOrigin(reader.header), logCapacity: logCapacity)
        canCheckLiveness = mode == .live && reader.header.isFromThisBoot
        isLive = canCheckLiveness
        buffer.reserveCapacity(4096)
    }

    /// Folds what was published since the last call; returns how many events.
    @discardableResult
    public func poll() throws(RingError) -> Int {
        buffer.removeAll(keepingCapacity: true)
        let accounting = try reader.readNew(into: &buffer)
        RingReader.merge(&buffer)
        model.record(accounting)
        if !buffer.isEmpty {
            let reader = self.reader
            model.fold(buffer) { reader.string(at: $0) }
        }
        return buffer.count
    }

    /// Marks processes that died without an exit event, and whether any
    /// lane owner is still alive. Reads /proc once per process not known
    /// to have ended.
    public func checkLiveness() {
        guard canCheckLiveness else { return }
        model.observeLiveness { key in
            guard key.start != 0 else { return nil }
            return ProcessControl.isAlive(pid: key.pid, startTime: key.start)
        }
        let owners = (model.accounting?.lanes ?? []).filter { $0.ownerPid > 0 }
        isLive = model.processes.isEmpty  // nothing published yet: waiting for it
            || owners.contains { ProcessControl.isAlive(pid: $0.ownerPid, startTime: $0.ownerStart) }
            || model.processes.contains { !$0.state.isEnded && $0.key.start != 0 }
    }

    /// What the title calls the ring: live, ended (mapped live, every
    /// process gone), or saved (a copy, or written during another boot).
    public var source: DashboardFrame.Source {
        isLive ? .live : canCheckLiveness ? .ended : .saved
    }

    /// The time the view calls "now": the clock while the ring is live, else
    /// the last event's time (a saved ring's timeline ends at its last event).
    public var now: UInt64 {
        canCheckLiveness && isLive ? max(Clock.monotonicNanoseconds(), model.lastTime) : model.lastTime
    }
}
