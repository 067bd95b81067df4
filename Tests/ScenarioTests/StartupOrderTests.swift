import EventRing
import Foundation
import Glibc
import Posix
import Scenarios
import TestSupport
import XCTest

/// The demo server's startup sequence for each profile (preload, hooks)
/// against a recording of the real server it imitates (Fixtures/*.jsonl:
/// `forkscope export --format jsonl` of `forkscope host unicorn|puma|gunicorn
/// --preload`, recorded on Debian 12 with unicorn, puma and gunicorn from apt).
final class StartupOrderTests: XCTestCase {
    /// One lifecycle event: a server hook by name, or a fork.
    struct Step: Equatable {
        var time: UInt64
        var pid: Int32
        var kind: String
        var hook: String?
        var peer: Int64  // fork.parent: the child; fork.child: the parent
    }

    /// The startup: the master's hooks and forks, and each worker's hooks after its fork.child,
    /// up to the first sign of shutdown.
    struct Startup: Equatable, CustomStringConvertible {
        var master: [String]
        var workers: [[String]]
        var description: String { "master \(master)\nworkers \(workers)" }

        static let shutdown: Set<String> = ["worker_exit", "on_worker_shutdown", "at_exit", "after_worker_exit"]

        init(_ steps: [Step]) {
            let master = steps.first { $0.kind == "fork.parent" }?.pid ?? 0
            // Each process's startup ends at its own first sign of shutdown.
            func startup(of pid: Int32) -> [Step] {
                Array(steps.filter { $0.pid == pid }.prefix { step in
                    step.kind != "process.exit" && step.kind != "worker.exited" && !(step.hook.map(Startup.shutdown.contains) ?? false)
                })
            }
            self.master = startup(of: master).compactMap { $0.kind == "fork.parent" ? "fork" : $0.hook }
            let children = steps.filter { $0.kind == "fork.child" && $0.peer == Int64(master) }.map(\.pid)
            workers = children.map { child in ["fork.child"] + startup(of: child).compactMap(\.hook) }
        }

        /// Only the names both sides know (the app-load markers differ: `app_loaded(preload)` vs `config.ru`).
        func projected(onto names: Set<String>) -> Startup {
            var copy = self
            copy.master = master.filter { $0 == "fork" || names.contains($0) }
            copy.workers = workers.map { $0.filter { $0 == "fork.child" || names.contains($0) } }
            return copy
        }

        var hookNames: Set<String> { Set(master + workers.flatMap { $0 }).subtracting(["fork", "fork.child"]) }
    }

    func fixture(_ name: String) throws -> [Step] {
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)-preload.jsonl")
        let text = try String(contentsOf: path, encoding: .utf8)
        return try text.split(separator: "\n").compactMap { line in
            let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            guard let kind = object["kind"] as? String, let time = object["t_ns"] as? UInt64 ?? (object["t_ns"] as? NSNumber)?.uint64Value,
                  let pid = object["pid"] as? Int else { return nil }
            let args = object["args"] as? [String: Any] ?? [:]
            let peer = (args["child"] as? Int) ?? (args["parent"] as? Int) ?? 0
            return Step(time: time, pid: Int32(pid), kind: kind, hook: kind == "server.hook" ? args["hook"] as? String : nil, peer: Int64(peer))
        }
    }

    func demo(_ profile: String) throws -> [Step] {
        let run = try ScenarioRun(executable: SpawnedProcess.builtExecutable("forkscope"),
                                  serveArguments: ["--profile", profile, "--workers", "2", "--preload", "--fork-hooks"])
        defer { run.end(); run.removeSession() }
        // Both workers through their last boot hook before QUIT (a worker stopped while booting skips the rest).
        let lastBootHook = ["unicorn": "after_fork", "puma": "on_worker_boot", "gunicorn": "post_worker_init"][profile] ?? ""
        try run.waitUntil("two workers booted", within: 5_000) {
            let (events, reader) = try run.events()
            return Set(events.filter { $0.kind == .serverHook && reader.string(at: $0.a0) == lastBootHook }.map(\.pid)).count >= 2
        }
        _ = try run.requests(4)
        try run.stopGracefully()
        let (events, reader) = try run.events()
        return events.compactMap { event in
            guard let kind = event.kind else { return nil }
            let peer: Int64 = kind == .forkParent || kind == .forkChild ? Int64(event.a0) : 0
            return Step(time: event.time, pid: event.pid, kind: kind.name, hook: kind == .serverHook ? reader.string(at: event.a0) : nil, peer: peer)
        }
    }

    func check(_ profile: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let real = Startup(try fixture(profile))
        let ours = Startup(try demo(profile))
        XCTAssertEqual(real.workers.count, 2, "the fixture has two workers: \(real)", file: file, line: line)
        XCTAssertEqual(ours.workers.count, 2, "\(ours)", file: file, line: line)
        let demoOnly = ours.hookNames.filter { !$0.hasPrefix("app_loaded") }.subtracting(real.hookNames)
        XCTAssertEqual(demoOnly, [], "\(profile): every startup hook the demo publishes is one the real server runs", file: file, line: line)
        let shared = ours.hookNames.intersection(real.hookNames)
        XCTAssertEqual(ours.projected(onto: shared), real.projected(onto: shared), "\(profile): the same order", file: file, line: line)
        // Not vacuous: hooks on both sides of each fork, in the master and in every worker.
        let projected = real.projected(onto: shared)
        XCTAssertEqual(projected.master.filter { $0 == "fork" }.count, 2, "\(projected)", file: file, line: line)
        XCTAssertGreaterThan(projected.master.count, 2, "\(projected)", file: file, line: line)
        XCTAssertTrue(projected.workers.allSatisfy { $0.count >= 2 }, "\(projected)", file: file, line: line)
        let missing = real.hookNames.subtracting(ours.hookNames).subtracting(["config.ru", "nworkers_changed"])
        if !missing.isEmpty { print("\(profile): the real server also runs \(missing.sorted()) at startup (not imitated by the demo)") }
    }

    func testUnicornStartupMatchesTheRealUnicornRecording() throws { try check("unicorn") }
    func testPumaStartupMatchesTheRealPumaRecording() throws { try check("puma") }
    func testGunicornStartupMatchesTheRealGunicornRecording() throws { try check("gunicorn") }
}
