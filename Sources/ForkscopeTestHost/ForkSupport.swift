import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix

// What the fork scenarios share: reporting, child exit steps, one-byte
// pipes with deadlines, atomic words that a forked child inherits, and
// named threads. No sleeps: every wait is a poll or a join with a deadline.

/// Prints one line on stdout (the test reads it).
func report(_ text: String) { try? FileDescriptor.standardOutput.writeAll(text + "\n") }

/// Ends the scenario in the parent: names the failed step, exits with it.
func fail(_ step: Int32, _ why: String) -> Never {
    report("fail \(step) \(why)")
    exit(step)
}

func require(_ condition: Bool, _ step: Int32, _ why: @autoclosure () -> String) {
    if !condition { fail(step, why()) }
}

/// What a forked child checks, in order; it leaves with `_exit(step)` at
/// the first check that fails, so the parent (and the test) learn which.
enum ChildStep: Int32, CustomStringConvertible {
    case forkGeneration = 1, runtimeGeneration, runtimeNotRunning, noJob, jobInProgressAtFork, parentJobQueued
    case sendNotEnded, sendPermitRefused, sendCancelledInChild, recoveryNotDetected, recoveredTwice, quiescing, threadNames
    case setup, daemonSession, threadsNotDeferred, inheritedEventFD, noFreshEventFD, cancelDidNotWake, recoveredWithDetectionOff

    var description: String {
        switch self {
        case .threadsNotDeferred: "the rebuilt runtime started threads before its first use"
        case .inheritedEventFD: "the child still uses the eventfd it shares with its parent"
        case .noFreshEventFD: "the child's first send did not take an eventfd of its own"
        case .cancelDidNotWake: "a cancel in the child did not wake its sender's poll"
        case .forkGeneration: "Fork.generation is not the parent's + 1"
        case .runtimeGeneration: "the runtime is not at generation + 1"
        case .runtimeNotRunning: "the rebuilt runtime is not running"
        case .noJob: "the rebuilt runtime did not run a job"
        case .jobInProgressAtFork: "the job in progress had not finished when the fork happened"
        case .parentJobQueued: "the parent's queued jobs were kept in the child"
        case .sendNotEnded: "the send in flight had not ended when the fork happened"
        case .sendPermitRefused: "the child could not take the send lock"
        case .sendCancelledInChild: "a fresh send in the child was cancelled or woken"
        case .recoveryNotDetected: "recoverFromUnhookedFork() did not detect the raw fork"
        case .recoveredTwice: "recoverFromUnhookedFork() recovered twice"
        case .recoveredWithDetectionOff: "a trace recovered from the raw fork while fork detection was off"
        case .quiescing: "the child inherited a quiescing participant"
        case .threadNames: "a thread other than main and fks-* exists"
        case .setup: "setting up the child's check failed"
        case .daemonSession: "the daemon is a session leader or kept its parent"
        }
    }
}

/// In a forked child: die with the parent (no orphan outlives a killed
/// host) and end itself if it hangs.
func enterForkedChild() {
    _ = fks_set_pdeathsig(SIGKILL)
    alarm(10)
}

func childRequire(_ condition: Bool, _ step: ChildStep) {
    if !condition { _exit(step.rawValue) }
}

/// Waits for `child` (pidfd + poll, with a deadline); SIGKILLs it when the
/// deadline passes. Fails the scenario unless it exited with status 0.
func expectChildSuccess(_ child: pid_t, step: Int32, within milliseconds: UInt64 = 5000, _ what: String = "child") {
    let status: WaitStatus?
    do { status = try ProcessControl.wait(for: child, deadline: .after(milliseconds: milliseconds)) } catch {
        fail(step, "waiting for \(what) \(child): \(error)")
    }
    guard let status else {
        let where_ = threadStates(of: child)
        try? ProcessControl.send(SIGKILL, to: child)
        _ = try? ProcessControl.wait(for: child)
        fail(step, "\(what) \(child) did not exit within \(milliseconds) ms (killed); its threads: \(where_)")
    }
    guard status == .exited(0) else {
        if case .exited(let code) = status, let failed = ChildStep(rawValue: code) {
            fail(step, "\(what) \(child) failed step \(code): \(failed)")
        }
        fail(step, "\(what) \(child) \(status)")
    }
}

