import CPosix
import EventRing
import Posix

/// Where the exporter core publishes its lifecycle events: the session's
/// ring, installed once at start-up (before any thread or fork). Without a
/// ring, publishing is a no-op: the core works the same unobserved.
public enum Telemetry {
    // Written once before threads start; read-only afterwards, so plain
    // reads are race-free. A forked child inherits it with the mapping.
    nonisolated(unsafe) private static var installed: RingWriter? = nil

    public static func install(_ writer: RingWriter?) { installed = writer }

    public static var writer: RingWriter? { installed }

    @inline(__always)
    public static func publish(
        _ kind: EventKind, generation: UInt32 = 0,
        _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0
    ) {
        installed?.publish(kind, generation: generation, a0, a1, a2, a3)
    }

    /// The string-table offset of `text` (0 without a ring).
    public static func intern(_ text: String) -> UInt64 { installed?.intern(text) ?? 0 }
}

extension UInt64 {
    /// A pid as an event argument.
    @inline(__always) public init(pid: pid_t) { self = UInt64(UInt32(bitPattern: pid)) }
}

/// Microseconds elapsed since `start` (monotonic ns).
@inline(__always)
func microsSince(_ start: UInt64) -> UInt64 { (Clock.monotonicNanoseconds() &- start) / 1000 }
