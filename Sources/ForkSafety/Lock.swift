import CPosix
import Glibc
import Posix

/// A `pthread_mutex_t` on the heap (a Swift struct could be moved, a mutex
/// must not be). After fork() only the forking thread exists in the child:
/// a mutex some other thread held stays locked forever, and unlocking one
/// the child does not own is undefined. So the child never unlocks what it
/// inherited: it calls `reinitializeInChild()`.
public final class Lock: @unchecked Sendable {
    @usableFromInline let mutex: UnsafeMutablePointer<pthread_mutex_t>

    public init() {
        mutex = .allocate(capacity: 1)
        Lock.initialize(mutex)
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    private static func initialize(_ mutex: UnsafeMutablePointer<pthread_mutex_t>) {
        mutex.initialize(to: pthread_mutex_t())
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        // Error checking: unlocking a mutex we do not hold is a bug to report, not UB.
        pthread_mutexattr_settype(&attributes, CInt(PTHREAD_MUTEX_ERRORCHECK))
        pthread_mutex_init(mutex, &attributes)
        pthread_mutexattr_destroy(&attributes)
    }

    @inlinable public func lock() { pthread_mutex_lock(mutex) }
    @inlinable public func unlock() { pthread_mutex_unlock(mutex) }
    @inlinable public func tryLock() -> Bool { pthread_mutex_trylock(mutex) == 0 }

    /// Locks, waiting at most until `deadline`; false when it passed.
    public func lock(before deadline: Deadline) -> Bool {
        if deadline.isNever { lock(); return true }
        var ts = timespec(tv_sec: Int(deadline.monotonicNanoseconds / 1_000_000_000),
                          tv_nsec: Int(deadline.monotonicNanoseconds % 1_000_000_000))
        while true {
            let rc = fks_mutex_lock_until(mutex, &ts)
            if rc == 0 { return true }
            if rc == ETIMEDOUT { return false }
            if rc != EINTR { return false }
        }
    }

    @inlinable
    public func withLock<T, E: Error>(_ body: () throws(E) -> T) throws(E) -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    /// In a forked child: forget the inherited state, held or not.
    public func reinitializeInChild() { Lock.initialize(mutex) }
}

/// A `pthread_cond_t` on the monotonic clock, used with a `Lock`.
/// Re-initialised in a forked child, like the lock.
public final class Condition: @unchecked Sendable {
    let condition: UnsafeMutablePointer<pthread_cond_t>

    public init() {
        condition = .allocate(capacity: 1)
        Condition.initialize(condition)
    }

    deinit {
        pthread_cond_destroy(condition)
        condition.deallocate()
    }

    private static func initialize(_ condition: UnsafeMutablePointer<pthread_cond_t>) {
        condition.initialize(to: pthread_cond_t())
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    /// Waits (the lock held) until signalled or `deadline`; false on timeout.
    @discardableResult
    public func wait(_ lock: Lock, until deadline: Deadline = .never) -> Bool {
        if deadline.isNever {
            pthread_cond_wait(condition, lock.mutex)
            return true
        }
        var ts = timespec(tv_sec: Int(deadline.monotonicNanoseconds / 1_000_000_000),
                          tv_nsec: Int(deadline.monotonicNanoseconds % 1_000_000_000))
        return pthread_cond_timedwait(condition, lock.mutex, &ts) != ETIMEDOUT
    }

    public func signal() { pthread_cond_signal(condition) }
    public func broadcast() { pthread_cond_broadcast(condition) }
    public func reinitializeInChild() { Condition.initialize(condition) }
}
