import CPosix
import EventRing
import Glibc
import Posix

/// The exporter's own worker threads: named POSIX threads, a job queue and
/// an optional periodic tick (the writer's flush), with explicit states
///
///     stopped → running → quiescing → quiesced → running (parent) …
///                                        ↘ child: generation + 1, running
///
/// Threads do not survive fork(): in the child the runtime never joins or
/// unlocks what it inherited; it forgets the old threads, re-initialises
/// its locks and is running again at the next generation.
///
/// After a fork the threads start on first use — the first `submit`,
/// `requestTick` or `startIfDeferred` — rather than inside the fork's
/// `parent`/`child` stage, unless there is work already waiting (queued
/// jobs, a requested tick, or the owner's `hasWork`). Creating threads in
/// the fork path cost more than the rest of the hooks together (`forkscope
/// bench fork`); a forked child that exits or execs at once (a subprocess
/// spawn through fork) never pays for threads it would not use. This is
/// dd-trace-rb's writer too: it restarts on the first write after a fork.
public final class WorkerRuntime: @unchecked Sendable {
    public enum State: String, Sendable { case stopped, running, quiescing, quiesced }

    public typealias Job = () -> Void

    public let name: String
    public let workerCount: Int
    private let tickInterval: UInt64
    private let tick: Job?
    private let hasWork: (() -> Bool)?
    private let stacks = WorkerStacks()

    // Lock order: a participant's send lock, then this lock.
    private let lock = Lock()
    /// Broadcast after `lock` is released, never while it is held: a worker
    /// woken while it is held blocks on it at once and needs a second
    /// wake-up (a futex round trip seen in strace on every quiesce). A
    /// worker checks its state under the lock before it waits, so no
    /// wake-up is lost.
    private let wake = Condition()
    // Guarded by `lock`. `@exclusivity(unchecked)`: the lock already
    // serialises every access, and the runtime's dynamic check, first run
    // in a forked child during `rebuildInChild`, paged in code there.
    @exclusivity(unchecked) private var _state: State = .stopped
    @exclusivity(unchecked) private var _generation: UInt32 = 1
    @exclusivity(unchecked) private var jobs: [Job] = []
    @exclusivity(unchecked) private var jobHead = 0
    @exclusivity(unchecked) private var threads: [pthread_t] = []
    @exclusivity(unchecked) private var tickRequested = false
    @exclusivity(unchecked) private var busyWorkers = 0
    /// The fork count when the threads were started (or deferred): after
    /// a fork that bypassed the hooks, `threads` names threads of another
    /// process.
    @exclusivity(unchecked) private var threadsForkCount: UInt64 = 0
    /// 1 while running with threads deferred to first use; read without
    /// the lock on the hot path of `startIfDeferred`.
    private let deferred: UnsafeMutablePointer<UInt64> = {
        let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        word.initialize(to: 0)
        return word
    }()

    /// - Parameters:
    ///   - name: short; threads are named `fks-<name><index>` (≤ 15 bytes).
    ///   - tickEvery: milliseconds between calls of `tick` on worker 0.
    ///   - hasWork: whether the owner holds work for the tick (e.g. buffered
    ///     spans), asked when the parent resumes after a fork: with work
    ///     waiting the threads start at once, otherwise on first use. Called
    ///     without this runtime's lock held.
    public init(name: String, workers: Int = 1, tickEvery milliseconds: UInt64 = 0, tick: Job? = nil, hasWork: (() -> Bool)? = nil) {
        self.name = name
        workerCount = max(1, workers)
        tickInterval = milliseconds * 1_000_000
        self.tick = tick
        self.hasWork = hasWork
    }

    deinit {
        deferred.deallocate()
        stacks.release()
    }

    public var state: State { lock.withLock { _state } }

    /// Whether this runtime's worker threads exist in this process (or,
    /// deferred after a fork, will start here on first use): false in the
    /// child of a fork that no hook handled (the second seed's failure: the
    /// exporter believes its flush thread runs, and it does not).
    public var threadsExistHere: Bool {
        lock.withLock { _state == .running && threadsForkCount == fks_fork_count() }
    }
    /// Whether the runtime runs with its threads not started yet (after a
    /// fork, until first use).
    public var threadsDeferred: Bool { fks_load_acquire_u64(deferred) != 0 }
    public var generation: UInt32 { lock.withLock { _generation } }
    /// The generation, read without the lock: only in a forked child before
    /// `rebuildInChild`, where the lock may have been copied held by a
    /// thread that does not exist here (and none of ours runs yet).
    var generationBeforeRebuild: UInt32 { _generation }
    /// Jobs queued and not yet started.
    public var queuedJobs: Int { lock.withLock { jobs.count - jobHead } }

