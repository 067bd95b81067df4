import CPosix
import EventRing
import Glibc

// The handler reads these globals; they are set before the handler is
// installed, so it never runs a lazy initialiser.
nonisolated(unsafe) var handlerWriter: RingWriter? = nil
nonisolated(unsafe) var handlerPublished: UInt64 = 0

/// A plain C-convention function: a signal handler may not be a closure
/// that captures, and must not be main-actor isolated.
nonisolated func publishFromHandler(_ signal: CInt) {
    guard let writer = handlerWriter else { return }
    handlerPublished &+= 1
    writer.publish(.mark, at: 0, generation: 1, 0xFFFF_FFFF, handlerPublished)
}

enum SignalPublisher {
    /// Publishes `count` marks on the main thread while an interval timer
    /// fires SIGALRM every 50 µs, whose handler publishes on the same lane.
    static func run(writer: RingWriter, count: Int) -> UInt64 {
        handlerWriter = writer
        writer.publish(.mark, 0, 0)  // claim the lane before any handler runs
        _ = fks_sigaction(SIGALRM, publishFromHandler, SA_RESTART)
        var timer = itimerval(it_interval: timeval(tv_sec: 0, tv_usec: 50), it_value: timeval(tv_sec: 0, tv_usec: 50))
        setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil)
        for i in 0..<count { writer.publish(.mark, at: 0, generation: 0, UInt64(i), 0) }
        timer = itimerval()
        setitimer(__itimer_which_t(ITIMER_REAL.rawValue), &timer, nil)
        _ = fks_sigaction(SIGALRM, fks_sig_ign(), 0)
        return handlerPublished
    }
}
