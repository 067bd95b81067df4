// dashboard-fixture-host: real processes that publish scripted lifecycle
// events into a ring, for the dashboard's model and render tests. Every
// process is a real fork() (so pids, lanes, lane owners and the fork
// counter are the ring's own), and every event carries an explicit time
// (milliseconds after the ring's creation), so the folded result does not
// depend on scheduling. Prints one line per process: `NAME PID START_TICKS`,
// then `done`. The test process itself never forks.
//
//   fork-during-send RING   a fork with policy cancel while a send is in flight
//   cancel RING             an operator cancels an in-flight send; it is re-sent
//   pid-reuse RING          a pid reused by a second process (real when
//                           /proc/sys/kernel/ns_last_pid is writable, else two
//                           incarnations announced on two lanes of one process)
//   overwrite RING COUNT    a child publishes COUNT events into a small lane
//   render RING             the rich scene the render references are made of
//   reaper RING             DescendantReaper: spawn a process that orphans a
//                           grandchild and one that ignores SIGTERM, end all
import EventRing
import Glibc
import Posix
import Terminal

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    try? FileDescriptor.standardError.writeAll("usage: dashboard-fixture-host SCENARIO RING [COUNT]\n")
    exit(64)
}
let scenario = arguments[1], ringPath = arguments[2]
let count = arguments.count > 3 ? Int(arguments[3]) ?? 0 : 0

let ring: Ring
let base: UInt64
do {
    ring = try Ring.open(at: ringPath)
    base = try RingReader(path: ringPath).header.createdMonotonic
} catch {
    try? FileDescriptor.standardError.writeAll("dashboard-fixture-host: \(error)\n")
    exit(2)
}
let w = ring.writer

func say(_ text: String) { try? FileDescriptor.standardOutput.writeAll(text + "\n") }
func ms(_ milliseconds: Double) -> UInt64 { base + UInt64(milliseconds * 1_000_000) }
func me() -> UInt64 { UInt64(UInt32(bitPattern: getpid())) }
func startTicks() -> UInt64 { ProcessControl.startTime(of: getpid()) ?? 0 }
func announce(_ name: String) { say("\(name) \(getpid()) \(startTicks())") }

/// Publishes `kind` at `at` milliseconds.
func at(_ time: Double, _ kind: EventKind, generation: UInt32 = 0, _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0) {
    w.publish(kind, at: ms(time), generation: generation, a0, a1, a2, a3)
}

func start(_ time: Double, role: ProcessRole, name: String, parent: pid_t = getppid()) {
    at(time, .processStart, UInt64(UInt32(bitPattern: parent)), role.rawValue, w.intern(name), startTicks())
}

/// Forks; the child runs `body`, then leaves with `_exit(0)`. Returns the
/// child's pid in the parent (after the child announced itself, so lines
/// come out in order).
func child(_ body: () -> Void) -> pid_t {
    let pipe = try! FileDescriptor.pipe()
    let pid = fork()
    if pid == 0 {
        try? pipe.read.close()
        body()
        try? pipe.write.close()
        _exit(0)
    }
    precondition(pid > 0, "fork failed")
    try? pipe.write.close()
    var byte: UInt8 = 0
    _ = withUnsafeMutableBytes(of: &byte) { try? pipe.read.read(into: $0) }  // EOF once the child is done
    try? pipe.read.close()
    return pid
}

func reap(_ pid: pid_t) { _ = try? ProcessControl.wait(for: pid) }

/// A send from start to outcome.
func send(_ id: UInt64, from t0: Double, to t1: Double?, spans: UInt64 = 10, bytes: UInt64 = 2400, attempt: UInt64 = 1,
          outcome: String = "ok", generation: UInt32 = 0) {
    at(t0, .sendStart, generation: generation, id, spans, bytes, attempt)
    guard let t1 else { return }
    let us = UInt64((t1 - t0) * 1000)
    switch outcome {
    case "ok": at(t1, .sendComplete, generation: generation, id, 200, us, spans)
    case "fork": at(t1, .sendCancel, generation: generation, id, CancelReason.fork.rawValue, us, spans)
    case "operator": at(t1, .sendCancel, generation: generation, id, CancelReason.operatorRequest.rawValue, us, spans)
    default: at(t1, .sendFail, generation: generation, id, w.intern(outcome), us, UInt64(ECONNREFUSED))
    }
}

