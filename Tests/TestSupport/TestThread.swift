import Glibc

/// A POSIX thread running a closure, for tests that need a second thread
/// (a canceller, a slow server). Joined explicitly.
public final class TestThread {
    private var thread = pthread_t()

    public init(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(ClosureBox(body)).toOpaque()
        precondition(pthread_create(&thread, nil, runTestThread, box) == 0, "pthread_create failed")
    }

    public func join() { pthread_join(thread, nil) }

    /// Delivers `signal` to this thread (its handler runs on it).
    public func signal(_ signal: CInt) -> CInt { pthread_kill(thread, signal) }
}

private final class ClosureBox {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Thread entry: a nonisolated free function (a closure literal could be
/// main-actor isolated and trap on the new thread).
nonisolated private func runTestThread(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<ClosureBox>.fromOpaque(raw!).takeRetainedValue().body()
    return nil
}
