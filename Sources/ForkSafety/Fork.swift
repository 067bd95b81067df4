import CPosix
import EventRing
import Glibc
import Posix

/// Why `Fork.fork()` or `Fork.daemon()` did not produce a child.
public enum ForkError: Error, Equatable, CustomStringConvertible {
    /// A `before` hook failed: no fork happened; `parent` ran for the
    /// hooks whose `before` had succeeded.
    case hookFailed(HookFailure)
    /// fork() itself failed (e.g. EAGAIN); `parent` ran for every hook.
    case forkFailed(Errno)

    public var description: String {
        switch self {
        case .hookFailed(let failure): "fork not performed: \(failure)"
        case .forkFailed(let errno): "fork() failed: \(errno)"
        }
    }
}

public enum ForkOutcome: Equatable, Sendable {
    case parent(child: pid_t)
    case child
}

/// The fork entry points: fork() wrapped in the at-fork stages, each
/// published into the ring. The function that really forks is injectable
/// so tests can make it fail (as root, RLIMIT_NPROC does not apply).
public enum Fork {
    public typealias ForkFunction = @Sendable () -> pid_t

    public static let systemFork: ForkFunction = { Glibc.fork() }

    /// How many `Fork.fork()`/`daemon()` children separate this process
    /// from the first one: the generation stamped on fork events.
    public static var generation: UInt32 { fks_fork_generation() }

    /// before → fork() → parent or child.
    public static func fork(
        registry: AtForkRegistry = .shared, using forkFunction: ForkFunction = systemFork
    ) throws(ForkError) -> ForkOutcome {
        let preparation = try prepare(registry: registry)
        let pid = forkFunction()
        if pid == 0 {
            completeInChild(preparation)
            return .child
        }
        try completeInParent(preparation, child: pid, error: .current)
        return .parent(child: pid)
    }

    /// One fork between its `before` stage and its `parent` or `child`
    /// stage, holding the registry lock.
    public struct Preparation: @unchecked Sendable {
        let registry: AtForkRegistry
        let run: AtForkRegistry.Run
        let started: UInt64
        /// The forking process: the child's parent, known without a
        /// syscall in the child (a libc function first called there is
        /// bound lazily there, at the cost of a dozen page faults).
        let parent: pid_t
    }

    /// The stages of `fork()` as pieces, for a fork() the host performs
    /// itself (the C ABI's `forkscope_before_fork`, called from Python's
    /// `os.register_at_fork`): `prepare`, then the host's fork(), then
    /// `completeInParent` or `completeInChild`, on the same thread.
    ///
    /// `prepare` runs the `before` stage (on failure, `parent` for the
    /// groups whose `before` succeeded, and throws) and takes the registry
    /// lock, so the child never inherits it mid-registration.
    public static func prepare(registry: AtForkRegistry = .shared) throws(ForkError) -> Preparation {
        let started = Clock.monotonicNanoseconds()
        let run = try runBefore(registry)
        registry.lock.lock()
        registry.keepUntilNextFork(run)
        return Preparation(registry: registry, run: run, started: started, parent: getpid())
    }

    /// The `parent` stage after fork() returned `pid`; with `pid < 0`,
    /// `error` is fork()'s errno: `parent` runs (nothing quiesced stays
    /// locked) and the failure is thrown.
    public static func completeInParent(_ preparation: Preparation, child pid: pid_t, error: Errno) throws(ForkError) {
        preparation.registry.lock.unlock()
        if pid < 0 {
            Telemetry.publish(.forkFailed, generation: generation, UInt64(error.rawValue), ForkStage.parent.rawValue)
            _ = preparation.registry.runParent(preparation.run, generation: generation)
            throw .forkFailed(error)
        }
        Telemetry.publish(.forkParent, generation: generation, UInt64(pid: pid), microsSince(preparation.started))
        _ = preparation.registry.runParent(preparation.run, generation: generation)
    }

    /// The `child` stage, in the new process: the inherited registry lock
    /// is re-initialised (never unlocked), then the generation advances.
    public static func completeInChild(_ preparation: Preparation) {
        preparation.registry.lock.reinitializeInChild()
        enterChild(registry: preparation.registry, run: preparation.run, parent: preparation.parent)
    }

