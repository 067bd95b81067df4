import EventRing
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// Debian's ruby, puma and unicorn, and the extension built once per test
/// process (mkmf against ruby-dev, linking the libforkscope-c.so built
/// beside this test bundle) into a private directory.
enum RubyToolchain {
    static let ruby = "/usr/bin/ruby"
    static let puma = "/usr/bin/puma"
    static let unicorn = "/usr/bin/unicorn"

    static func require(_ path: String, package: String, file: StaticString = #filePath, line: UInt = #line) throws {
        guard FileSystem.exists(path) else {
            XCTFail("\(path) is missing: .ci/test installs Debian's \(package) (apt-get install ruby ruby-dev puma unicorn)", file: file, line: line)
            throw SystemError(package, path: path, .noSuchFileOrDirectory)
        }
    }

    nonisolated(unsafe) private static var built: String?

    /// The directory holding forkscope_native.so, built on first use.
    static func extensionDirectory(file: StaticString = #filePath, line: UInt = #line) throws -> String {
        if let built { return built }
        try require(ruby, package: "ruby", file: file, line: line)
        var template = Array("/tmp/forkscope-ruby-ext-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", path: "/tmp", .current)
        }
        let directory = String(cString: made)
        let libraryDirectory = String(SpawnedProcess.builtExecutable("x").dropLast(2))
        let script = """
            cd '\(directory)' && '\(ruby)' '\(Repository.root)/bindings/ruby/ext/forkscope_native/extconf.rb' \
            --with-forkscope-include='\(Repository.root)/Sources/CForkscope/include' --with-forkscope-lib='\(libraryDirectory)' \
            && make V=1 2>&1
            """
        let build = try SpawnedProcess(path: "/bin/sh", ["-c", script + " 1>&2"])
        let errors = try build.readErrors(within: 120, file: file, line: line)
        XCTAssertEqual(try build.wait(within: 30, file: file, line: line), .exited(0), "the extension did not build:\n\(errors)", file: file, line: line)
        let warnings = errors.split(separator: "\n").filter { $0.contains("warning:") }
        XCTAssertTrue(warnings.isEmpty, "the extension compiles without warnings:\n\(warnings.joined(separator: "\n"))", file: file, line: line)
        guard FileSystem.exists(directory + "/forkscope_native.so") else {
            throw SystemError("make", path: directory + "/forkscope_native.so", .noSuchFileOrDirectory)
        }
        built = directory
        return directory
    }

    /// RUBYLIB for a process that requires "forkscope".
    static func rubyLib(_ extensionDirectory: String) -> String {
        Repository.root + "/bindings/ruby/lib:" + extensionDirectory
    }
}

/// Waits with a deadline, polling every 50 ms; nil when it passed.
func eventually<T>(within seconds: Double, _ probe: () throws -> T?) rethrows -> T? {
    let deadline = Deadline(seconds: seconds)
    while true {
        if let value = try probe() { return value }
        if deadline.hasPassed { return nil }
        var none: [pollfd] = []
        _ = try? poll(&none, timeoutMilliseconds: 50)
    }
}

/// A `forkscope agent` on a free port, killed with the test.
final class Agent {
    let process: SpawnedProcess
    let address: String
    var url: String { "http://\(address)" }

    init() throws {
        process = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", "127.0.0.1:0"])
        let line = try process.readLine(within: 10)
        guard line.hasPrefix("listening on ") else {
            XCTFail("forkscope agent printed \(line)")
            throw SystemError("agent", .invalidArgument)
        }
        address = String(line.dropFirst("listening on ".count))
    }

    /// `GET /stats`: totals, and (spans, unique) per process_id.
    func stats() throws -> (spans: Int, unique: Int, duplicates: Int, perProcess: [pid_t: Int]) {
        let document = try HTTP.json(address, "/stats")
        var perProcess: [pid_t: Int] = [:]
        for (pid, tally) in document["per_process"]?.objectValue ?? [:] {
            perProcess[pid_t(pid) ?? -1] = Int(tally["unique"]?.numberValue ?? -1)
        }
        return (Int(document["spans"]?.numberValue ?? -1), Int(document["unique_spans"]?.numberValue ?? -1),
                Int(document["duplicate_spans"]?.numberValue ?? -1), perProcess)
    }
}

/// `forkscope host puma|unicorn` started by a test, with the extension
/// built for it; a stop also checks the server itself exited with 0.
final class RubyServerHost: ServerHost {
    init(_ server: String, preload: Bool, agent: Agent, arguments: [String] = [], workers: Int = 2,
         file: StaticString = #filePath, line: UInt = #line) throws {
        try RubyToolchain.require(server == "puma" ? RubyToolchain.puma : RubyToolchain.unicorn, package: server, file: file, line: line)
        let extensionDirectory = try RubyToolchain.extensionDirectory(file: file, line: line)
        try super.init(server, bootHook: server == "puma" ? "on_worker_boot" : "after_worker_ready", preload: preload, agentURL: agent.url,
                       arguments: ["--ruby-ext", extensionDirectory] + arguments, workers: workers, startup: 40, file: file, line: line)
    }

    /// SIGTERM to the host: the server stops gracefully (Puma SIGTERM,
    /// Unicorn SIGQUIT), then the host ends what is left.
    @discardableResult
    override func stop(within seconds: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let output = try super.stop(within: seconds, file: file, line: line)
        XCTAssertTrue(output.contains("stopped   \(server) exited with status 0"), output + "\n" + log, file: file, line: line)
        return output
    }
}

