import ArgumentParser
import CPosix
import ForkSafety
import Glibc
import Posix

/// `forkscope bench fork`: what the at-fork hooks add to a fork, and how
/// fast a cancel wakes a blocked sender — side by side in one run.
///
/// Forks happen in this process: it runs synchronously from `main` and
/// never starts Dispatch or Swift concurrency (checked: it must have one
/// thread when the benchmark starts). Every child `_exit(0)`s at once.
struct ForkBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fork",
        abstract: "Fork-and-wait latency (bare fork(), Fork.fork() with an idle and a busy runtime) and cancel-to-wake latency."
    )

    @Option(help: "Forks per measurement.")
    var iterations = 300

    @Option(name: .customLong("heap-mib"), help: "Heap allocated and written before forking, in MiB (fork copies the page tables).")
    var heapMiB = 64

    @Option(help: "Cancel-to-wake rounds.")
    var wakes = 2000

    @Option(help: "Worker threads in the exporter's runtime (the trace writer's has one: its flush thread).")
    var workers = 1

    @Flag(help: "Run even in a debug build (figures are then meaningless).")
    var allowDebug = false

    func validate() throws {
        guard iterations > 0, wakes > 0, heapMiB >= 0, workers > 0 else {
            throw ValidationError("--iterations, --wakes and --workers must be positive, --heap-mib at least 0")
        }
    }

    func run() throws {
        #if DEBUG
        if !allowDebug {
            Failure.exit("this is a debug build: its figures mean nothing. Run `swift build -c release` and `.build/release/forkscope bench fork` (or pass --allow-debug)", code: 2)
        }
        warn("WARNING: debug build — these figures are not the product's")
        #endif
        let threads = (try? FileSystem.contents(ofDirectory: "/proc/self/task").count) ?? 0
        guard threads == 1 else {
            Failure.exit("this process has \(threads) threads before forking (Dispatch or another runtime started one): forking it would measure the hazard, not the hooks", code: 1)
        }
        // A hung child or waiter ends the run rather than hanging it.
        alarm(600)

        let heap = TouchedHeap(mebibytes: heapMiB)
        defer { heap.release() }

        // The stages alone: a participant with no runtime, in a registry of its own.
        let stagesOnly = AtForkRegistry()
        let bareParticipant = try ForkParticipant(name: "bench-stages", policy: .drain, runtime: nil, registry: stagesOnly)
        let runtime = WorkerRuntime(name: "bench", workers: workers)
        let participant = try ForkParticipant(name: "bench", policy: .drain, runtime: runtime)
        runtime.start()
        // The three take turns, so load from elsewhere on the machine falls
        // on all alike. (The bare fork() bypasses the hooks; its child
        // leaves before touching anything.)
        // After a fork the parent's workers start again on first use; the
        // idle row gives each fork live, idle workers to join (a job runs
        // and finishes first, outside the timed part).
        let idleStages = StageTimes()
        defer { idleStages.release() }
        // The join reference is sampled in the same rounds, so it sees the
        // machine as the forks do: before each bare fork, where whatever it
        // leaves behind (a CPU just woken) could only favour the bare fork.
        let joinReference = JoinReference()
        defer { joinReference.release() }
        let idleRows = measureForks([{ Glibc.fork() }, { hookedFork(stagesOnly) }, { hookedFork(.shared, timing: idleStages) }],
                                    prepare: [{ joinReference.sample() }, {}, { wakeWorkers(runtime) }], afterWait: [{}, {}, { idleStages.childExited() }])
        let (bare, stages, idle) = (idleRows[0], idleRows[1], idleRows[2])

        // One chain of jobs: a worker is always mid-job, and a core is left
        // for the fork (two chains would occupy both cores of a small machine).
        let busyWork = BusyWork(runtime: runtime, microseconds: 20)
        busyWork.start()
        let busy = measureForks([{ hookedFork(.shared) }])[0]
        let jobs = busyWork.stop()

        runtime.stop()
        participant.close()
        bareParticipant.close()
        let wake = try measureCancelToWake(rounds: wakes)

        // What the hooks add, fork by fork: each hooked fork against the bare
        // one taken just before it, so a burst of load from elsewhere falls
        // on both sides of the difference (the p50s of two noisy
        // distributions, subtracted, swing by more than the target here).
        let addedP50 = Percentiles(zip(idle.samples, bare.samples).map { $0 - $1 }).p50
        let rows: [(String, Percentiles)] = [
            ("fork() + waitpid, bare", bare),
            ("Fork.fork() + waitpid, no runtime", stages),
            ("Fork.fork() + waitpid, idle runtime", idle),
            ("Fork.fork() + waitpid, busy runtime", busy),
        ]
        var load = "?"
        if let bytes = try? FileSystem.readFile("/proc/loadavg") { load = String(decoding: bytes.prefix { $0 != 10 }, as: UTF8.self) }
        print("forkscope bench fork — \(iterations) forks each, \(heapMiB) MiB heap touched, \(workers) workers; \(wakes) cancel-to-wake rounds; loadavg \(load)")
        print(pad("measurement", 40) + pad("p50 µs", 10, right: true) + pad("p99 µs", 10, right: true) + pad("p50 vs bare", 14, right: true)
              + pad("paired Δ p50", 14, right: true) + pad("faults parent/child", 22, right: true))
        for (index, (name, figures)) in rows.enumerated() {
            let delta = figures.p50 - bare.p50
            // Only the rows taken in turn with the bare fork pair up.
            let paired = index == 0 || index > 2 ? "" : signed(Percentiles(zip(figures.samples, bare.samples).map { $0 - $1 }).p50)
            let faults = figures.faults.map { fixed($0.parent, 0) + " / " + fixed($0.child, 0) } ?? ""
            print(pad(name, 40) + pad(fixed(figures.p50, 1), 10, right: true) + pad(fixed(figures.p99, 1), 10, right: true)
                  + pad(index == 0 ? "" : signed(delta), 14, right: true) + pad(paired, 14, right: true) + pad(faults, 22, right: true))
        }
        print(pad("cancel → blocked waiter returns", 40) + pad(fixed(wake.p50, 1), 10, right: true) + pad(fixed(wake.p99, 1), 10, right: true))
        let stageTimes = idleStages.p50(last: iterations)
        let joinFigures = Percentiles(joinReference.samples.suffix(iterations))
        print("idle runtime, stage by stage (p50 µs): before \(fixed(stageTimes.before, 1)) (stops and joins the workers), "
              + "parent \(fixed(stageTimes.parent, 1)), child \(fixed(stageTimes.child, 1)) (timed in the child)")
        print("reference for the before stage: one parked pthread woken and pthread_join-ed, plain calls, in the same rounds: "
              + "p50 \(fixed(joinFigures.p50, 1)) µs, p99 \(fixed(joinFigures.p99, 1)) µs (quiescing must join the workers)")
        print("busy runtime: a worker always mid-job; \(jobs) jobs of 20 µs ran during its forks")
        print("targets: hooks add ≤ 100 µs p50 to an idle fork: \(signed(addedP50)) µs, paired (\(addedP50 <= 100 ? "met" : "missed")); "
              + "cancel-to-wake p99 < 200 µs: \(fixed(wake.p99, 1)) µs (\(wake.p99 < 200 ? "met" : "missed"))")
        print("{\"bench\":\"fork\",\"iterations\":\(iterations),\"heap_mib\":\(heapMiB),\"workers\":\(workers),"
              + "\"bare_p50_us\":\(fixed(bare.p50, 1)),\"bare_p99_us\":\(fixed(bare.p99, 1)),"
              + "\"stages_p50_us\":\(fixed(stages.p50, 1)),\"stages_p99_us\":\(fixed(stages.p99, 1)),"
              + "\"idle_p50_us\":\(fixed(idle.p50, 1)),\"idle_p99_us\":\(fixed(idle.p99, 1)),"
              + "\"busy_p50_us\":\(fixed(busy.p50, 1)),\"busy_p99_us\":\(fixed(busy.p99, 1)),"
              + "\"idle_stage_p50_us\":{\"before\":\(fixed(stageTimes.before, 1)),\"parent\":\(fixed(stageTimes.parent, 1)),\"child\":\(fixed(stageTimes.child, 1))},"
              + "\"hooks_added_p50_us\":\(fixed(idle.p50 - bare.p50, 1)),\"hooks_added_paired_p50_us\":\(fixed(addedP50, 1)),"
              + "\"faults_per_fork\":{\"bare\":[\(faultPair(bare))],\"no_runtime\":[\(faultPair(stages))],\"idle\":[\(faultPair(idle))],\"busy\":[\(faultPair(busy))]},"
              + "\"join_reference_p50_us\":\(fixed(joinFigures.p50, 1)),\"join_reference_p99_us\":\(fixed(joinFigures.p99, 1)),"
              + "\"cancel_wake_rounds\":\(wakes),\"cancel_wake_p50_us\":\(fixed(wake.p50, 1)),\"cancel_wake_p99_us\":\(fixed(wake.p99, 1))}")
    }

    /// Fork-and-wait latency of each of `forks`, taken in turn, `iterations`
    /// times each (after a few unmeasured warm-up rounds). Children leave
    /// at once.
    /// Also counts minor page faults per fork, in the parent and in the
    /// child (copy-on-write: every page either touches after fork() costs one).
    private func measureForks(_ forks: [() -> pid_t], prepare: [() -> Void] = [], afterWait: [() -> Void] = []) -> [Percentiles] {
        var samples = [[Double]](repeating: [], count: forks.count)
        var faults = [(parent: Int, child: Int)](repeating: (0, 0), count: forks.count)
        for index in -5..<iterations {
            for (variant, fork) in forks.enumerated() {
                if variant < prepare.count { prepare[variant]() }
                let (parentBefore, childBefore) = (minorFaults(RUSAGE_SELF), minorFaults(RUSAGE_CHILDREN))
                let start = Clock.monotonicNanoseconds()
                let pid = fork()
                if pid == 0 { _exit(0) }
                guard pid > 0 else { Failure.exit("fork failed: \(Errno.current)", code: 1) }
                guard (try? ProcessControl.wait(for: pid)) != nil else { Failure.exit("waitpid(\(pid)) failed: \(Errno.current)", code: 1) }
                let end = Clock.monotonicNanoseconds()
                let (parentAfter, childAfter) = (minorFaults(RUSAGE_SELF), minorFaults(RUSAGE_CHILDREN))
                if variant < afterWait.count { afterWait[variant]() }
                guard index >= 0 else { continue }
                samples[variant].append(Double(end - start) / 1000)
                faults[variant].parent += parentAfter - parentBefore
                faults[variant].child += childAfter - childBefore
            }
        }
        return zip(samples, faults).map { Percentiles($0, faults: (Double($1.parent) / Double(iterations), Double($1.child) / Double(iterations))) }
    }

    /// Time from `cancel` to the waiter's return from `CancellationToken.wait`,
    /// the waiter asleep in poll on a socket nobody writes.
    private func measureCancelToWake(rounds: Int) throws -> Percentiles {
        let probe = try WakeProbe(rounds: rounds)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(probe).toOpaque()
        guard pthread_create(&thread, nil, wakeProbeWaiter, context) == 0 else {
            Unmanaged<WakeProbe>.fromOpaque(context).release()
            Failure.exit("pthread_create: \(Errno.current)", code: 1)
        }
        defer { pthread_join(thread, nil) }
        var samples: [Double] = []
        samples.reserveCapacity(rounds)
        for _ in 0..<rounds {
            guard probe.ready.next(), let sequence = probe.source.runningSend else { Failure.exit("the waiter did not begin its send", code: 1) }
            // Cancel only once the waiter sleeps in poll, so this measures a wake.
            while !probe.waiterIsPolling() { sched_yield() }
            let start = Clock.monotonicNanoseconds()
            probe.source.cancel(sequence: sequence, reason: .operatorRequest)
            guard probe.done.next() else { Failure.exit("the waiter did not return", code: 1) }
            let returned = probe.returnedAt.load()
            samples.append(returned > start ? Double(returned - start) / 1000 : 0)
        }
        return Percentiles(samples)
    }
}

