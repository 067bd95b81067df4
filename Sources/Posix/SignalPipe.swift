import CPosix
import Glibc

// The write end of the pipe, a plain C-int global: the signal handler below
// touches no Swift runtime (no reference counting, no lazy global
// initialisation), only write(2), which is async-signal-safe.
nonisolated(unsafe) private var signalPipeWriteEnd: CInt = -1

nonisolated private func forwardSignalToPipe(_ signal: CInt) {
    let saved = fks_errno()
    var byte = UInt8(truncatingIfNeeded: signal)
    _ = Glibc.write(signalPipeWriteEnd, &byte, 1)
    fks_set_errno(saved)
}

/// The self-pipe that wakes a `poll` loop: from a signal handler (the byte
/// is the signal number) or from another thread (`wake()`: byte 0). The
/// handler only writes; the loop does the work. One per process.
public final class SignalPipe: @unchecked Sendable {
    public let readEnd: FileDescriptor
    private let writeEnd: FileDescriptor
    private var routed: [CInt] = []

    public init() throws(SystemError) {
        let (read, write) = try FileDescriptor.pipe(flags: O_CLOEXEC | O_NONBLOCK)
        readEnd = read
        writeEnd = write
        signalPipeWriteEnd = write.rawValue
    }

    /// A pipe with `signals` routed to it.
    public static func install(_ signals: [CInt]) throws(SystemError) -> SignalPipe {
        let pipe = try SignalPipe()
        try pipe.route(signals)
        return pipe
    }

    /// Routes `signals` to the pipe (restored to their defaults by `close`).
    public func route(_ signals: [CInt]) throws(SystemError) {
        for signal in signals {
            try Signals.install(forwardSignalToPipe, for: signal, flags: [.restart])
            routed.append(signal)
        }
    }

    /// Wakes the loop from another thread.
    public func wake() {
        var byte: UInt8 = 0
        _ = withUnsafeBytes(of: &byte) { try? writeEnd.write($0) }
    }

    /// The signals delivered since the last call, in order (wake-ups are dropped).
    public func drain() -> [CInt] {
        var signals: [CInt] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in (try? readEnd.read(into: raw)) ?? 0 }
            if n <= 0 { return signals }
            signals += buffer[..<n].filter { $0 != 0 }.map { CInt($0) }
        }
    }

    /// Restores the routed signals' default handlers and closes the pipe —
    /// also what a forked child does with its parent's pipe, which is not its own.
    public func close() {
        for signal in routed { try? Signals.restoreDefault(signal) }
        routed.removeAll()
        signalPipeWriteEnd = -1
        try? readEnd.close()
        try? writeEnd.close()
    }
}
