import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The Python binding under real gunicorn (Debian's /usr/bin/gunicorn,
/// which runs /usr/bin/python3), started by `forkscope host gunicorn`:
/// 2 workers, requests from examples/gunicorn/load.py, a graceful stop,
/// then the agent's counts and the ring's events.
///
/// The hook order asserted is gunicorn's (arbiter.py `spawn_worker`:
/// pre_fork in the master → os.fork() → post_fork in the child →
/// worker.init_process() → post_worker_init), with the binding's fork
/// stages where os.register_at_fork runs them: around os.fork().
final class GunicornHostTests: XCTestCase {
    func testPreloadTwoWorkersDeliverEvery300SpansOnceWithForkStagesInGunicornHookOrder() throws {
        try checkGracefulRun(preload: true)
    }

    func testWithoutPreloadTwoWorkersDeliverEvery300SpansOnceWithForkStagesInGunicornHookOrder() throws {
        try checkGracefulRun(preload: false)
    }

    private func checkGracefulRun(preload: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let agent = try MockAgent.start()
        let host = try GunicornHost(preload: preload, agent: agent)
        let load = try host.load(300)
        XCTAssertEqual(load.ok, 300, file: file, line: line)
        XCTAssertEqual(load.perPid.count, 2, "both workers served: \(load.perPid)", file: file, line: line)
        let output = try host.stop(file: file, line: line)
        XCTAssertTrue(output.contains("stopped   gunicorn exited with status 0"), output, file: file, line: line)

        let stats = try agent.stats()
        XCTAssertEqual(stats.spans, 300, file: file, line: line)
        XCTAssertEqual(stats.unique, 300, file: file, line: line)
        XCTAssertEqual(stats.duplicates, 0, file: file, line: line)
        for (pid, served) in load.perPid {
            XCTAssertEqual(stats.perProcess[pid]?.spans, served, "worker \(pid)", file: file, line: line)
        }

        let ring = try RingLog(path: host.ringPath)
        assertGunicornOrder(ring, master: host.master, workers: 2, preload: preload, file: file, line: line)
        XCTAssertTrue(ring.kind(.forkDetectedWithoutHooks).isEmpty, "with hooks, no fork goes unseen", file: file, line: line)
        for age in UInt64(1)...2 {
            guard let worker = ring.pids(ofHook: "post_fork", index: age).first else { continue }
            XCTAssertFalse(ring.kind(.transportClose, pid: worker).isEmpty, "worker \(age) closed its exporter at exit:\n\(ring.describe(worker))", file: file, line: line)
        }
    }

    func testWorkerKilledMidRunIsRespawnedWithAFreshRuntimeAndSurvivorsLoseNoSpan() throws {
        let agent = try MockAgent.start()
        let host = try GunicornHost(preload: true, agent: agent)
        let first = try host.load(150)
        XCTAssertEqual(first.ok, 150)
        let victim = try XCTUnwrap(first.perPid.keys.sorted().first)
        let before = try RingLog(path: host.ringPath)
        let victimAge = try XCTUnwrap(before.serverHooks(pid: victim).first { $0.hook == "post_fork" }?.index)
        try ProcessControl.send(SIGKILL, to: victim)

        // gunicorn notices (child_exit) and forks worker 3 from the master.
        let deadline = Deadline(seconds: 15)
        var respawned: pid_t?
        while respawned == nil, !deadline.hasPassed {
            let ring = try RingLog(path: host.ringPath)
            if ring.serverHooks().contains(where: { $0.hook == "post_worker_init" && $0.index == 3 }) {
                respawned = ring.pids(ofHook: "post_worker_init", index: 3).first
            } else {
                var none: [pollfd] = []
                _ = try poll(&none, timeoutMilliseconds: 50)
            }
        }
        let fresh = try XCTUnwrap(respawned, "no worker 3 within 15 s:\n\(host.log)")
        let second = try host.load(150)
        XCTAssertEqual(second.ok, 150)
        try host.stop()

        let total = first + second
        let stats = try agent.stats()
        XCTAssertEqual(stats.duplicates, 0)
        for (pid, served) in total.perPid where pid != victim {
            XCTAssertEqual(stats.perProcess[pid]?.spans, served, "surviving or respawned worker \(pid) lost spans")
        }
        // The victim's spans buffered at SIGKILL are gone with it; no more
        // than it served can have arrived.
        XCTAssertLessThanOrEqual(stats.perProcess[victim]?.spans ?? 0, total.perPid[victim] ?? 0)

        let ring = try RingLog(path: host.ringPath)
        let masterHooks = ring.serverHooks(pid: host.master)
        XCTAssertTrue(masterHooks.contains { $0.hook == "child_exit" && $0.index == victimAge }, "child_exit for the killed worker")
        let preFork3 = try XCTUnwrap(masterHooks.first { $0.hook == "pre_fork" && $0.index == 3 }?.event)
        let childExit = try XCTUnwrap(masterHooks.first { $0.hook == "child_exit" && $0.index == victimAge }?.event)
        XCTAssertLessThan(childExit.time, preFork3.time, "gunicorn reaps, then spawns the replacement")
        assertWorkerFork(ring, master: host.master, age: 3, preload: true)
        // A fresh runtime: rebuilt at generation 2 from the master's 1 (not
        // the dead worker's), with its own flush thread, started by its
        // first span (none yet if it served no request: it waits for first use).
        let rebuild = try XCTUnwrap(ring.kind(.runtimeRebuild, pid: fresh).first, ring.describe(fresh))
        XCTAssertEqual([rebuild.a0, rebuild.a1], [1, 2])
        let freshServed = total.perPid[fresh] ?? 0
        if freshServed > 0 {
            XCTAssertTrue(ring.kind(.threadStart, pid: fresh).contains { ring.string($0.a1) == "fks-flush0" }, "served \(freshServed): " + ring.describe(fresh))
        }
    }

    /// The second seed's failure, in full: no at-fork stages and no fork
    /// detection. The preloaded master's flush thread does not exist in the
    /// workers; their spans pile up unsent and are still unsent when the
    /// workers exit (the writer's final gauge says how many).
    func testPreloadWithoutForkHooksOrDetectionLeavesWorkerSpansUnsentBehindAMissingFlushThread() throws {
        let agent = try MockAgent.start()
        let host = try GunicornHost(preload: true, agent: agent, arguments: ["--no-fork-hooks", "--no-fork-detection"])
        let workers = try host.bootedWorkers(2, within: 20)
        XCTAssertTrue(Threads.names(of: host.master).contains("fks-flush0"), "the master runs the exporter it preloaded")
        for worker in workers {
            XCTAssertFalse(Threads.names(of: worker).contains("fks-flush0"), "worker \(worker) threads: \(Threads.names(of: worker))")
        }

        // The state comes from whichever worker accepts its request: perhaps
        // one that served none of the load (wrk-style connections can all
        // land on one worker). The ring's gauges below cover every worker.
        let (load, state, counters, accepted) = try host.serveThenReadState(300)
        XCTAssertEqual(counters["sent"]?.numberValue, 0, "\(state.jsonText)")
        XCTAssertEqual(counters["buffered"]?.numberValue, accepted, "piled up: \(state.jsonText)")
        XCTAssertEqual(counters["runtime_state"]?.stringValue, "running", "the runtime believes its thread runs")
        XCTAssertFalse(state["threads"]?.arrayValue?.contains(.string("fks-flush0")) ?? true, "\(state.jsonText)")
        XCTAssertEqual(try agent.stats().spans, 0, "no worker span reached the agent")

        try host.stop()
        XCTAssertEqual(try agent.stats().spans, 0, "the piled-up spans died with the workers")
        let ring = try RingLog(path: host.ringPath)
        XCTAssertTrue(ring.kind(.forkBeforeStart).isEmpty && ring.kind(.forkChild).isEmpty, "no stage ran")
        XCTAssertTrue(ring.kind(.forkDetectedWithoutHooks).isEmpty, "detection was off")
        for worker in workers {
            XCTAssertTrue(ring.kind(.sendStart, pid: worker).isEmpty, ring.describe(worker))
            let exit = try XCTUnwrap(ring.serverHooks(pid: worker).first { $0.hook == "worker_exit" }?.event, ring.describe(worker))
            // The last gauge, published as the worker closed its exporter:
            // everything it accepted is still buffered, nothing was sent.
            let gauge = try XCTUnwrap(ring.kind(.writerGauge, pid: worker).last, ring.describe(worker))
            XCTAssertGreaterThan(gauge.time, exit.time)
            XCTAssertEqual(gauge.a2, 0, "sent")
            XCTAssertEqual(gauge.a0, gauge.a1, "buffered == accepted")
            XCTAssertEqual(gauge.a1, UInt64(load.perPid[worker] ?? 0), "accepted == requests served")
        }
        // Every request's spans are stuck in some worker.
        let stuck = workers.compactMap { ring.kind(.writerGauge, pid: $0).last?.a0 }.reduce(0, +)
        XCTAssertEqual(stuck, UInt64(load.perPid.values.reduce(0, +)), "every accepted span still buffered at exit")
        XCTAssertGreaterThan(stuck, 0)
    }

    /// The same failure with fork detection on (the default): the workers
    /// start without a flush thread, then each one's first enqueue sees the
    /// fork counter moved, publishes fork.detected_without_hooks, rebuilds
    /// its runtime, and every span is delivered.
    func testPreloadWithoutForkHooksForkCounterDetectionRecoversAndDeliversEverySpan() throws {
        let agent = try MockAgent.start()
        let host = try GunicornHost(preload: true, agent: agent, arguments: ["--no-fork-hooks"])
        let workers = try host.bootedWorkers(2, within: 20)
        for worker in workers {
            XCTAssertFalse(Threads.names(of: worker).contains("fks-flush0"), "before its first span, worker \(worker) has no flush thread")
        }
        let load = try host.load(300)
        XCTAssertEqual(load.ok, 300)
        try host.stop()

        let stats = try agent.stats()
        XCTAssertEqual(stats.spans, 300)
        XCTAssertEqual(stats.unique, 300)
        for (pid, served) in load.perPid { XCTAssertEqual(stats.perProcess[pid]?.spans, served, "worker \(pid)") }

        let ring = try RingLog(path: host.ringPath)
        XCTAssertTrue(ring.kind(.forkBeforeStart).isEmpty && ring.kind(.forkChild).isEmpty, "no stage ran")
        for worker in load.perPid.keys {
            let events = ring.of(worker)
            let detected = try XCTUnwrap(events.firstIndex { $0.kind == .forkDetectedWithoutHooks }, ring.describe(worker))
            XCTAssertEqual(events[detected].a0, UInt64(host.master), "previous pid: the master")
            let rebuild = try XCTUnwrap(events.firstIndex { $0.kind == .runtimeRebuild }, ring.describe(worker))
            let thread = try XCTUnwrap(events.firstIndex { $0.kind == .threadStart && ring.string($0.a1) == "fks-flush0" }, ring.describe(worker))
            let send = try XCTUnwrap(events.firstIndex { $0.kind == .sendStart }, ring.describe(worker))
            // The new flush thread may announce itself before the rebuild
            // event is published (it starts inside the rebuild).
            XCTAssertTrue(detected < rebuild && detected < thread && max(rebuild, thread) < send, ring.describe(worker))
            XCTAssertEqual([events[rebuild].a0, events[rebuild].a1], [1, 2])
            XCTAssertEqual(ring.string(events[rebuild].a2), "fork detected without hooks")
        }
    }

    // MARK: helpers

    /// gunicorn's own order in the master, and each worker's fork.
    private func assertGunicornOrder(_ ring: RingLog, master: pid_t, workers: Int, preload: Bool,
                                     file: StaticString = #filePath, line: UInt = #line) {
        let hooks = ring.serverHooks(pid: master).map(\.hook)
        let spawning = ["nworkers_changed", "on_starting", "when_ready"] + Array(repeating: "pre_fork", count: workers)
        XCTAssertEqual(Array(hooks.prefix(spawning.count)), spawning, "master hooks: \(hooks)", file: file, line: line)
        XCTAssertEqual(Array(hooks.suffix(workers + 1)), Array(repeating: "child_exit", count: workers) + ["on_exit"],
                       "master hooks: \(hooks)", file: file, line: line)
        // With --preload, the app (and its exporter) is imported in the
        // master's Arbiter.setup: after nworkers_changed, before on_starting.
        let opens = ring.kind(.transportOpen, pid: master)
        if preload {
            let nworkers = ring.serverHooks(pid: master).first { $0.hook == "nworkers_changed" }?.event.time ?? .max
            let starting = ring.serverHooks(pid: master).first { $0.hook == "on_starting" }?.event.time ?? 0
            XCTAssertEqual(opens.count, 1, ring.describe(master), file: file, line: line)
            XCTAssertTrue(opens.allSatisfy { nworkers < $0.time && $0.time < starting }, ring.describe(master), file: file, line: line)
        } else {
            XCTAssertTrue(opens.isEmpty, "without --preload the master has no exporter:\n\(ring.describe(master))", file: file, line: line)
        }
        for age in 1...workers { assertWorkerFork(ring, master: master, age: UInt64(age), preload: preload, file: file, line: line) }
    }

    /// One worker's spawn: master pre_fork → fork.before.start → .end →
    /// fork.parent(child); worker fork.child(parent) → post_fork →
    /// post_worker_init → worker_exit, with the exporter rebuilt in the
    /// child stage (preload) or created by the app import in
    /// init_process (no preload).
    private func assertWorkerFork(_ ring: RingLog, master: pid_t, age: UInt64, preload: Bool,
                                  file: StaticString = #filePath, line: UInt = #line) {
        guard let worker = ring.pids(ofHook: "post_fork", index: age).first else {
            return XCTFail("no post_fork for worker \(age)", file: file, line: line)
        }
        let masterEvents = ring.of(master)
        let workerEvents = ring.of(worker)
        func time(_ events: [Event], after: UInt64 = 0, _ match: (Event) -> Bool) -> UInt64? {
            events.first { $0.time > after && match($0) }?.time
        }
        func hook(_ name: String) -> (Event) -> Bool { { $0.kind == .serverHook && ring.string($0.a0) == name && $0.a2 == age } }
        guard let preFork = time(masterEvents, hook("pre_fork")),
              let beforeStart = time(masterEvents, after: preFork, { $0.kind == .forkBeforeStart }),
              let beforeEnd = time(masterEvents, after: beforeStart, { $0.kind == .forkBeforeEnd && $0.a0 == Outcome.ok.rawValue }),
              let parent = time(masterEvents, { $0.kind == .forkParent && $0.a0 == UInt64(worker) }),
              let child = time(workerEvents, { $0.kind == .forkChild && $0.a0 == UInt64(master) }),
              let postFork = time(workerEvents, hook("post_fork")),
              let postInit = time(workerEvents, hook("post_worker_init"))
        else {
            return XCTFail("worker \(age) (pid \(worker)) lacks an event:\nmaster:\n\(ring.describe(master))\nworker:\n\(ring.describe(worker))", file: file, line: line)
        }
        XCTAssertTrue(preFork < beforeStart && beforeStart < beforeEnd && beforeEnd < parent, "master order for worker \(age)", file: file, line: line)
        XCTAssertTrue(beforeEnd < child && child < postFork && postFork < postInit, "worker \(age) order:\n\(ring.describe(worker))", file: file, line: line)
        if let exit = time(workerEvents, hook("worker_exit")) {
            XCTAssertLessThan(postInit, exit, file: file, line: line)
        }
        if preload {
            let rebuilt = time(workerEvents, after: child) { $0.kind == .runtimeRebuild && $0.a1 == 2 }
            XCTAssertNotNil(rebuilt.map { $0 < postFork }, "the child stage rebuilt the exporter:\n\(ring.describe(worker))", file: file, line: line)
            XCTAssertEqual(rebuilt.map { $0 < postFork }, true, file: file, line: line)
        } else {
            let opened = time(workerEvents) { $0.kind == .transportOpen }
            XCTAssertEqual(opened.map { postFork < $0 && $0 < postInit }, true, "app imported in init_process:\n\(ring.describe(worker))", file: file, line: line)
        }
    }
}