    /// stopped/quiesced → running: starts the worker threads.
    public func start() {
        lock.withLock {
            guard _state == .stopped || _state == .quiesced else { return }
            _state = .running
            spawnThreadsLocked()
        }
    }

    /// Queues a job; false (job not queued) unless running or quiesced —
    /// a quiesced runtime keeps jobs for when it resumes.
    @discardableResult
    public func submit(_ job: @escaping Job) -> Bool {
        let queued: Bool = lock.withLock {
            guard _state == .running || _state == .quiesced || _state == .quiescing else { return false }
            jobs.append(job)
            startDeferredLocked()
            return true
        }
        if queued { wake.broadcast() }
        return queued
    }

    /// Runs the tick now rather than at the next interval.
    public func requestTick() {
        lock.withLock {
            tickRequested = true
            startDeferredLocked()
        }
        wake.broadcast()
    }

    /// Starts the threads if they were deferred after a fork: one atomic
    /// load when they run already. For owners whose work arrives other
    /// than through `submit` (e.g. a writer's buffer, flushed by the tick).
    public func startIfDeferred() {
        guard fks_load_acquire_u64(deferred) != 0 else { return }
        lock.withLock { startDeferredLocked() }
    }

    /// running → quiescing → quiesced: asks every worker to finish what it
    /// is doing (a job in progress completes) and joins them. Queued jobs
    /// stay queued.
    public func quiesce() {
        let joining: [pthread_t] = lock.withLock {
            guard _state == .running else { return [] }
            _state = .quiescing
            fks_store_release_u64(deferred, 0)
            // Never join threads of another process (an unhandled fork):
            // they do not exist here and the join would never return.
            let all = threadsForkCount == fks_fork_count() ? threads : []
            threads = []
            return all
        }
        wake.broadcast()
        for thread in joining { WorkerRuntime.join(thread) }
        let generation: UInt32 = lock.withLock {
            if _state == .quiescing { _state = .quiesced }
            return _generation
        }
        if !joining.isEmpty { Telemetry.publish(.runtimeQuiesce, generation: generation, UInt64(generation), UInt64(joining.count)) }
    }

    /// quiesced → running in the parent after a fork: same generation. The
    /// threads start now if work waits, otherwise on first use; the
    /// `runtime.resume` event says how many started now.
    public func resume() {
        let ownerHasWork = hasWork?() ?? false
        let resumed: (generation: UInt32, started: Int)? = lock.withLock {
            guard _state == .quiesced else { return nil }
            _state = .running
            if ownerHasWork || tickRequested || jobHead < jobs.count {
                spawnThreadsLocked()
            } else {
                deferThreadsLocked()
            }
            return (_generation, threads.count)
        }
        if let resumed { Telemetry.publish(.runtimeResume, generation: resumed.generation, UInt64(resumed.generation), UInt64(resumed.started)) }
    }

    /// In a forked child: the inherited threads do not exist here. Forget
    /// them without joining, re-initialise the locks, and — if the runtime
    /// was in use in the parent — run at generation + 1, its fresh workers
    /// starting on first use.
    public func rebuildInChild(reason: String) {
        lock.reinitializeInChild()
        wake.reinitializeInChild()
        let (from, to, dropped): (UInt32, UInt32, Int) = lock.withLock {
            // Emptied in place, and only when not empty: freeing storage or
            // running the destroy loop after fork() pages in the allocator
            // and the runtime's array code, a fault each in the child.
            if !threads.isEmpty { threads.removeAll(keepingCapacity: true) }
            busyWorkers = 0
            // The parent's queued jobs are the parent's work: running them
            // here too would do it twice.
            let dropped = jobs.count - jobHead
            if !jobs.isEmpty { jobs.removeAll(keepingCapacity: true) }
            jobHead = 0
            let wasInUse = _state != .stopped
            let from = _generation
            _generation += 1
            tickRequested = false
            _state = wasInUse ? .running : .stopped
            fks_store_release_u64(deferred, 0)
            if wasInUse { deferThreadsLocked() }
            return (from, _generation, dropped)
        }
        let why = dropped == 0 ? reason : "\(reason); \(dropped) queued job(s) of the parent not run here"
        Telemetry.publish(.runtimeRebuild, generation: to, UInt64(from), UInt64(to), Telemetry.intern(why))
    }

    /// Stops for good (after running any queued jobs' current one).
    public func stop() {
        quiesce()
        lock.withLock { _state = .stopped }
    }

    /// Joins a worker told to stop. An idle one leaves within microseconds
    /// of its wake-up; blocking in `pthread_join` meanwhile lets this CPU go
    /// idle, and waking an idle (virtual) CPU again took ~20 µs of the
    /// fork's `before` stage here (bench fork: 42–46 → 23–27 µs). So poll
    /// for its end, yielding, for up to 200 µs (a worker finishing a long
    /// job takes longer), then block.
    private static func join(_ thread: pthread_t) {
        let deadline = Clock.monotonicNanoseconds() &+ 200_000
        while Clock.monotonicNanoseconds() < deadline {
            if fks_thread_tryjoin(thread) == 0 { return }
            sched_yield()
        }
        pthread_join(thread, nil)
    }