/// The steps every Puma and Unicorn test shares: an agent, `forkscope
/// host SERVER` sending to it, two booted workers.
struct RubyServerRun {
    let agent: Agent
    let host: RubyServerHost
    let workers: [pid_t]

    init(_ server: String, preload: Bool, arguments: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        agent = try Agent()
        host = try RubyServerHost(server, preload: preload, agent: agent, arguments: arguments, file: file, line: line)
        workers = try host.bootedWorkers(2, file: file, line: line)
    }

    /// Two workers preloaded by the master serve 300 requests, every span
    /// reaches the agent once; the ring after the graceful stop.
    static func preloaded(_ server: String, file: StaticString = #filePath, line: UInt = #line) throws -> (host: RubyServerHost, ring: RingLog) {
        let run = try RubyServerRun(server, preload: true, file: file, line: line)
        let (load, stats) = try run.serveAndStop(file: file, line: line)
        XCTAssertEqual(Set(load.perPid.keys), Set(run.workers), "both workers served: \(load.perPid)", file: file, line: line)
        XCTAssertEqual(stats.spans, 300, file: file, line: line)
        return (run.host, try run.host.ring)
    }

    /// Serves `requests` and stops the host: every span reached the agent
    /// once, counted for the worker that served it.
    func serveAndStop(_ requests: Int = 300, file: StaticString = #filePath, line: UInt = #line)
        throws -> (load: LoadResult, stats: (spans: Int, unique: Int, duplicates: Int, perProcess: [pid_t: Int])) {
        let load = try host.load(requests, file: file, line: line)
        XCTAssertEqual(load.ok, requests, file: file, line: line)
        try host.stop(file: file, line: line)
        let stats = try agent.stats()
        XCTAssertEqual(stats.unique, requests, file: file, line: line)
        XCTAssertEqual(stats.duplicates, 0, file: file, line: line)
        for (pid, served) in load.perPid { XCTAssertEqual(stats.perProcess[pid], served, "worker \(pid)", file: file, line: line) }
        return (load, stats)
    }

    /// SIGKILLs worker 0 while load.py runs (after its first send), waits
    /// for the server to respawn it, serves 150 more and stops: no span is
    /// duplicated, the survivors and the replacement lost none, and the
    /// victim's count at the agent is at most what it served.
    /// `freshServed`: requests the replacement served (its flush thread
    /// starts with its first span; with none it is still waiting).
    func killWorkerZeroMidRun(file: StaticString = #filePath, line: UInt = #line) throws -> (victim: pid_t, fresh: pid_t, killedAt: UInt64, freshServed: Int) {
        let victim = try XCTUnwrap(try host.ring.pids(ofHook: host.bootHook, index: 0).first, file: file, line: line)
        let killedAt = try XCTUnwrap(try host.ring.events.last?.time, file: file, line: line)
        // Mid-run: the load is running when the worker dies; its requests
        // in flight fail, the rest go to the survivor and the replacement.
        let running = try host.startLoad(2_000)
        // Once the victim has served and sent some (its first send.start),
        // while the load still runs.
        XCTAssertNotNil(try eventually(within: 10) { () throws -> Bool? in try host.ring.kind(.sendStart, pid: victim).isEmpty ? nil : true },
                        file: file, line: line)
        XCTAssertTrue(isRunning(running.pid), "the kill lands while the load runs", file: file, line: line)
        try ProcessControl.send(SIGKILL, to: victim)
        let first = try host.finish(running, file: file, line: line)
        XCTAssertGreaterThan(first.ok, 0, file: file, line: line)
        XCTAssertEqual(first.ok + first.failed, 2_000, file: file, line: line)

        let fresh = try XCTUnwrap(try eventually(within: 20) { () throws -> pid_t? in
            try host.ring.pids(ofHook: host.bootHook, index: 0).first { $0 != victim }
        }, "the server did not respawn worker 0 within 20 s:\n\(host.log)", file: file, line: line)
        let second = try host.load(150, file: file, line: line)
        XCTAssertEqual(second.ok, 150, file: file, line: line)
        try host.stop(file: file, line: line)

        let total = first + second
        let stats = try agent.stats()
        XCTAssertEqual(stats.duplicates, 0, file: file, line: line)
        for (pid, served) in total.perPid where pid != victim {
            XCTAssertEqual(stats.perProcess[pid], served, "surviving or respawned worker \(pid) lost spans", file: file, line: line)
        }
        XCTAssertLessThanOrEqual(stats.perProcess[victim] ?? 0, total.perPid[victim] ?? 0, file: file, line: line)
        print("\(host.server) kill mid-run: \(first.failed) request(s) failed with the victim; victim \(victim) served \(total.perPid[victim] ?? 0), agent has \(stats.perProcess[victim] ?? 0) of them; others \(total.perPid.filter { $0.key != victim })")
        return (victim, fresh, killedAt, total.perPid[fresh] ?? 0)
    }
}

/// Whether `pid` still runs (not a zombie), without reaping it.
func isRunning(_ pid: pid_t) -> Bool {
    guard let bytes = try? FileSystem.readFile("/proc/\(pid)/stat", limit: 4096) else { return false }
    // The state follows the ")" that ends the command name.
    guard let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count else { return false }
    return bytes[close + 2] != UInt8(ascii: "Z")
}