/// A reference for the idle fork's `before` stage, which must join the
/// workers: a thread that just parked on a condition variable (as an idle
/// worker has, between its last job and the fork) is woken, leaves and is
/// joined with pthread_join, plain pthread calls and nothing of the exporter
/// around them, on a stack of its own as the runtime's workers are.
private final class JoinReference {
    private(set) var samples: [Double] = []
    private let stack: MappedRegion

    init() {
        do { stack = try MappedRegion.anonymous(length: 1 << 20, shared: false) } catch { Failure.exit("\(error)", code: 1) }
    }

    func release() { try? stack.unmap() }

    func sample() {
        let parked = ParkedThread()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setstack(&attributes, stack.base, stack.length)
        let context = Unmanaged.passRetained(parked).toOpaque()
        let created = pthread_create(&thread, &attributes, parkedThreadMain, context)
        pthread_attr_destroy(&attributes)
        guard created == 0 else {
            Unmanaged<ParkedThread>.fromOpaque(context).release()
            Failure.exit("pthread_create: \(Errno(rawValue: created))", code: 1)
        }
        parked.lock.withLock { while !parked.isParked { parked.wake.wait(parked.lock) } }
        let start = Clock.monotonicNanoseconds()
        parked.lock.withLock { parked.stop = true }
        parked.wake.broadcast()
        pthread_join(thread, nil)
        samples.append(Double(Clock.monotonicNanoseconds() - start) / 1000)
    }
}

