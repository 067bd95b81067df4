import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The Ruby binding under Debian's Unicorn 6, started by `forkscope host
/// unicorn`. The hook order asserted is Unicorn's own (http_server.rb
/// spawn_missing_workers: before_fork(worker) in the master → fork → in
/// the child init_worker_process: after_fork(worker) → (build_app!
/// without preload) → worker_loop: after_worker_ready(worker); the master
/// runs after_worker_exit when it reaps one). Graceful stop is SIGQUIT.
final class UnicornHostTests: XCTestCase {
    func testPreloadTwoWorkersDeliverEvery300SpansOnceWithForkStagesInUnicornHookOrder() throws {
        let (host, ring) = try RubyServerRun.preloaded("unicorn")
        let master = ring.story(host.master)
        let expected = ["config.ru[0]", "transport.open",
                        "before_fork[0]", "fork.before.start", "fork.before.end", "fork.parent",
                        "before_fork[1]", "fork.before.start", "fork.before.end", "fork.parent"]
        XCTAssertEqual(Array(master.prefix(expected.count)), expected, ring.describe(host.master))
        XCTAssertEqual(Set(master.suffix(3).prefix(2)), ["after_worker_exit[0]", "after_worker_exit[1]"], master.joined(separator: " → "))
        XCTAssertEqual(master.last, "transport.close")
        print("unicorn master order: \(master.joined(separator: " → "))")
        for index in UInt64(0)...1 {
            let worker = try XCTUnwrap(ring.pids(ofHook: "after_worker_ready", index: index).first)
            let story = ring.story(worker)
            XCTAssertEqual(Array(story.prefix(4)), ["fork.child", "runtime.rebuild", "after_fork[\(index)]", "after_worker_ready[\(index)]"], ring.describe(worker))
            XCTAssertEqual(Array(story.suffix(2)), ["at_exit[\(index)]", "transport.close"], ring.describe(worker))
            XCTAssertEqual(ring.kind(.forkChild, pid: worker).first?.a0, UInt64(host.master))
            XCTAssertTrue(ring.kind(.forkParent, pid: host.master).contains { $0.a0 == UInt64(worker) })
            if index == 0 { print("unicorn worker order: \(story.joined(separator: " → "))") }
        }
        XCTAssertTrue(ring.kind(.forkDetectedWithoutHooks).isEmpty)
    }

    /// Without preload the master never opens an exporter (its forks skip
    /// the library's stages); each worker builds the app after after_fork.
    func testWithoutPreloadEachWorkerOpensItsOwnExporterAfterForkAndDeliversEverySpanOnce() throws {
        let run = try RubyServerRun("unicorn", preload: false)
        _ = try run.serveAndStop()
        let host = run.host
        let ring = try host.ring
        let master = ring.story(host.master)
        XCTAssertEqual(Array(master.prefix(2)), ["before_fork[0]", "before_fork[1]"], ring.describe(host.master))
        XCTAssertEqual(Set(master.dropFirst(2)), ["after_worker_exit[0]", "after_worker_exit[1]"], ring.describe(host.master))
        for worker in run.workers {
            let index = ring.serverHooks(pid: worker).first?.index ?? 99
            XCTAssertEqual(ring.story(worker), ["after_fork[\(index)]", "config.ru[0]", "transport.open", "after_worker_ready[\(index)]",
                                                "at_exit[\(index)]", "transport.close"], ring.describe(worker))
        }
    }

    func testWorkerKilledMidRunIsRespawnedWithAFreshRuntimeAndSurvivorsLoseNoSpan() throws {
        let run = try RubyServerRun("unicorn", preload: true)
        let (_, fresh, killedAt, freshServed) = try run.killWorkerZeroMidRun()
        let host = run.host
        let ring = try host.ring
        XCTAssertTrue(ring.kind(.forkParent, pid: host.master).contains { $0.a0 == UInt64(fresh) && $0.time > killedAt })
        let master = ring.story(host.master)
        // Unicorn reaps (after_worker_exit), then spawns the replacement.
        let exit = try XCTUnwrap(master.firstIndex(of: "after_worker_exit[0]"), master.joined(separator: " → "))
        XCTAssertEqual(Array(master[exit...].prefix(5)), ["after_worker_exit[0]", "before_fork[0]", "fork.before.start", "fork.before.end", "fork.parent"],
                       master.joined(separator: " → "))
        XCTAssertEqual(Array(ring.story(fresh).prefix(4)), ["fork.child", "runtime.rebuild", "after_fork[0]", "after_worker_ready[0]"], ring.describe(fresh))
        let rebuild = try XCTUnwrap(ring.kind(.runtimeRebuild, pid: fresh).first)
        XCTAssertEqual([rebuild.a0, rebuild.a1], [1, 2])
        // Its own flush thread, started by its first span (none yet if the
        // replacement served no request: the thread waits for first use).
        if freshServed > 0 {
            XCTAssertTrue(ring.kind(.threadStart, pid: fresh).contains { ring.string($0.a1) == "fks-flush0" }, "served \(freshServed): " + ring.describe(fresh))
        }
    }
}
