/// A point on the monotonic clock (`Clock.monotonicNanoseconds`) by which a
/// wait must end. Waits take a deadline rather than a timeout so a wait that
/// is interrupted and retried does not start its timeout over.
public struct Deadline: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Monotonic nanoseconds at which the deadline passes; `UInt64.max` never does.
    public let monotonicNanoseconds: UInt64

    public init(monotonicNanoseconds: UInt64) {
        self.monotonicNanoseconds = monotonicNanoseconds
    }

    /// A deadline that never passes: `remainingMilliseconds` is -1, which
    /// `poll` reads as "wait indefinitely".
    public static let never = Deadline(monotonicNanoseconds: .max)

    /// `nanoseconds` from now (saturating: a huge value means `never`).
    public static func after(nanoseconds: UInt64) -> Deadline {
        let (sum, overflow) = Clock.monotonicNanoseconds().addingReportingOverflow(nanoseconds)
        return overflow ? .never : Deadline(monotonicNanoseconds: sum)
    }

    /// `milliseconds` from now.
    public static func after(milliseconds: UInt64) -> Deadline {
        let (nanoseconds, overflow) = milliseconds.multipliedReportingOverflow(by: 1_000_000)
        return overflow ? .never : after(nanoseconds: nanoseconds)
    }

    /// `seconds` from now. Zero, negative or NaN has already passed; a
    /// value too large for the clock (or infinity) never passes.
    public init(seconds: Double) {
        guard seconds > 0 else {
            self = Deadline(monotonicNanoseconds: Clock.monotonicNanoseconds())
            return
        }
        let nanoseconds = seconds * 1_000_000_000
        self = nanoseconds < Double(UInt64.max) ? .after(nanoseconds: UInt64(nanoseconds)) : .never
    }

    public var isNever: Bool { monotonicNanoseconds == .max }

    public var hasPassed: Bool {
        !isNever && Clock.monotonicNanoseconds() >= monotonicNanoseconds
    }

    /// Nanoseconds left, 0 once passed (`UInt64.max` for `never`).
    public var remainingNanoseconds: UInt64 {
        if isNever { return .max }
        let now = Clock.monotonicNanoseconds()
        return now >= monotonicNanoseconds ? 0 : monotonicNanoseconds - now
    }

    /// The timeout to hand `poll`: milliseconds left, rounded up so a wait
    /// never returns just before its deadline and spins; 0 once passed; -1
    /// (wait indefinitely) for `never`; at most `Int32.max`.
    public var remainingMilliseconds: Int32 {
        if isNever { return -1 }
        let nanoseconds = remainingNanoseconds
        let milliseconds = nanoseconds / 1_000_000 + (nanoseconds % 1_000_000 == 0 ? 0 : 1)
        return Int32(clamping: milliseconds)
    }

    public static func < (lhs: Deadline, rhs: Deadline) -> Bool {
        lhs.monotonicNanoseconds < rhs.monotonicNanoseconds
    }

    public var description: String {
        isNever ? "never" : "in \(Int64(clamping: remainingNanoseconds) / 1_000_000) ms"
    }
}