private final class ParkedThread: @unchecked Sendable {
    let lock = Lock()
    let wake = Condition()
    // Guarded by `lock`.
    var isParked = false
    var stop = false
}

/// Thread entry point: a nonisolated function in an ordinary file.
nonisolated private func parkedThreadMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let parked = Unmanaged<ParkedThread>.fromOpaque(raw!).takeRetainedValue()
    parked.lock.withLock {
        parked.isParked = true
        parked.wake.broadcast()
        while !parked.stop { parked.wake.wait(parked.lock) }
    }
    return nil
}

/// How long each stage of a hooked fork took: `before` and `parent` in the
/// parent, `child` in the child (which has no other way out but its exit
/// status). All three are stored into one shared page while the fork is
/// timed, and collected after the child was reaped: a write to the
/// process's own memory after fork() is a copy-on-write fault, which the
/// timing would add to the very fork it times.
private final class StageTimes {
    private(set) var before: [Double] = []
    private(set) var parent: [Double] = []
    private(set) var child: [Double] = []
    private let page: MappedRegion
    private let words: UnsafeMutablePointer<UInt64>
    private enum Slot: Int { case before, parent, child }

    init() {
        do { page = try MappedRegion.anonymous(length: 4096, shared: true) } catch {
            Failure.exit("\(error)", code: 1)
        }
        words = page.base.bindMemory(to: UInt64.self, capacity: 3)
    }

