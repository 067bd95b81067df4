import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The Ruby binding under Debian's Puma 5.6 in cluster mode, started by
/// `forkscope host puma`. The hook order asserted is Puma's own
/// (cluster.rb spawn_workers/spawn_worker, cluster/worker.rb run):
/// master before_fork once, then per worker on_worker_fork(i) → fork() →
/// after_worker_fork(i); in the worker on_worker_boot(i) … on_worker_shutdown(i);
/// the binding's fork stages run inside fork() (Process._fork).
final class PumaHostTests: XCTestCase {
    func testPreloadTwoWorkersDeliverEvery300SpansOnceWithForkStagesInPumaHookOrder() throws {
        let (host, ring) = try RubyServerRun.preloaded("puma")
        let master = ring.story(host.master)
        let expected = ["config.ru[0]", "transport.open", "before_fork[0]",
                        "on_worker_fork[0]", "fork.before.start", "fork.before.end", "fork.parent", "after_worker_fork[0]",
                        "on_worker_fork[1]", "fork.before.start", "fork.before.end", "fork.parent", "after_worker_fork[1]"]
        XCTAssertEqual(Array(master.prefix(expected.count)), expected, ring.describe(host.master))
        XCTAssertEqual(master.last, "transport.close")
        print("puma master order: \(master.joined(separator: " → "))")
        for index in UInt64(0)...1 {
            let worker = try XCTUnwrap(ring.pids(ofHook: "on_worker_boot", index: index).first)
            let story = ring.story(worker)
            XCTAssertEqual(Array(story.prefix(3)), ["fork.child", "runtime.rebuild", "on_worker_boot[\(index)]"], ring.describe(worker))
            XCTAssertEqual(Array(story.suffix(2)), ["on_worker_shutdown[\(index)]", "transport.close"], ring.describe(worker))
            XCTAssertEqual(ring.kind(.forkChild, pid: worker).first?.a0, UInt64(host.master), "forked by the master")
            XCTAssertTrue(ring.kind(.forkParent, pid: host.master).contains { $0.a0 == UInt64(worker) }, "fork.parent names worker \(worker)")
            if index == 0 { print("puma worker order: \(story.joined(separator: " → "))") }
        }
        XCTAssertTrue(ring.kind(.forkDetectedWithoutHooks).isEmpty, "with hooks, no fork goes unseen")
    }

    /// Without preload the master never opens an exporter: its forks skip
    /// the library's stages (the cheap :before), and each worker loads
    /// config.ru, and its own exporter, after on_worker_boot.
    func testWithoutPreloadEachWorkerOpensItsOwnExporterAfterBootAndDeliversEverySpanOnce() throws {
        let run = try RubyServerRun("puma", preload: false)
        _ = try run.serveAndStop()
        let host = run.host
        let ring = try host.ring
        XCTAssertEqual(ring.story(host.master), ["before_fork[0]", "on_worker_fork[0]", "after_worker_fork[0]", "on_worker_fork[1]", "after_worker_fork[1]"],
                       ring.describe(host.master))
        for worker in run.workers {
            let story = ring.story(worker)
            let index = ring.serverHooks(pid: worker).first?.index ?? 99
            XCTAssertEqual(story, ["on_worker_boot[\(index)]", "config.ru[0]", "transport.open", "on_worker_shutdown[\(index)]", "transport.close"],
                           ring.describe(worker))
        }
    }

    func testWorkerKilledMidRunIsRespawnedWithAFreshRuntimeAndSurvivorsLoseNoSpan() throws {
        let run = try RubyServerRun("puma", preload: true)
        let (_, fresh, killedAt, freshServed) = try run.killWorkerZeroMidRun()
        let host = run.host
        let ring = try host.ring
        // The master forks the replacement through the same stages.
        XCTAssertTrue(ring.kind(.forkParent, pid: host.master).contains { $0.a0 == UInt64(fresh) && $0.time > killedAt },
                      ring.story(host.master).joined(separator: " → "))
        let story = ring.story(fresh)
        XCTAssertEqual(Array(story.prefix(3)), ["fork.child", "runtime.rebuild", "on_worker_boot[0]"], ring.describe(fresh))
        let rebuild = try XCTUnwrap(ring.kind(.runtimeRebuild, pid: fresh).first)
        XCTAssertEqual([rebuild.a0, rebuild.a1], [1, 2], "a fresh runtime from the master's generation 1")
        // Its own flush thread, started by its first span (none yet if the
        // replacement served no request: the thread waits for first use).
        if freshServed > 0 {
            XCTAssertTrue(ring.kind(.threadStart, pid: fresh).contains { ring.string($0.a1) == "fks-flush0" }, "served \(freshServed): " + ring.describe(fresh))
        }
    }