/// A pipe whose ends a forked child inherits.
struct Pipe {
    let read: FileDescriptor
    let write: FileDescriptor

    init() {
        guard let ends = try? FileDescriptor.pipe() else { fail(90, "pipe: \(Errno.current)") }
        read = ends.read
        write = ends.write
    }

    func signal(_ byte: UInt8 = 1) {
        var value = byte
        _ = try? withUnsafeBytes(of: &value) { try write.writeAll($0) }
    }

    /// One byte within `milliseconds`; nil when the deadline passed.
    func next(within milliseconds: UInt64 = 5000) -> UInt8? {
        guard let events = try? read.poll(for: Int16(POLLIN), deadline: .after(milliseconds: milliseconds)),
              events & Int16(POLLIN) != 0 else { return nil }
        var byte: UInt8 = 0
        let count = try? withUnsafeMutableBytes(of: &byte) { try read.read(into: $0) }
        return count == 1 ? byte : nil
    }

    /// Whether anything is waiting to be read now.
    var isEmpty: Bool { ((try? read.poll(for: Int16(POLLIN), deadline: .after(milliseconds: 0))) ?? 0) == 0 }

    func close() {
        try? read.close()
        try? write.close()
    }
}

/// A 64-bit word shared by threads, and inherited by a forked child.
final class AtomicWord: @unchecked Sendable {
    private let word: UnsafeMutablePointer<UInt64>

    init(_ value: UInt64 = 0) {
        word = .allocate(capacity: 1)
        word.initialize(to: value)
    }

    deinit { word.deallocate() }

    // Acquire/release: what a thread wrote before storing is visible to
    // whoever loads the stored value.
    func load() -> UInt64 { fks_load_acquire_u64(word) }
    func store(_ value: UInt64) { fks_store_release_u64(word, value) }
    @discardableResult func add(_ value: UInt64 = 1) -> UInt64 { fks_fetch_add_u64(word, value) + value }
}

/// Marks the scenarios publish beside the core's own events (`mark`, a0).
enum ScenarioMark: UInt64 {
    case jobRan = 1, jobStarted, jobEnded, sendBegan, sendEnded, agentAnswered, daemonReady

    func publish(_ a1: UInt64 = 0, _ a2: UInt64 = 0, generation: UInt32 = 0) {
        Telemetry.publish(.mark, generation: generation, rawValue, a1, a2)
    }
}

func pidArgument(_ pid: pid_t) -> UInt64 { UInt64(UInt32(bitPattern: pid)) }

/// Queues a job and waits for it to run: the runtime's workers work.
/// The job publishes `jobRan` with this process's pid and the runtime's
/// generation.
func runtimeRunsAJob(_ runtime: WorkerRuntime, within milliseconds: UInt64 = 3000) -> Bool {
    let ran = Pipe()
    let queued = runtime.submit {
        ScenarioMark.jobRan.publish(pidArgument(getpid()), UInt64(runtime.generation), generation: runtime.generation)
        ran.signal()
    }
    let done = queued && ran.next(within: milliseconds) != nil
    // A job that never ran keeps its descriptor: closing it could let the
    // job write into a reused number later.
    if done { ran.close() } else { try? ran.read.close() }
    return done
}

/// Makes every worker run a job at the same time (each job waits for the
/// others), so every worker thread exists and has named itself.
func allWorkersRunTogether(_ runtime: WorkerRuntime, within milliseconds: UInt64 = 3000) -> Bool {
    let arrived = AtomicWord()
    let ran = Pipe()
    let workers = UInt64(runtime.workerCount)
    for _ in 0..<workers {
        let queued = runtime.submit {
            arrived.add()
            let deadline = Deadline.after(milliseconds: milliseconds)
            while arrived.load() < workers && !deadline.hasPassed { sched_yield() }
            ran.signal()
        }
        guard queued else { return false }
    }
    for _ in 0..<workers where ran.next(within: milliseconds + 1000) == nil { return false }
    return arrived.load() == workers
}

