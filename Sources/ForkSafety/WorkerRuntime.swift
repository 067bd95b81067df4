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
/// its locks and starts fresh ones at the next generation.
public final class WorkerRuntime: @unchecked Sendable {
    public enum State: String, Sendable { case stopped, running, quiescing, quiesced }

    public typealias Job = () -> Void

    public let name: String
    public let workerCount: Int
    private let tickInterval: UInt64
    private let tick: Job?

    // Lock order: a participant's send lock, then this lock.
    private let lock = Lock()
    private let wake = Condition()
    private var _state: State = .stopped
    private var _generation: UInt32 = 1
    private var jobs: [Job] = []
    private var jobHead = 0
    private var threads: [pthread_t] = []
    private var tickRequested = false
    private var busyWorkers = 0
    /// The fork count when the threads were started: after a fork that
    /// bypassed the hooks, `threads` names threads of another process.
    private var threadsForkCount: UInt64 = 0

    /// - Parameters:
    ///   - name: short; threads are named `fks-<name><index>` (≤ 15 bytes).
    ///   - tickEvery: milliseconds between calls of `tick` on worker 0.
    public init(name: String, workers: Int = 1, tickEvery milliseconds: UInt64 = 0, tick: Job? = nil) {
        self.name = name
        workerCount = max(1, workers)
        tickInterval = milliseconds * 1_000_000
        self.tick = tick
    }

    public var state: State { lock.withLock { _state } }

    /// Whether this runtime's worker threads exist in this process: false
    /// in the child of a fork that no hook handled (the second seed's
    /// failure: the exporter believes its flush thread runs, and it does
    /// not).
    public var threadsExistHere: Bool {
        lock.withLock { _state == .running && threadsForkCount == fks_fork_count() }
    }
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
        lock.withLock {
            guard _state == .running || _state == .quiesced || _state == .quiescing else { return false }
            jobs.append(job)
            wake.broadcast()
            return true
        }
    }

    /// Runs the tick now rather than at the next interval.
    public func requestTick() {
        lock.withLock {
            tickRequested = true
            wake.broadcast()
        }
    }

    /// running → quiescing → quiesced: asks every worker to finish what it
    /// is doing (a job in progress completes) and joins them. Queued jobs
    /// stay queued.
    public func quiesce() {
        let joining: [pthread_t] = lock.withLock {
            guard _state == .running else { return [] }
            _state = .quiescing
            wake.broadcast()
            // Never join threads of another process (an unhandled fork):
            // they do not exist here and the join would never return.
            let all = threadsForkCount == fks_fork_count() ? threads : []
            threads = []
            return all
        }
        for thread in joining { pthread_join(thread, nil) }
        let generation: UInt32 = lock.withLock {
            if _state == .quiescing { _state = .quiesced }
            return _generation
        }
        if !joining.isEmpty { Telemetry.publish(.runtimeQuiesce, generation: generation, UInt64(generation), UInt64(joining.count)) }
    }

    /// quiesced → running in the parent after a fork: same generation.
    public func resume() {
        let generation: UInt32? = lock.withLock {
            guard _state == .quiesced else { return nil }
            _state = .running
            spawnThreadsLocked()
            return _generation
        }
        if let generation { Telemetry.publish(.runtimeResume, generation: generation, UInt64(generation), UInt64(workerCount)) }
    }

    /// In a forked child: the inherited threads do not exist here. Forget
    /// them without joining, re-initialise the locks, and — if the runtime
    /// was in use in the parent — start fresh workers at generation + 1.
    public func rebuildInChild(reason: String) {
        lock.reinitializeInChild()
        wake.reinitializeInChild()
        let (from, to, dropped): (UInt32, UInt32, Int) = lock.withLock {
            threads = []
            busyWorkers = 0
            // The parent's queued jobs are the parent's work: running them
            // here too would do it twice.
            let dropped = jobs.count - jobHead
            jobs = []
            jobHead = 0
            let wasInUse = _state != .stopped
            let from = _generation
            _generation += 1
            _state = wasInUse ? .running : .stopped
            if wasInUse { spawnThreadsLocked() }
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

    private func spawnThreadsLocked() {
        threadsForkCount = fks_fork_count()
        for index in 0..<workerCount {
            let context = Unmanaged.passRetained(WorkerContext(runtime: self, index: index)).toOpaque()
            var thread = pthread_t()
            if pthread_create(&thread, nil, workerThreadMain, context) == 0 {
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