    /// Puma's fork_worker: worker 0 forks worker 1 at boot, and again on a
    /// refork (SIGURG to the master, Puma 5's trigger besides the request
    /// count): on_refork → on_worker_fork(1) → the fork stages → fork.parent
    /// all in worker 0, and the new worker's fork.child names worker 0.
    func testForkWorkerReforkForksWorkerOneFromWorkerZero() throws {
        let run = try RubyServerRun("puma", preload: false, arguments: ["--fork-worker", "0"])
        let (agent, host) = (run.agent, run.host)
        var ring = try host.ring
        let zero = try XCTUnwrap(ring.pids(ofHook: "on_worker_boot", index: 0).first)
        let one = try XCTUnwrap(ring.pids(ofHook: "on_worker_boot", index: 1).first)
        XCTAssertEqual(ring.kind(.forkChild, pid: one).first?.a0, UInt64(zero), "at boot, worker 1 is forked by worker 0:\n\(ring.describe(one))")
        let first = try host.load(50)
        XCTAssertEqual(first.ok, 50)

        try ProcessControl.send(SIGURG, to: host.master)
        let reforked = try XCTUnwrap(try eventually(within: 20) { () throws -> pid_t? in
            try host.ring.pids(ofHook: "on_worker_boot", index: 1).first { $0 != one }
        }, "no refork within 20 s:\n\(host.log)")
        let second = try host.load(50)
        XCTAssertEqual(second.ok, 50)
        try host.stop()

        ring = try host.ring
        let story = ring.story(zero)
        let refork = try XCTUnwrap(story.firstIndex(of: "on_refork[0]"), story.joined(separator: " → "))
        XCTAssertEqual(Array(story[refork...].prefix(6)),
                       ["on_refork[0]", "on_worker_fork[1]", "fork.before.start", "fork.before.end", "fork.parent", "after_worker_fork[1]"],
                       ring.describe(zero))
        print("puma fork_worker, worker 0 order: \(story.joined(separator: " → "))")
        XCTAssertEqual(ring.kind(.forkChild, pid: reforked).first?.a0, UInt64(zero), "the refork is a fork from worker 0")
        XCTAssertTrue(ring.kind(.forkParent, pid: zero).contains { $0.a0 == UInt64(reforked) })
        XCTAssertEqual(Array(ring.story(reforked).prefix(3)), ["fork.child", "runtime.rebuild", "on_worker_boot[1]"], ring.describe(reforked))
        let stats = try agent.stats()
        XCTAssertEqual(stats.unique, 100)
        XCTAssertEqual(stats.duplicates, 0)
    }

    /// The second seed's failure: preloaded Puma, no at_fork patch, no fork
    /// detection. The master's flush thread does not exist in the workers;
    /// their spans pile up unsent and die with them.
    func testPreloadWithoutForkHooksOrDetectionLeavesSpansStuckInWorkers() throws {
        let run = try RubyServerRun("puma", preload: true, arguments: ["--no-fork-hooks", "--no-fork-detection"])
        let (agent, host, workers) = (run.agent, run.host, run.workers)
        XCTAssertTrue(Threads.names(of: host.master).contains("fks-flush0"), "the master runs the exporter it preloaded")
        for worker in workers {
            XCTAssertFalse(Threads.names(of: worker).contains("fks-flush0"), "worker \(worker) threads: \(Threads.names(of: worker))")
        }
        // The state comes from whichever worker accepts its request: perhaps
        // one that served none of the load. The ring's gauges below cover
        // every worker.
        let (load, state, counters, accepted) = try host.serveThenReadState(300)
        XCTAssertEqual(counters["sent"]?.numberValue, 0, state.jsonText)
        XCTAssertEqual(counters["buffered"]?.numberValue, accepted, "stuck: \(state.jsonText)")
        XCTAssertEqual(counters["runtime_state"]?.stringValue, "running", "the runtime believes its thread runs")
        XCTAssertEqual(try agent.stats().spans, 0, "no worker span reached the agent")
        print("puma without hooks or detection: a worker holds \(Int(accepted)) accepted, 0 sent")

        try host.stop()
        XCTAssertEqual(try agent.stats().spans, 0, "the stuck spans died with the workers")
        let ring = try host.ring
        XCTAssertTrue(ring.kind(.forkBeforeStart).isEmpty && ring.kind(.forkChild).isEmpty, "no stage ran")
        XCTAssertTrue(ring.kind(.forkDetectedWithoutHooks).isEmpty, "detection was off")
        for worker in workers {
            XCTAssertTrue(ring.kind(.sendStart, pid: worker).isEmpty, ring.describe(worker))
            let gauge = try XCTUnwrap(ring.kind(.writerGauge, pid: worker).last, ring.describe(worker))
            XCTAssertEqual(gauge.a2, 0, "sent")
            XCTAssertEqual(gauge.a0, gauge.a1, "buffered == accepted at exit")
            XCTAssertEqual(gauge.a1, UInt64(load.perPid[worker] ?? 0), "accepted == requests served")
        }
        // Every request's spans are stuck in some worker.
        let stuck = workers.compactMap { ring.kind(.writerGauge, pid: $0).last?.a0 }.reduce(0, +)
        XCTAssertEqual(stuck, UInt64(load.perPid.values.reduce(0, +)), "every accepted span still buffered at exit")
        XCTAssertGreaterThan(stuck, 0)
    }

    /// The same, with fork detection on: each worker's first span sees the
    /// fork counter moved, rebuilds the runtime, and every span arrives.
    func testPreloadWithoutForkHooksForkDetectionRescuesEverySpan() throws {
        let run = try RubyServerRun("puma", preload: true, arguments: ["--no-fork-hooks"])
        for worker in run.workers {
            XCTAssertFalse(Threads.names(of: worker).contains("fks-flush0"), "before its first span, worker \(worker) has no flush thread")
        }
        let (load, _) = try run.serveAndStop()
        let host = run.host
        let ring = try host.ring
        XCTAssertTrue(ring.kind(.forkBeforeStart).isEmpty && ring.kind(.forkChild).isEmpty, "no stage ran")
        for worker in load.perPid.keys {
            let story = ring.story(worker)
            let detected = try XCTUnwrap(story.firstIndex(of: "fork.detected_without_hooks"), ring.describe(worker))
            let rebuilt = try XCTUnwrap(story.firstIndex(of: "runtime.rebuild"), ring.describe(worker))
            XCTAssertLessThan(detected, rebuilt)
            XCTAssertEqual(ring.kind(.forkDetectedWithoutHooks, pid: worker).first?.a0, UInt64(host.master), "previous pid: the master")
        }
    }
}