    func release() { try? page.unmap() }

    /// In the child, just before it leaves.
    func childStage(nanoseconds: UInt64) { store(nanoseconds, .child) }

    func parentStages(before: UInt64, parent: UInt64) {
        store(before, .before)
        store(parent, .parent)
    }

    /// After the parent reaped the child: the fork's three figures.
    func childExited() {
        before.append(take(.before))
        parent.append(take(.parent))
        child.append(take(.child))
    }

    /// The measured forks only (after the warm-up rounds).
    func p50(last count: Int) -> (before: Double, parent: Double, child: Double) {
        (Percentiles(before.suffix(count)).p50, Percentiles(parent.suffix(count)).p50, Percentiles(child.suffix(count)).p50)
    }

    private func store(_ nanoseconds: UInt64, _ slot: Slot) { fks_store_release_u64(words + slot.rawValue, nanoseconds) }

    private func take(_ slot: Slot) -> Double {
        let microseconds = Double(fks_load_acquire_u64(words + slot.rawValue)) / 1000
        fks_store_release_u64(words + slot.rawValue, 0)
        return microseconds
    }
}

/// Makes sure the runtime's workers run here and are idle: one job runs
/// to its end (starting the threads if a fork deferred them).
private func wakeWorkers(_ runtime: WorkerRuntime) {
    let done = BenchWord()
    runtime.submit { done.store(1) }
    let deadline = Deadline.after(milliseconds: 10_000)
    while done.load() == 0 {
        if deadline.hasPassed { Failure.exit("the runtime's workers did not run a job within 10 s", code: 1) }
        sched_yield()
    }
    if runtime.threadsDeferred { Failure.exit("the runtime's workers did not start", code: 1) }
}

