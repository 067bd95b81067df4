import DemoServer
import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The second seed, run for real: for each server profile, with and without
/// preloading and fork hooks, 2 workers serve 200 requests and stop
/// gracefully; the agent's count and the ring show where spans arrive and
/// where they are lost.
final class StartupProfileTests: XCTestCase {
    struct Case: CustomStringConvertible {
        let profile: ServerProfile
        let preload: Bool
        let hooks: Bool
        let detect: Bool
        var arguments: [String] {
            ["--profile", profile.rawValue, "--workers", "2", preload ? "--preload" : "--no-preload",
             hooks ? "--fork-hooks" : "--no-fork-hooks", detect ? "--detect-forks" : "--no-detect-forks"]
        }
        /// Where the seed says spans are lost: the exporter was created in
        /// the master, the workers were forked with no hook to rebuild its
        /// flush thread, and nothing detects the fork.
        var spansAreLost: Bool { preload && !hooks && !detect }
        var description: String { "\(profile) preload=\(preload) hooks=\(hooks) detect=\(detect)" }
    }

    static var cases: [Case] {
        ServerProfile.allCases.flatMap { profile in
            [Case(profile: profile, preload: true, hooks: true, detect: true),
             Case(profile: profile, preload: true, hooks: false, detect: false),
             Case(profile: profile, preload: true, hooks: false, detect: true),
             Case(profile: profile, preload: false, hooks: true, detect: true),
             Case(profile: profile, preload: false, hooks: false, detect: false)]
        }
    }

    func testEachProfileDeliversOrLosesSpansWhereTheSeedSays() throws {
        for testCase in Self.cases {
            try check(testCase)
        }
    }

    func check(_ testCase: Case) throws {
        let run = try DemoRun(testCase.arguments)
        let made = try run.requests(200)
        XCTAssertEqual(try run.stopGracefully(), .exited(0), "\(testCase)")
        let stats = try run.agentStats()
        let unique = stats["unique_spans"] as? Int ?? -1
        let (events, reader) = try run.events()
        let workers = events.of(.workerSpawned).map { pid_t(truncatingIfNeeded: $0.a0) }
        print("\(testCase): made \(made) spans, agent counted \(unique) unique, \(events.count) events in the ring")
        XCTAssertEqual(workers.count, 2, "\(testCase)")
        if testCase.spansAreLost {
            // Workers inherited an exporter whose flush thread does not
            // exist in them: nothing was sent, and each worker's last gauge
            // shows its spans still buffered when it exited.
            XCTAssertEqual(unique, 0, "\(testCase): no span may reach the agent")
            var buffered = 0
            for pid in workers {
                let gauge = events.of(.writerGauge).last { $0.pid == pid }
                buffered += Int(gauge?.a0 ?? 0)
            }
            XCTAssertEqual(buffered, made, "\(testCase): every span is still in a worker's buffer at exit")
            XCTAssertTrue(events.of(.forkDetectedWithoutHooks).isEmpty, "\(testCase)")
        } else {
            XCTAssertEqual(unique, made, "\(testCase): every span delivered once")
            XCTAssertEqual(stats["duplicate_spans"] as? Int, 0, "\(testCase)")
        }
        if testCase.hooks {
            for pid in workers {
                XCTAssertEqual(events.of(.forkChild).filter { $0.pid == pid }.count, 1, "\(testCase): fork.child in \(pid)")
                XCTAssertTrue(events.of(.forkParent).contains { $0.a0 == UInt64(UInt32(bitPattern: pid)) }, "\(testCase)")
            }
            if testCase.preload {
                let stages = events.of(.hookRun).map { ForkStage(rawValue: $0.a0) }
                XCTAssertEqual(stages.filter { $0 == .before }.count, 2, "\(testCase)")
                XCTAssertEqual(stages.filter { $0 == .parent }.count, 2, "\(testCase)")
                XCTAssertEqual(stages.filter { $0 == .child }.count, 2, "\(testCase)")
            }
        } else if testCase.preload && testCase.detect {
            let detected = Set(events.of(.forkDetectedWithoutHooks).map(\.pid))
            XCTAssertEqual(detected, Set(workers), "\(testCase): each worker detected its unhooked fork on first use")
        }
        // The profile's own hooks, by their real names, in order.
        let hooks = events.of(.serverHook).compactMap { reader.string(at: $0.a0) }.filter { !$0.hasPrefix("app_loaded") }
        var expected = testCase.profile.masterStartHooks
        for _ in 0..<2 { expected += testCase.profile.beforeEachForkHooks + testCase.profile.afterEachForkInMasterHooks }
        let masterHooks = hooks.filter { name in
            testCase.profile.masterStartHooks.contains(name) || testCase.profile.beforeEachForkHooks.contains(name)
                || testCase.profile.afterEachForkInMasterHooks.contains(name)
        }
        XCTAssertEqual(masterHooks, expected, "\(testCase)")
        for pid in workers {
            let mine = events.of(.serverHook).filter { $0.pid == pid }.compactMap { reader.string(at: $0.a0) }
            XCTAssertEqual(mine, testCase.profile.workerBootHooks + [testCase.profile.workerExitHook], "\(testCase): worker \(pid)")
        }
    }
}
