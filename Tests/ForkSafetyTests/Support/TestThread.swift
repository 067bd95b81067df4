import CPosix
import ForkSafety
import Glibc

/// A POSIX thread for a test. The body is `@Sendable`, so it is never
/// isolated to the main actor (a main-actor closure run on another thread
/// traps, DESIGN.md).
struct TestThread {
    let thread: pthread_t

    init(name: String, _ body: @escaping @Sendable () -> Void) {
        let context = Unmanaged.passRetained(TestThreadBody(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        precondition(pthread_create(&thread, nil, testThreadMain, context) == 0, "pthread_create")
        self.thread = thread
    }

    func join() { pthread_join(thread, nil) }
}

private final class TestThreadBody {
    let name: String
    let body: @Sendable () -> Void
    init(name: String, body: @escaping @Sendable () -> Void) {
        self.name = name
        self.body = body
    }
}

/// Thread entry point: a nonisolated function in an ordinary file.
nonisolated private func testThreadMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<TestThreadBody>.fromOpaque(raw!).takeRetainedValue()
    _ = context.name.withCString { fks_set_current_thread_name($0) }
    context.body()
    return nil
}

/// A value shared between a test and its threads; every access goes
/// through its lock.
final class Shared<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = Lock()

    init(_ value: Value) { self.value = value }

    func get() -> Value { lock.withLock { value } }

    func set(_ newValue: Value) { lock.withLock { value = newValue } }

    func update<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&value) } }
}