private func signed(_ value: Double) -> String { (value >= 0 ? "+" : "") + fixed(value, 1) }

/// "parent,child" mean minor faults per fork, for the JSON line.
private func faultPair(_ figures: Percentiles) -> String {
    figures.faults.map { fixed($0.parent, 1) + "," + fixed($0.child, 1) } ?? ""
}

/// `Fork.fork()` as a pid: 0 in the child, the child's pid in the parent.
private func hookedFork(_ registry: AtForkRegistry, timing: StageTimes? = nil) -> pid_t {
    do {
        guard let timing else {
            switch try Fork.fork(registry: registry) {
            case .child: return 0
            case .parent(let child): return child
            }
        }
        // The same stages as Fork.fork(), each timed.
        let start = Clock.monotonicNanoseconds()
        let preparation = try Fork.prepare(registry: registry)
        let prepared = Clock.monotonicNanoseconds()
        let pid = Glibc.fork()
        if pid == 0 {
            let entered = Clock.monotonicNanoseconds()
            Fork.completeInChild(preparation)
            timing.childStage(nanoseconds: Clock.monotonicNanoseconds() - entered)
            return 0
        }
        let returned = Clock.monotonicNanoseconds()
        try Fork.completeInParent(preparation, child: pid, error: .current)
        timing.parentStages(before: prepared - start, parent: Clock.monotonicNanoseconds() - returned)
        return pid
    } catch {
        Failure.exit("Fork.fork(): \(error)", code: 1)
    }
}

struct Percentiles {
    let p50: Double
    let p99: Double
    /// Mean minor page faults per fork, in the parent and in the child.
    var faults: (parent: Double, child: Double)? = nil
    /// In the order taken.
    let samples: [Double]

    init(_ samples: [Double], faults: (parent: Double, child: Double)? = nil) {
        self.samples = samples
        let sorted = samples.sorted()
        p50 = sorted.isEmpty ? .nan : sorted[sorted.count / 2]
        p99 = sorted.isEmpty ? .nan : sorted[min(sorted.count - 1, (sorted.count * 99 + 99) / 100 - 1)]
        self.faults = faults
    }
}

/// Minor page faults so far, of this process or of its waited-for children.
private func minorFaults(_ who: __rusage_who) -> Int { resourceUsage(who).ru_minflt }

/// A heap of the given size, every page written, so fork() copies real
/// page tables (an untouched allocation has none to copy).
private struct TouchedHeap {
    let bytes: UnsafeMutableRawPointer?

    init(mebibytes: Int) {
        guard mebibytes > 0 else { bytes = nil; return }
        let count = mebibytes << 20
        let bytes = UnsafeMutableRawPointer.allocate(byteCount: count, alignment: 4096)
        memset(bytes, 0xA5, count)
        self.bytes = bytes
    }

    func release() { bytes?.deallocate() }
}

