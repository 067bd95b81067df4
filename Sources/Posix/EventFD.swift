import CPosix
import Glibc

/// A kernel counter that polls readable while non-zero: the one wake-up
/// channel of a transport (cancel writes it, the send's poll sees it).
public struct EventFD: RawRepresentable, Hashable, Sendable {
    public let rawValue: CInt
    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// The same descriptor, for `poll`.
    public var fileDescriptor: FileDescriptor { FileDescriptor(rawValue: rawValue) }

    public struct Flags: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }

        public static let closeOnExec = Flags(rawValue: CInt(EFD_CLOEXEC))
        public static let nonBlocking = Flags(rawValue: CInt(EFD_NONBLOCK))
        /// Each read takes 1 instead of the whole count.
        public static let semaphore = Flags(rawValue: CInt(EFD_SEMAPHORE))
    }

    /// Creates the counter. Non-blocking by default so `drain` never waits.
    /// The corresponding C function is `eventfd`.
    public static func create(initialValue: UInt32 = 0, flags: Flags = [.closeOnExec, .nonBlocking]) throws(SystemError) -> EventFD {
        let fd = try valueOrErrno(system_eventfd(initialValue, flags.rawValue)).get("eventfd")
        return EventFD(rawValue: fd)
    }

    /// Adds 1 to the counter, waking every poller. A counter already at its
    /// maximum (`EAGAIN` when non-blocking) is already signalled, so that is
    /// success too. Allocates nothing and takes no lock in release builds
    /// (debug builds consult the mocking driver), so a signal handler may
    /// call it.
    /// The corresponding C function is `write`.
    public func signal(retryOnInterrupt: Bool = true) throws(SystemError) {
        var one: UInt64 = 1
        let result = withUnsafeBytes(of: &one) { raw in
            Posix.retryOnInterrupt(retryOnInterrupt) { valueOrErrno(system_write(rawValue, raw.baseAddress, raw.count)) }
        }
        switch result {
        case .success, .failure(.wouldBlock): return
        case .failure(let errno): throw SystemError("write", path: "eventfd", errno)
        }
    }

    /// Reads and resets the counter; 0 when it was not signalled
    /// (`EAGAIN` on a non-blocking counter). The corresponding C function is `read`.
    public func drain(retryOnInterrupt: Bool = true) throws(SystemError) -> UInt64 {
        var value: UInt64 = 0
        let result = withUnsafeMutableBytes(of: &value) { raw in
            Posix.retryOnInterrupt(retryOnInterrupt) { valueOrErrno(system_read(rawValue, raw.baseAddress, raw.count)) }
        }
        switch result {
        case .success: return value
        case .failure(.wouldBlock): return 0
        case .failure(let errno): throw SystemError("read", path: "eventfd", errno)
        }
    }

    /// The corresponding C function is `close`.
    public func close() throws(SystemError) {
        try fileDescriptor.close()
    }
}
