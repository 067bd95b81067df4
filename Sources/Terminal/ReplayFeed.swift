import Dashboard
import EventRing

/// Plays a saved ring back into a `DashboardModel`: every event is read
/// once, merged by time, and the model is the fold of the events at or
/// before a replay clock. The clock starts at the first event and advances
/// with the wall clock times a speed (×0.25…×16) unless paused; stepping
/// folds one more event; seeking forward folds on, seeking back re-folds
/// from the start (the model is a pure fold of its events).
public final class ReplayFeed {
    public static let speeds: [Double] = [0.25, 0.5, 1, 2, 4, 8, 16]
    static let normalSpeed = 2

    public let events: [Event]
    public private(set) var model: DashboardModel
    /// How many of `events` the model holds.
    public private(set) var cursor = 0
    /// Nanoseconds since the first event.
    public private(set) var position: UInt64 = 0
    public private(set) var speedIndex = ReplayFeed.normalSpeed
    public private(set) var isPaused = false
    private let origin: RingOrigin
    private let accounting: RingAccounting?
    private let logCapacity: Int
    private let resolve: (UInt64) -> String?
    /// The wall clock (monotonic ns) the position was last advanced at.
    private var tickedAt: UInt64?

    /// Reads the whole ring at `path`.
    public convenience init(path: String, mode: RingReader.Mode = .snapshot, logCapacity: Int = 100_000) throws(RingError) {
        let reader = try RingReader(path: path, mode: mode)
        var events: [Event] = []
        let accounting = try reader.readNew(into: &events)
        RingReader.merge(&events)
        self.init(events: events, origin: RingOrigin(reader.header), accounting: accounting,
                  logCapacity: logCapacity) { reader.string(at: $0) }
    }

    /// Replays `events` (merged, oldest first).
    public init(events: [Event], origin: RingOrigin, accounting: RingAccounting? = nil, logCapacity: Int = 100_000,
                strings: @escaping (UInt64) -> String?) {
        self.events = events
        self.origin = origin
        self.accounting = accounting
        self.logCapacity = logCapacity
        resolve = strings
        model = DashboardModel(origin: origin, logCapacity: logCapacity)
        if let accounting { model.record(accounting) }
        foldUpTo(position: 0)
    }

    /// The first event's time (the clock's zero).
    public var start: UInt64 { events.first?.time ?? origin.monotonic }
    /// From the first event to the last.
    public var duration: UInt64 { (events.last?.time ?? start) - start }
    /// The replay clock as a monotonic time (what the view calls now).
    public var now: UInt64 { start + position }
    public var speed: Double { ReplayFeed.speeds[speedIndex] }
    public var isAtEnd: Bool { cursor == events.count && position >= duration }

    /// Moves the clock by the wall time since the last call (times the
    /// speed) and folds what it passed; returns whether the model or the
    /// clock changed. Stops at the end.
    @discardableResult
    public func advance(wallClock: UInt64) -> Bool {
        defer { tickedAt = wallClock }
        guard !isPaused, let last = tickedAt, wallClock > last, position < duration else { return false }
        let step = UInt64((Double(wallClock - last) * speed).rounded())
        seek(to: min(duration, position + step))
        return true
    }

    /// Puts the clock at `position` ns after the first event (clamped to the
    /// recording) and folds exactly the events at or before it.
    public func seek(to target: UInt64) {
        let target = min(target, duration)
        if target < position { reset() }
        position = target
        foldUpTo(position: target)
    }

    /// Seeks by `nanoseconds` (negative: back).
    public func seek(by nanoseconds: Int64) {
        if nanoseconds < 0 {
            let back = nanoseconds.magnitude
            seek(to: position > back ? position - back : 0)
        } else {
            let (next, overflow) = position.addingReportingOverflow(UInt64(nanoseconds))
            seek(to: overflow ? duration : next)
        }
    }

    /// Folds the next event and moves the clock to it.
    public func step() {
        guard cursor < events.count else { return }
        let next = events[cursor].time
        seek(to: next > start ? next - start : 0)
        // Events at the clock's time are folded by `seek`; at least one is.
    }

    public func jumpToEnd() { seek(to: duration) }

    public func setPaused(_ paused: Bool) { isPaused = paused }

    public func faster() { speedIndex = min(ReplayFeed.speeds.count - 1, speedIndex + 1) }
    public func slower() { speedIndex = max(0, speedIndex - 1) }

    /// What the title bar shows.
    public var status: ReplayStatus {
        ReplayStatus(speed: speed, position: position, duration: duration, paused: isPaused)
    }

    private func reset() {
        model = DashboardModel(origin: origin, logCapacity: logCapacity)
        if let accounting { model.record(accounting) }
        cursor = 0
    }

    private func foldUpTo(position: UInt64) {
        let limit = start + position
        var end = cursor
        while end < events.count, events[end].time <= limit { end += 1 }
        guard end > cursor else { return }
        let resolve = self.resolve
        model.fold(events[cursor..<end]) { resolve($0) }
        cursor = end
    }
}