/// Keeps the runtime's workers busy: jobs of a fixed length, each queueing
/// its successor, until stopped.
private final class BusyWork: @unchecked Sendable {
    let runtime: WorkerRuntime
    let nanoseconds: UInt64
    private let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)  // [0] jobs done, [1] stop

    init(runtime: WorkerRuntime, microseconds: UInt64) {
        self.runtime = runtime
        nanoseconds = microseconds * 1000
        counters.initialize(repeating: 0, count: 2)
    }

    deinit { counters.deallocate() }

    func start() { runtime.submit { [self] in job() } }

    private func job() {
        let end = Clock.monotonicNanoseconds() + nanoseconds
        while Clock.monotonicNanoseconds() < end {}
        _ = fks_fetch_add_u64(counters, 1)
        if fks_load_acquire_u64(counters + 1) == 0 { start() }
    }

    /// Stops queueing; returns how many jobs ran.
    func stop() -> UInt64 {
        fks_store_release_u64(counters + 1, 1)
        return fks_load_acquire_u64(counters)
    }
}

/// The cancel-to-wake waiter's side: a source, a silent socket, and the
/// pipes that pace the rounds.
private final class WakeProbe: @unchecked Sendable {
    let source: CancellationSource
    let silent: (Socket, Socket)
    let ready: BenchPipe
    let done: BenchPipe
    let rounds: Int
    let returnedAt = BenchWord()
    let waiterTid = BenchWord()

    init(rounds: Int) throws {
        source = try CancellationSource()
        silent = try Socket.pair()
        ready = try BenchPipe()
        done = try BenchPipe()
        self.rounds = rounds
    }

    deinit {
        try? silent.0.fileDescriptor.close()
        try? silent.1.fileDescriptor.close()
        ready.close()
        done.close()
    }

    /// Whether the waiter thread sleeps in poll/ppoll now (/proc/self/task/<tid>/syscall).
    func waiterIsPolling() -> Bool {
        guard let bytes = try? FileSystem.readFile("/proc/self/task/\(waiterTid.load())/syscall") else { return false }
        let number = bytes.prefix { $0 != UInt8(ascii: " ") }
        return number.elementsEqual("\(SYS_poll)".utf8) || number.elementsEqual("\(SYS_ppoll)".utf8)
    }

    func runWaiter() {
        _ = "fks-bench-wait".withCString { fks_set_current_thread_name($0) }
        waiterTid.store(UInt64(fks_gettid()))
        for _ in 0..<rounds {
            let token = source.begin()
            ready.signal()
            _ = try? token.wait(for: silent.0.fileDescriptor, events: Int16(POLLIN), before: .after(milliseconds: 5000))
            returnedAt.store(Clock.monotonicNanoseconds())
            source.end(token)
            done.signal()
        }
    }
}

/// Thread entry point: a nonisolated function in an ordinary file.
nonisolated private func wakeProbeWaiter(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    Unmanaged<WakeProbe>.fromOpaque(raw!).takeRetainedValue().runWaiter()
    return nil
}

private final class BenchWord: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    init() { word.initialize(to: 0) }
    deinit { word.deallocate() }
    // Release/acquire: the waiter's timestamp is complete before `done` is read.
    func load() -> UInt64 { fks_load_acquire_u64(word) }
    func store(_ value: UInt64) { fks_store_release_u64(word, value) }
}

private struct BenchPipe {
    let read: FileDescriptor
    let write: FileDescriptor

    init() throws {
        (read, write) = try FileDescriptor.pipe()
    }

    func signal() {
        var byte: UInt8 = 1
        _ = try? withUnsafeBytes(of: &byte) { try write.writeAll($0) }
    }

    /// One byte, waiting at most 10 s.
    func next() -> Bool {
        guard let events = try? read.poll(for: Int16(POLLIN), deadline: .after(milliseconds: 10_000)), events != 0 else { return false }
        var byte: UInt8 = 0
        return (try? withUnsafeMutableBytes(of: &byte) { try read.read(into: $0) }) == 1
    }

    func close() {
        try? read.close()
        try? write.close()
    }
}
