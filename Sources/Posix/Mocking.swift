import CPosix
import Glibc

// Debug builds can route every `system_*` call through a per-thread driver
// that records the call and can force an errno, so each wrapper is tested by
// a table row ("3 forced EINTRs give 4 calls") without touching the kernel.
// Release builds compile the hook out: the fork path pays nothing for it.

#if DEBUG
/// Records system calls made on this thread and forces failures on demand.
public final class MockingDriver {
    /// The names of the system calls made while this driver was active.
    public private(set) var trace: [String] = []
    /// Errnos to force, consumed front to back, one per matching call.
    public var forcedErrnos: [(call: String, errno: Errno)] = []

    public init() {}

    /// Runs `body` with this driver active on the calling thread.
    public func withMocking<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        let previous = MockingDriver.current
        MockingDriver.current = self
        defer { MockingDriver.current = previous }
        return try body()
    }

    /// Returns the errno to force for `call`, recording the call.
    func intercept(_ call: String) -> Errno? {
        trace.append(call)
        guard let index = forcedErrnos.firstIndex(where: { $0.call == call }) else { return nil }
        return forcedErrnos.remove(at: index).errno
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    static var current: MockingDriver? {
        get {
            guard let raw = pthread_getspecific(key) else { return nil }
            return Unmanaged<MockingDriver>.fromOpaque(raw).takeUnretainedValue()
        }
        set {
            // The driver is kept alive by `withMocking`'s caller for the scope.
            pthread_setspecific(key, newValue.map { Unmanaged.passUnretained($0).toOpaque() })
        }
    }
}

/// Returns the forced failure for `call`, or nil to make the real call.
@inline(__always) @usableFromInline
func mockedFailure(_ call: String) -> CInt? {
    guard let driver = MockingDriver.current, let errno = driver.intercept(call) else { return nil }
    fks_set_errno(errno.rawValue)
    return -1
}
#else
@inline(__always) @usableFromInline
func mockedFailure(_ call: String) -> CInt? { nil }
#endif
