import Dashboard
import EventRing
import Glibc
import Posix

/// What `forkscope ls` knows about one session directory.
public struct SessionInfo: Sendable {
    public enum Ring: Sendable, Equatable {
        case readable
        case missing
        case unreadable(String)
    }

    public let session: SessionDirectory
    public let ring: Ring
    /// The folded ring (nil unless readable).
    public let model: DashboardModel?
    /// Processes of the ring still alive, by (pid, start time).
    public let alive: Set<ProcessKey>
    /// Wall-clock ms since the epoch when the session was created (from its
    /// name, else its ring), nil when unknown.
    public let createdMilliseconds: UInt64?

    public var isLive: Bool { !alive.isEmpty }

    /// Not live and older than `seconds`.
    public func isStale(olderThan seconds: Double, now: UInt64 = Clock.realtimeNanoseconds() / 1_000_000) -> Bool {
        guard !isLive else { return false }
        guard let created = createdMilliseconds else { return false }
        return now > created && Double(now - created) / 1000 > seconds
    }
}

/// Sessions under a root: listing with their processes, and removing the
/// stale ones (no live process, older than a day by default).
public enum SessionCatalog {
    public static let staleAfterSeconds: Double = 24 * 3600

    public static func list(root: String = SessionDirectory.root()) -> [SessionInfo] {
        SessionDirectory.list(root: root).map(inspect)
    }

    public static func inspect(_ session: SessionDirectory) -> SessionInfo {
        let named = session.path.split(separator: "/").last.flatMap { name in UInt64(name.prefix { $0.isNumber }) }
        guard FileSystem.exists(session.ringPath) else {
            return SessionInfo(session: session, ring: .missing, model: nil, alive: [], createdMilliseconds: named)
        }
        do {
            let feed = try RingFeed(path: session.ringPath, mode: .live, logCapacity: 1)
            try feed.poll()
            var alive = Set<ProcessKey>()
            if feed.reader.header.isFromThisBoot {
                for p in feed.model.processes where !p.state.isEnded && p.key.start != 0
                    && ProcessControl.isAlive(pid: p.key.pid, startTime: p.key.start) {
                    alive.insert(p.key)
                }
                for lane in feed.model.accounting?.lanes ?? [] where lane.ownerPid > 0 && lane.ownerStart != 0
                    && ProcessControl.isAlive(pid: lane.ownerPid, startTime: lane.ownerStart) {
                    alive.insert(ProcessKey(pid: lane.ownerPid, start: lane.ownerStart))
                }
            }
            let created = named ?? feed.reader.header.createdRealtime / 1_000_000
            return SessionInfo(session: session, ring: .readable, model: feed.model, alive: alive, createdMilliseconds: created)
        } catch {
            return SessionInfo(session: session, ring: .unreadable("\(error)"), model: nil, alive: [], createdMilliseconds: named)
        }
    }

    /// Removes sessions that are stale, except `keeping`; returns their paths.
    /// Only directories that pass the ownership and mode checks are touched.
    @discardableResult
    public static func removeStale(root: String = SessionDirectory.root(), olderThan seconds: Double = staleAfterSeconds,
                                   keeping: String? = nil) -> [String] {
        var removed: [String] = []
        for info in list(root: root) where info.session.path != keeping && info.isStale(olderThan: seconds) {
            guard (try? SessionDirectory.checkPrivate(info.session.path, directory: true)) != nil else { continue }
            if (try? FileSystem.removeTree(info.session.path)) != nil { removed.append(info.session.path) }
        }
        return removed
    }
}

/// `attach` without a terminal: read the ring (for `duration` seconds when
/// given, following it), then the per-process summary.
public enum HeadlessSummary {
    public static func run(ringPath: String, title: String, mode: RingReader.Mode = .live, duration: Double? = nil) throws -> String {
        let feed = try RingFeed(path: ringPath, mode: mode)
        try feed.poll()
        if let duration, duration > 0 {
            let deadline = Deadline(seconds: duration)
            while !deadline.hasPassed {
                var none: [pollfd] = []
                _ = try? poll(&none, deadline: min(deadline, .after(milliseconds: 100)))
                try feed.poll()
            }
        }
        feed.checkLiveness()
        return ProcessSummary.text(feed.model, source: title, live: feed.isLive)
    }
}
