import CPosix
import Glibc
import Posix

// Signals reach the master's poll loop through a self-pipe: the handler
// only writes the signal number (write(2) is async-signal-safe) and the
// loop does the work. The write end is a plain C global so the handler
// touches no Swift runtime.
nonisolated(unsafe) private var signalPipeWrite: CInt = -1

nonisolated private func forwardSignal(_ signal: CInt) {
    let saved = fks_errno()
    var byte = UInt8(truncatingIfNeeded: signal)
    _ = Glibc.write(signalPipeWrite, &byte, 1)
    fks_set_errno(saved)
}

/// The read end of the self-pipe, polled by the master.
public struct SignalPipe {
    public let readEnd: FileDescriptor

    /// Routes `signals` into a new pipe (non-blocking, close-on-exec).
    public static func install(_ signals: [CInt]) throws(SystemError) -> SignalPipe {
        let (read, write) = try FileDescriptor.pipe(flags: O_CLOEXEC | O_NONBLOCK)
        signalPipeWrite = write.rawValue
        for signal in signals { try Signals.install(forwardSignal, for: signal, flags: [.restart]) }
        return SignalPipe(readEnd: read)
    }

    /// The signals delivered since the last call, in order.
    public func drain() -> [CInt] {
        var result: [CInt] = []
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in (try? readEnd.read(into: raw)) ?? 0 }
            if n <= 0 { return result }
            result += buffer[..<n].map { CInt($0) }
        }
    }

    /// In a forked worker: the master's pipe is not ours. Close both ends
    /// and restore default handlers for `signals`.
    public func abandonInChild(restoring signals: [CInt]) {
        for signal in signals { try? Signals.restoreDefault(signal) }
        try? readEnd.close()
        if signalPipeWrite >= 0 { _ = Glibc.close(signalPipeWrite) }
        signalPipeWrite = -1
    }
}