/// The `before` stage of a hooked fork at `t`, then the fork itself; the
/// parent publishes `parent`, the child runs `inChild` after `fork.child`.
func hookedFork(at t: Double, policy: ForkPolicy = .drain, index: UInt64, inChild: @escaping () -> Void) -> pid_t {
    let hook = w.intern("transport http://127.0.0.1:8126")
    at(t, .serverHook, w.intern("before_fork"), w.intern("unicorn"), index)
    at(t + 0.01, .forkBeforeStart, 1, policy.rawValue)
    at(t + 0.2, .runtimeQuiesce, generation: 1, 1, 1)
    at(t + 0.3, .hookRun, ForkStage.before.rawValue, hook, Outcome.ok.rawValue, 290)
    at(t + 0.31, .forkBeforeEnd, Outcome.ok.rawValue, 300, 0)
    let pid = child {
        at(t + 0.5, .forkChild, generation: 1, UInt64(UInt32(bitPattern: getppid())), 1)
        at(t + 0.6, .runtimeRebuild, generation: 2, 1, 2, w.intern("fork child hook"))
        at(t + 0.7, .hookRun, generation: 1, ForkStage.child.rawValue, hook, Outcome.ok.rawValue, 200)
        inChild()
    }
    at(t + 0.45, .forkParent, UInt64(UInt32(bitPattern: pid)), 440)
    at(t + 0.55, .runtimeResume, generation: 1, 1, 1)
    at(t + 0.6, .hookRun, ForkStage.parent.rawValue, hook, Outcome.ok.rawValue, 60)
    at(t + 0.65, .workerSpawned, UInt64(UInt32(bitPattern: pid)), index)
    return pid
}