    /// before → fork → setsid → fork → child, in the grandchild only. The
    /// original process and the intermediate one exit (so, as in the seed,
    /// `parent` is intentionally not run). Returns in the daemon; the
    /// caller's process never returns from a successful call.
    ///
    /// Before exiting, the original process waits for the intermediate one,
    /// so the daemon exists by the time it exits. Standard input, output
    /// and error of the daemon go to `/dev/null` or to `logPath`.
    public static func daemon(
        registry: AtForkRegistry = .shared, logPath: String? = nil, using forkFunction: ForkFunction = systemFork
    ) throws(ForkError) -> Never? {
        let preparation = try prepare(registry: registry)
        let first = forkFunction()
        if first != 0 {
            // A failed fork runs `parent` and throws; a successful one ends
            // the original process's part here (`parent` is not run).
            if first < 0 { try completeInParent(preparation, child: first, error: .current) }
            registry.lock.unlock()
            _ = try? ProcessControl.wait(for: first)
            _exit(0)
        }
        registry.lock.reinitializeInChild()
        // Intermediate: lead a new session, fork the daemon, leave.
        setsid()
        let second = forkFunction()
        if second != 0 { _exit(second > 0 ? 0 : 1) }
        redirectStandardStreams(to: logPath)
        enterChild(registry: registry, run: preparation.run, parent: getppid())
        return nil
    }

    /// The `before` stage, published; on failure `parent` runs for the
    /// groups whose `before` succeeded and the fork is not performed.
    private static func runBefore(_ registry: AtForkRegistry) throws(ForkError) -> AtForkRegistry.Run {
        let started = Clock.monotonicNanoseconds()
        var run = registry.beginRun()
        Telemetry.publish(.forkBeforeStart, generation: generation, UInt64(run.before.count))
        if let failure = registry.runBefore(&run, generation: generation) {
            Telemetry.publish(.forkBeforeEnd, generation: generation, Outcome.failed.rawValue, microsSince(started), 1)
            Telemetry.publish(.forkFailed, generation: generation, 0, ForkStage.before.rawValue)
            _ = registry.runParent(run, generation: generation)
            throw .hookFailed(failure)
        }
        Telemetry.publish(.forkBeforeEnd, generation: generation, Outcome.ok.rawValue, microsSince(started), 0)
        return run
    }

    private static func enterChild(registry: AtForkRegistry, run: AtForkRegistry.Run, parent: pid_t) {
        fks_advance_fork_generation()
        Telemetry.publish(.forkChild, generation: generation, UInt64(pid: parent), UInt64(generation))
        registry.runChildHooks(run, generation: generation)
    }

    private static func redirectStandardStreams(to logPath: String?) {
        let input = try? FileDescriptor.open("/dev/null", O_RDONLY | O_CLOEXEC)
        let output = try? logPath.map { path throws(SystemError) in
            try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
        } ?? FileDescriptor.open("/dev/null", O_WRONLY | O_CLOEXEC)
        if let input { try? input.duplicate(as: .standardInput); try? input.close() }
        if let output {
            try? output.duplicate(as: .standardOutput)
            try? output.duplicate(as: .standardError)
            try? output.close()
        }
    }
}

/// Fork detection without hooks (the approach of the second seed document):
/// the ring's `pthread_atfork` child handler bumps a per-process counter on
/// every fork(), even one that bypassed `Fork.fork()`. An object that saved
/// the counter sees the change on its next use with one load.
public final class ForkObserver: @unchecked Sendable {
    private let seen: UnsafeMutablePointer<UInt64>

    public init() {
        _ = fks_install_fork_counter()
        seen = .allocate(capacity: 1)
        seen.initialize(to: fks_fork_count())
    }

    deinit { seen.deallocate() }

    /// True for exactly one caller after each fork this observer has not
    /// yet seen (compare-and-swap: concurrent callers cannot both recover).
    public func claimUnseenFork() -> Bool {
        let now = fks_fork_count()
        var old = fks_load_acquire_u64(seen)
        if old == now { return false }
        return fks_cas_u64(seen, &old, now)
    }

    /// Whether a fork happened that this observer has not seen: one load
    /// and no claim, for a hot path that asks before it recovers.
    public var hasUnseenFork: Bool { fks_load_acquire_u64(seen) != fks_fork_count() }

    /// Marks the current fork count as handled (the child hook ran).
    public func acknowledge() { fks_store_release_u64(seen, fks_fork_count()) }
}