    private func deferThreadsLocked() {
        threadsForkCount = fks_fork_count()
        fks_store_release_u64(deferred, 1)
    }

    private func startDeferredLocked() {
        // Deferred in this process: after a fork no hook handled, the flag
        // is the parent's, and this process's runtime is not rebuilt yet.
        guard fks_load_acquire_u64(deferred) != 0, _state == .running, threadsForkCount == fks_fork_count() else { return }
        spawnThreadsLocked()
    }

    private func spawnThreadsLocked() {
        fks_store_release_u64(deferred, 0)
        threadsForkCount = fks_fork_count()
        for index in 0..<workerCount {
            let context = Unmanaged.passRetained(WorkerContext(runtime: self, index: index)).toOpaque()
            var thread = pthread_t()
            var attributes = pthread_attr_t()
            pthread_attr_init(&attributes)
            if let stack = stacks.stack(for: index) { pthread_attr_setstack(&attributes, stack, WorkerStacks.size) }
            let created = pthread_create(&thread, &attributes, workerThreadMain, context)
            pthread_attr_destroy(&attributes)
            if created == 0 {
                threads.append(thread)
            } else {
                Unmanaged<WorkerContext>.fromOpaque(context).release()
            }
        }
    }

    /// The loop of one worker thread.
    fileprivate func runWorker(index: Int) {
        let threadName = "fks-\(name)\(index)"
        _ = threadName.withCString { fks_set_current_thread_name($0) }
        let nameRef = Telemetry.intern(threadName)
        let generation = self.generation
        Telemetry.publish(.threadStart, generation: generation, UInt64(pid: fks_cached_tid()), nameRef)
        var nextTick = Clock.monotonicNanoseconds() &+ tickInterval
        lock.lock()
        while _state == .running {
            if jobHead < jobs.count {
                let job = jobs[jobHead]
                jobHead += 1
                if jobHead == jobs.count { jobs.removeAll(keepingCapacity: true); jobHead = 0 }
                busyWorkers += 1
                lock.unlock()
                job()
                lock.lock()
                busyWorkers -= 1
                continue
            }
            if index == 0, let tick, tickRequested || (tickInterval > 0 && Clock.monotonicNanoseconds() >= nextTick) {
                tickRequested = false
                lock.unlock()
                tick()
                lock.lock()
                nextTick = Clock.monotonicNanoseconds() &+ tickInterval
                continue
            }
            let deadline = index == 0 && tick != nil && tickInterval > 0 ? Deadline(monotonicNanoseconds: nextTick) : .never
            wake.wait(lock, until: deadline)
        }
        lock.unlock()
        Telemetry.publish(.threadStop, generation: generation, UInt64(pid: fks_cached_tid()), nameRef)
    }
}

/// The workers' stacks, mapped once and reused by each generation of
/// threads. A thread on a stack glibc allocated gives back its unused pages
/// as it exits (madvise(MADV_DONTNEED), a TLB shoot-down across CPUs): most
/// of what joining an idle worker costs, and joining is on every fork's
/// path. glibc leaves a stack the caller provides alone. Only ever handed to
/// one thread at a time: a worker's thread is joined (or, after a fork, does
/// not exist) before the next one starts on its stack.
private final class WorkerStacks {
    /// Generous for a flush thread's Swift frames, debug builds included;
    /// only the pages touched are ever backed.
    static let size = 1 << 20
    private var mapped: [MappedRegion?] = []

    /// The stack of worker `index` (nil: mapping failed, use a default one).
    func stack(for index: Int) -> UnsafeMutableRawPointer? {
        while mapped.count <= index { mapped.append(WorkerStacks.map()) }
        return mapped[index]?.base
    }

    func release() {
        for case let stack? in mapped { try? stack.unmap() }
        mapped = []
    }

    /// A private mapping whose lowest page is a guard page.
    private static func map() -> MappedRegion? {
        guard let region = try? MappedRegion.anonymous(length: size, shared: false) else { return nil }
        do { try region.guardLowest(4096) } catch {
            try? region.unmap()
            return nil
        }
        return region
    }
}

private final class WorkerContext {
    let runtime: WorkerRuntime
    let index: Int
    init(runtime: WorkerRuntime, index: Int) {
        self.runtime = runtime
        self.index = index
    }
}

/// Thread entry point: a nonisolated function in an ordinary file (a
/// closure written in main.swift would be main-actor isolated and trap).
nonisolated private func workerThreadMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
    context.runtime.runWorker(index: context.index)
    return nil
}
