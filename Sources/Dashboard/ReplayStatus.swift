/// Where a replay of a saved ring is: shown in the title bar as
/// `REPLAY ×2 +12.3s/45.6s` (or `PAUSED …`).
public struct ReplayStatus: Sendable, Equatable {
    public var speed: Double
    /// Nanoseconds since the first event.
    public var position: UInt64
    /// From the first event to the last.
    public var duration: UInt64
    public var paused: Bool

    public init(speed: Double, position: UInt64, duration: UInt64, paused: Bool) {
        self.speed = speed
        self.position = position
        self.duration = duration
        self.paused = paused
    }

    /// `REPLAY ×2 +12.3s/45.6s`; `x` for `×` when not unicode.
    public func caption(unicode: Bool) -> String {
        let times = unicode ? "×" : "x"
        let factor = speed == speed.rounded() ? String(Int(speed)) : String(speed)
        return (paused ? "PAUSED " : "REPLAY ") + times + factor
            + " +" + ReplayStatus.seconds(position) + "/" + ReplayStatus.seconds(duration)
    }

    /// Tenths of a second: `12.3s`.
    static func seconds(_ ns: UInt64) -> String {
        let tenths = (ns + 50_000_000) / 100_000_000
        return "\(tenths / 10).\(tenths % 10)s"
    }
}