switch scenario {
case "fork-during-send":
    announce("master")
    start(0, role: .master, name: "master")
    at(1, .transportOpen, 1, w.intern("http://127.0.0.1:8126"), ForkPolicy.cancel.rawValue)
    at(1000, .sendStart, 1, 12, 3000, 1)
    at(1100, .forkBeforeStart, 1, ForkPolicy.cancel.rawValue)
    at(1100.1, .cancelRequested, 1, CancelReason.fork.rawValue, 1)
    at(1101, .sendCancel, 1, CancelReason.fork.rawValue, 101_000, 12)
    at(1101.1, .spanRequeued, 12, CancelReason.fork.rawValue, 1)
    at(1102, .runtimeQuiesce, generation: 1, 1, 1)
    at(1103, .forkBeforeEnd, Outcome.ok.rawValue, 3000, 0)
    let worker = child {
        announce("worker")
        at(1104.5, .forkChild, generation: 1, UInt64(UInt32(bitPattern: getppid())), 1)
        at(1104.6, .runtimeRebuild, generation: 2, 1, 2, w.intern("fork child hook"))
        start(1104.7, role: .worker, name: "worker 0")
        at(1150, .threadStart, generation: 2, me(), w.intern("fks-flush0"))
    }
    at(1105, .forkParent, UInt64(UInt32(bitPattern: worker)), 5000)
    at(1106, .runtimeResume, generation: 1, 1, 1)
    at(1107, .workerSpawned, UInt64(UInt32(bitPattern: worker)), 0)
    send(2, from: 1200, to: 1250, spans: 12, bytes: 3000, attempt: 2)
    at(1251, .writerGauge, 0, 12, 12, 0)
    at(1251, .writerLosses, 12, 0, 1, 0)
    reap(worker)
case "cancel":
    announce("worker")
    start(0, role: .worker, name: "worker")
    send(1, from: 100, to: 150)
    at(500, .sendStart, 2, 8, 2000, 1)
    at(2500, .cancelRequested, 2, CancelReason.operatorRequest.rawValue, 1)
    at(2502, .sendCancel, 2, CancelReason.operatorRequest.rawValue, 2_002_000, 8)
    at(2502.5, .spanRequeued, 8, CancelReason.operatorRequest.rawValue, 2)
    send(3, from: 2700, to: 2750, spans: 8, bytes: 2000, attempt: 2)
    at(2751, .writerGauge, 0, 18, 18, 0)
    at(2751, .writerLosses, 8, 0, 1, 0)
case "pid-reuse":
    announce("master")
    start(0, role: .master, name: "master")
    let first = child {
        announce("first")
        start(10, role: .worker, name: "first incarnation")
        send(1, from: 20, to: 30)
        at(40, .processExit, 0, 0)
    }
    reap(first)
    at(45, .workerExited, UInt64(UInt32(bitPattern: first)), 0, 0, 0)
    // Start times are clock ticks (10 ms): let one pass, so the two
    // incarnations differ by start time as a reused pid does in life.
    var none: [pollfd] = []
    _ = try? poll(&none, timeoutMilliseconds: 30)
    // Ask the kernel for the same pid again (root, in this pid namespace).
    var second: pid_t = 0
    for _ in 0..<50 {
        guard let fd = try? FileDescriptor.open("/proc/sys/kernel/ns_last_pid", O_WRONLY | O_CLOEXEC) else { break }
        let wrote = (try? fd.writeAll("\(first - 1)")) != nil
        try? fd.close()
        guard wrote else { break }
        second = child {
            guard getpid() == first else { return }
            announce("second")
            start(50, role: .worker, name: "second incarnation")
            send(1, from: 60, to: 70)
        }
        reap(second)
        if second == first { break }
    }
    if second == first {
        say("reuse real")
    } else {
        // Without the privilege: the same pid announcing a second start on
        // a second lane (a second open of the ring claims another lane).
        let simulated = child {
            let again = try! Ring.open(at: ringPath).writer
            start(10, role: .worker, name: "first incarnation")
            send(1, from: 20, to: 30)
            at(40, .processExit, 0, 0)
            let ticks = startTicks() + 1
            again.publish(.processStart, at: ms(50), generation: 0, UInt64(UInt32(bitPattern: getppid())), ProcessRole.worker.rawValue,
                          again.intern("second incarnation"), ticks)
            again.publish(.sendStart, at: ms(60), generation: 0, 1, 10, 2400, 1)
            again.publish(.sendComplete, at: ms(70), generation: 0, 1, 200, 10_000, 10)
            say("first \(getpid()) \(startTicks())")
            say("second \(getpid()) \(ticks)")
        }
        reap(simulated)
        say("reuse simulated")
    }
case "overwrite":
    announce("master")
    start(0, role: .master, name: "master")
    let noisy = child {
        announce("noisy")
        start(1, role: .worker, name: "noisy worker")
        for n in 0..<count { at(2 + Double(n) * 0.01, .writerGauge, UInt64(n), UInt64(n), UInt64(n), 0) }
    }
    at(1, .workerSpawned, UInt64(UInt32(bitPattern: noisy)), 0)
    reap(noisy)
case "render":
    // A unicorn-like master with preload, four workers (one killed, one
    // forked without hooks), sends that complete, are cancelled (by a fork
    // and by the operator), fail and stay in flight, and a noisy process
    // whose lane was overwritten. The scene ends at 9 s.
    announce("master")
    let hookName = w.intern("transport http://127.0.0.1:8126")
    start(0, role: .master, name: "unicorn master")
    for stage in ForkStage.allCases { at(0.5, .hookRegistered, stage.rawValue, UInt64(stage.rawValue), hookName) }
    at(0.6, .transportOpen, 1, w.intern("http://127.0.0.1:8126"), ForkPolicy.cancel.rawValue)
    at(0.7, .serverHook, w.intern("app_loaded(preload)"), w.intern("unicorn"), 0)
    at(1, .threadStart, generation: 1, me(), w.intern("fks-flush0"))
    send(1, from: 200, to: 260, generation: 1)
    let w1 = hookedFork(at: 1000, index: 0) {
        announce("worker1")
        start(1001, role: .worker, name: "unicorn worker 0")
        at(1002, .threadStart, generation: 2, me(), w.intern("fks-flush0"))
        send(1, from: 1400, to: 1450, generation: 2)
        send(2, from: 1800, to: 1840, generation: 2)
        send(3, from: 3000, to: 5500, spans: 40, bytes: 9000, generation: 2)
        at(5501, .writerGauge, generation: 2, 0, 60, 60, 0)
        at(5501, .writerLosses, generation: 2, 0, 0, 0, 0)
    }
    send(2, from: 1500, to: 1540, generation: 1)
    let w2 = hookedFork(at: 2000, index: 1) {
        announce("worker2")
        start(2001, role: .worker, name: "unicorn worker 1")
        send(1, from: 2500, to: 2560, generation: 2)
        at(4000, .sendStart, generation: 2, 2, 15, 3400, 1)
        at(4300, .cancelRequested, generation: 2, 2, CancelReason.operatorRequest.rawValue, 1)
        at(4302, .sendCancel, generation: 2, 2, CancelReason.operatorRequest.rawValue, 302_000, 15)
        at(4302.5, .spanRequeued, 15, CancelReason.operatorRequest.rawValue, 2)
        send(3, from: 4500, to: 4560, spans: 15, bytes: 3400, attempt: 2, generation: 2)
        send(4, from: 6000, to: 6200, outcome: "connection refused (ECONNREFUSED) to 127.0.0.1:8126", generation: 2)
        at(6201, .spanRequeued, 10, CancelReason.agentError.rawValue, 4)
        at(6300, .writerGauge, generation: 2, 10, 45, 35, 0)
        at(6300, .writerLosses, generation: 2, 25, 0, 1, 1)
    }
    at(4290, .operatorCommand, w.intern("cancel"), 4242, 0, UInt64(UInt32(bitPattern: w2)))
    send(3, from: 3000, to: 3050, generation: 1)
    // A fork while the master's own send is in flight: policy cancel.
    at(4900, .sendStart, generation: 1, 4, 20, 4800, 1)
    at(5000.05, .cancelRequested, generation: 1, 4, CancelReason.fork.rawValue, 1)
    at(5000.1, .sendCancel, generation: 1, 4, CancelReason.fork.rawValue, 100_100, 20)
    at(5000.2, .spanRequeued, 20, CancelReason.fork.rawValue, 4)
    let w3 = hookedFork(at: 5000, policy: .cancel, index: 2) {
        announce("worker3")
        start(5001, role: .worker, name: "unicorn worker 2")
        send(1, from: 5600, to: 5650, generation: 2)
        at(8000, .spanDropped, 30, DropReason.bufferFull.rawValue, 0)
        at(8001, .writerGauge, generation: 2, 1000, 1200, 170, 0)
        at(8001, .writerLosses, generation: 2, 0, 30, 0, 0)
    }
    send(5, from: 5300, to: 5360, spans: 20, bytes: 4800, attempt: 2, generation: 1)
    at(7000, .operatorCommand, w.intern("kill"), 4242, 0, UInt64(UInt32(bitPattern: w1)))
    at(7010, .workerExited, UInt64(UInt32(bitPattern: w1)), 0, UInt64(SIGTERM), 0)
    // The Sqreen bug: a raw fork() the hooks never saw.
    at(7500, .operatorCommand, w.intern("fork-unsafe"), 4242, 0, 0)
    let w4 = child {
        announce("worker4")
        at(7502, .forkDetectedWithoutHooks, generation: 1, UInt64(UInt32(bitPattern: getppid())), 1)
        at(7503, .runtimeRebuild, generation: 2, 1, 2, w.intern("fork detected without hooks"))
        start(7504, role: .worker, name: "unicorn worker 3 (unhooked)")
        at(8500, .sendStart, generation: 2, 1, 5, 1200, 1)
    }
    at(7501, .workerSpawned, UInt64(UInt32(bitPattern: w4)), 3)
    let noisy = child {
        announce("noisy")
        start(100, role: .child, name: "noisy helper")
        for n in 0..<150 { at(100 + Double(n) * 50, .mark, UInt64(n)) }
    }
    at(100, .workerSpawned, UInt64(UInt32(bitPattern: noisy)), 9)
    at(8000, .writerGauge, generation: 1, 2, 90, 88, 0)
    at(8000, .writerLosses, generation: 1, 20, 0, 1, 0)
    for pid in [w1, w2, w3, w4, noisy] { reap(pid) }
case "reaper":
    // The reaper makes this process a child subreaper: the orphaned
    // grandchild is re-parented here, and endAll must end it too.
    let reaper = try! DescendantReaper()
    let quiet: [Spawn.FileAction] = [.nullDevice(as: .standardInput), .nullDevice(as: .standardOutput), .nullDevice(as: .standardError)]
    try! reaper.spawn(Spawn(path: "/bin/sh", arguments: ["sh", "-c", "(sleep 300 &); exec sleep 300"], fileActions: quiet))
    try! reaper.spawn(Spawn(path: "/bin/sh", arguments: ["sh", "-c", "trap '' TERM; exec sleep 300"], fileActions: quiet))
    let deadline = Deadline(seconds: 10)
    var descendants: [pid_t] = []
    // Three sleeps: two spawned (exec'd) and the orphan, now our child.
    while !deadline.hasPassed {
        descendants = (try? ProcessControl.children(of: getpid())) ?? []
        let sleeping = descendants.filter { (try? FileSystem.readFile("/proc/\($0)/comm", limit: 64)).map { String(decoding: $0, as: UTF8.self) } == "sleep\n" }
        if sleeping.count == 3 { break }
        var none: [pollfd] = []
        _ = try? poll(&none, timeoutMilliseconds: 10)
    }
    for pid in descendants { say("proc\(pid) \(pid) \(ProcessControl.startTime(of: pid) ?? 0)") }
    let report = reaper.endAll(grace: 0.5)
    say("report terminated=\(report.terminated.count) killed=\(report.killed.count) survivors=\(report.survivors.count)")
default:
    try? FileDescriptor.standardError.writeAll("dashboard-fixture-host: unknown scenario \(scenario)\n")
    exit(64)
}
say("done")
exit(0)