/// The thread names of this process, by tid (`/proc/self/task/*/comm`).
func ownThreadNames() -> [pid_t: String] {
    var names: [pid_t: String] = [:]
    for entry in (try? FileSystem.contents(ofDirectory: "/proc/self/task")) ?? [] {
        guard let tid = pid_t(entry), let bytes = try? FileSystem.readFile("/proc/self/task/\(tid)/comm") else { continue }
        names[tid] = String(decoding: bytes.prefix { $0 != 10 }, as: UTF8.self)
    }
    return names
}

/// Only the main thread (tid == pid) and our `fks-*` threads.
func onlyOurThreads(_ names: [pid_t: String], pid: pid_t = getpid()) -> Bool {
    names.allSatisfy { $0.key == pid || $0.value.hasPrefix("fks-") }
}

/// Where each thread of `pid` is (name, state, syscall, kernel wait
/// channel), for the message of a child that hung.
func threadStates(of pid: pid_t) -> String {
    func text(_ path: String) -> String {
        guard let bytes = try? FileSystem.readFile(path) else { return "?" }
        return String(decoding: bytes.prefix { $0 != 10 }, as: UTF8.self)
    }
    let tids = ((try? FileSystem.contents(ofDirectory: "/proc/\(pid)/task")) ?? []).compactMap { pid_t($0) }.sorted()
    return tids.map { tid in
        let base = "/proc/\(pid)/task/\(tid)"
        let stat = text(base + "/stat")
        let state = stat.split(separator: ")").last?.split(separator: " ").first.map(String.init) ?? "?"
        let syscall = text(base + "/syscall").split(separator: " ").first.map(String.init) ?? "?"
        return "\(tid) \(text(base + "/comm")) \(state) syscall=\(syscall) wchan=\(text(base + "/wchan"))"
    }.joined(separator: "; ")
}

/// Whether thread `tid` of this process is blocked in futex(2) — waiting
/// on a lock or condition (`/proc/self/task/<tid>/syscall`).
func threadWaitsInFutex(_ tid: pid_t) -> Bool {
    guard let bytes = try? FileSystem.readFile("/proc/self/task/\(tid)/syscall") else { return false }
    return bytes.prefix { $0 != UInt8(ascii: " ") }.elementsEqual("\(SYS_futex)".utf8)
}

/// Spins (yielding, never sleeping) until `condition` holds or the
/// deadline passes; returns whether it holds.
func spin(until condition: () -> Bool, within milliseconds: UInt64 = 5000) -> Bool {
    let deadline = Deadline.after(milliseconds: milliseconds)
    while !condition() {
        if deadline.hasPassed { return false }
        sched_yield()
    }
    return true
}

/// A named POSIX thread running `body`.
struct HostThread {
    let thread: pthread_t

    init(name: String, _ body: @escaping () -> Void) {
        let context = Unmanaged.passRetained(HostThreadBody(name: name, body: body)).toOpaque()
        var thread = pthread_t()
        guard pthread_create(&thread, nil, hostThreadMain, context) == 0 else { fail(91, "pthread_create \(name)") }
        self.thread = thread
    }

    func join() { pthread_join(thread, nil) }
}

private final class HostThreadBody {
    let name: String
    let body: () -> Void
    init(name: String, body: @escaping () -> Void) {
        self.name = name
        self.body = body
    }
}

/// Thread entry point: a nonisolated function in an ordinary file (a
/// closure written in main.swift would be main-actor isolated and trap).
nonisolated private func hostThreadMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let context = Unmanaged<HostThreadBody>.fromOpaque(raw!).takeRetainedValue()
    _ = context.name.withCString { fks_set_current_thread_name($0) }
    context.body()
    return nil
}
