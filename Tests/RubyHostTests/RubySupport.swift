import EventRing
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// Files of this repository, found from this source file's path.
enum Repository {
    static var root: String {
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path
    }
}

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

/// A one-shot HTTP/1.1 request with `Connection: close`, bounded.
enum HTTP {
    static func request(_ address: String, _ path: String, method: String = "GET", within seconds: Double = 5) throws -> [UInt8] {
        let deadline = Deadline(seconds: seconds)
        let socket = try Socket.open(.ipv4, flags: [.closeOnExec, .nonBlocking])
        defer { try? socket.close() }
        if try socket.connect(to: try SocketAddress.ipv4(parsing: address)) == .inProgress {
            guard try socket.fileDescriptor.poll(for: Int16(POLLOUT), deadline: deadline) != 0 else { throw SystemError("connect", path: address, .timedOut) }
            if let error = try socket.pendingError() { throw SystemError("connect", path: address, error) }
        }
        try socket.sendAll("\(method) \(path) HTTP/1.1\r\nHost: \(address)\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            guard try socket.fileDescriptor.poll(for: Int16(POLLIN), deadline: deadline) != 0 else { throw SystemError("recv", path: address, .timedOut) }
            let n = try chunk.withUnsafeMutableBytes { raw in try socket.receive(into: raw) }
            if n == 0 { break }
            response += chunk[..<n]
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        guard response.count >= 4, let end = (0...(response.count - 4)).first(where: { Array(response[$0..<($0 + 4)]) == separator }) else {
            throw SystemError("HTTP response without a header end", path: address, .invalidArgument)
        }
        return Array(response[(end + 4)...])
    }

    static func json(_ address: String, _ path: String) throws -> JSONValue {
        try JSONValue(parsing: request(address, path))
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

/// The events of a ring file with their strings resolved.
struct Ring {
    let events: [Event]
    private let strings: [UInt64: String]

    init(path: String) throws {
        let reader = try RingReader(path: path)
        let (events, accounting) = try reader.readAll()
        XCTAssertEqual(accounting.total.overwritten, 0, "the ring was too small for the test: events were overwritten")
        self.events = events
        var strings: [UInt64: String] = [:]
        for event in events {
            for (index, argument) in (event.kind?.arguments ?? []).enumerated() where argument.type == .string {
                let offset = event.args[index]
                if strings[offset] == nil { strings[offset] = reader.string(at: offset) ?? "<bad offset \(offset)>" }
            }
        }
        self.strings = strings
    }

    func string(_ offset: UInt64) -> String { strings[offset] ?? "" }

    func of(_ pid: pid_t) -> [Event] { events.filter { $0.pid == pid } }

    func kind(_ kind: EventKind, pid: pid_t? = nil) -> [Event] {
        events.filter { $0.kind == kind && (pid == nil || $0.pid == pid) }
    }

    /// server.hook events as (hook, worker index, event).
    func hooks(pid: pid_t? = nil) -> [(hook: String, index: UInt64, event: Event)] {
        kind(.serverHook, pid: pid).map { (string($0.a0), $0.a2, $0) }
    }

    /// The pids that published `hook` for worker `index`, oldest first.
    func pids(ofHook hook: String, index: UInt64) -> [pid_t] {
        hooks().filter { $0.hook == hook && $0.index == index }.map(\.event.pid)
    }

    /// The lifecycle of `pid` as names: server hooks by name, fork stages
    /// and exporter events by kind (sends and gauges left out).
    func story(_ pid: pid_t) -> [String] {
        of(pid).compactMap { event in
            switch event.kind {
            case .serverHook: "\(string(event.a0))[\(event.a2)]"
            case .forkBeforeStart: "fork.before.start"
            case .forkBeforeEnd: "fork.before.end"
            case .forkParent: "fork.parent"
            case .forkChild: "fork.child"
            case .runtimeRebuild: "runtime.rebuild"
            case .forkDetectedWithoutHooks: "fork.detected_without_hooks"
            case .transportOpen: "transport.open"
            case .transportClose: "transport.close"
            default: nil
            }
        }
    }

    /// One line per event of `pid`, for failure messages.
    func describe(_ pid: pid_t) -> String {
        of(pid).map { event in
            let name = event.kind?.name ?? "kind \(event.rawKind)"
            let arguments = (event.kind?.arguments ?? []).enumerated().map { index, argument in
                "\(argument.name)=\(argument.type == .string ? string(event.args[index]) : String(event.args[index]))"
            }
            return "\(event.time) \(name) \(arguments.joined(separator: " "))"
        }.joined(separator: "\n")
    }
}

/// `forkscope host puma|unicorn` started by a test, and what it printed.
final class RubyServerHost {
    let server: String
    let process: SpawnedProcess
    let scratch: ScratchSession
    private(set) var output = ""
    let address: String
    let master: pid_t
    let ringPath: String
    let sessionPath: String

    init(_ server: String, preload: Bool, agent: Agent, arguments: [String] = [], workers: Int = 2,
         file: StaticString = #filePath, line: UInt = #line) throws {
        self.server = server
        try RubyToolchain.require(server == "puma" ? RubyToolchain.puma : RubyToolchain.unicorn, package: server, file: file, line: line)
        let extensionDirectory = try RubyToolchain.extensionDirectory(file: file, line: line)
        scratch = try ScratchSession()
        var all = ["host", server, "--listen", "127.0.0.1:0", "--workers", String(workers), "--session-root", scratch.root,
                   "--agent-url", agent.url, "--flush-interval-ms", "200", "--graceful-timeout", "5", "--ruby-ext", extensionDirectory]
        if preload { all.append("--preload") }
        process = try SpawnedProcess(executable: "forkscope", all + arguments)
        var printed: [String: String] = [:]
        while printed["stop"] == nil {
            let text = try process.readLine(within: 40, file: file, line: line)
            output += text + "\n"
            guard let space = text.firstIndex(of: " ") else { continue }
            printed[String(text[..<space])] = text[space...].trimmingCharacters(in: .whitespaces)
        }
        let summary = printed[server] ?? ""
        address = String(summary.dropFirst("http://".count).prefix { $0 != " " })
        master = pid_t(summary.components(separatedBy: "master pid ").last?.prefix { $0.isNumber } ?? "") ?? 0
        ringPath = printed["ring"] ?? ""
        sessionPath = printed["session"] ?? ""
        XCTAssertGreaterThan(master, 0, output, file: file, line: line)
    }

    var ring: Ring { get throws { try Ring(path: ringPath) } }

    var log: String {
        (try? FileSystem.readFile(sessionPath + "/\(server).log")).map { String(decoding: $0, as: UTF8.self) } ?? "(no log)"
    }

    /// Waits until `count` workers booted (Puma on_worker_boot, Unicorn
    /// after_worker_ready) since `after` (ring time); returns their pids.
    func bootedWorkers(_ count: Int, after: UInt64 = 0, within seconds: Double = 30,
                       file: StaticString = #filePath, line: UInt = #line) throws -> [pid_t] {
        let hook = server == "puma" ? "on_worker_boot" : "after_worker_ready"
        let booted = try eventually(within: seconds) { () throws -> [pid_t]? in
            let pids = try ring.hooks().filter { $0.hook == hook && $0.event.time > after }.map(\.event.pid)
            return pids.count >= count ? pids : nil
        }
        guard let booted else {
            XCTFail("\(count) workers did not boot within \(seconds) s:\n\(log)", file: file, line: line)
            throw SystemError("boot", .timedOut)
        }
        return booted
    }

    /// examples/gunicorn/load.py (any server answering {"pid": N}).
    func load(_ requests: Int, concurrency: Int = 4, file: StaticString = #filePath, line: UInt = #line) throws -> Load {
        try finish(startLoad(requests, concurrency: concurrency), file: file, line: line)
    }

    /// Starts load.py without waiting for it (a worker can be killed mid-run).
    func startLoad(_ requests: Int, concurrency: Int = 4) throws -> SpawnedProcess {
        try SpawnedProcess(path: "/usr/bin/python3", [
            Repository.root + "/examples/gunicorn/load.py", "http://\(address)/",
            "--requests", String(requests), "--concurrency", String(concurrency),
        ])
    }

    func finish(_ client: SpawnedProcess, file: StaticString = #filePath, line: UInt = #line) throws -> Load {
        let text = try client.readToEnd(within: 60, file: file, line: line)
        XCTAssertEqual(try client.wait(within: 10, file: file, line: line), .exited(0), text, file: file, line: line)
        return try Load(JSONValue(parsing: Array(text.utf8)))
    }

    /// SIGTERM to the host: the server stops gracefully (Puma SIGTERM,
    /// Unicorn SIGQUIT), then the host ends what is left.
    @discardableResult
    func stop(within seconds: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ProcessControl.send(SIGTERM, to: process.pid)
        output += try process.readToEnd(within: seconds, file: file, line: line)
        XCTAssertEqual(try process.wait(within: 10, file: file, line: line), .exited(0), output, file: file, line: line)
        XCTAssertTrue(output.contains("stopped   \(server) exited with status 0"), output + "\n" + log, file: file, line: line)
        return output
    }

    deinit {
        // Nothing left running: the host is a subreaper that ends its tree
        // on SIGTERM; if it is stuck, the tree is SIGKILLed.
        if (try? process.exitStatusIfExited()) == nil {
            try? ProcessControl.send(SIGTERM, to: process.pid)
            if (try? process.wait(within: 15)) == nil {
                _ = try? ProcessControl.killTree(root: process.pid, signal: SIGKILL)
                process.kill()
            }
        }
    }
}

/// What load.py reported.
struct Load {
    var ok: Int
    var failed: Int
    var perPid: [pid_t: Int]

    init(_ document: JSONValue) {
        ok = Int(document["ok"]?.numberValue ?? -1)
        failed = Int(document["failed"]?.numberValue ?? -1)
        perPid = [:]
        for (pid, count) in document["per_pid"]?.objectValue ?? [:] { perPid[pid_t(pid) ?? -1] = Int(count.numberValue ?? -1) }
    }

    static func + (lhs: Load, rhs: Load) -> Load {
        var sum = lhs
        sum.ok += rhs.ok
        sum.failed += rhs.failed
        sum.perPid.merge(rhs.perPid, uniquingKeysWith: +)
        return sum
    }
}

/// The names of a process's threads (`/proc/PID/task/*/comm`).
func threadNames(of pid: pid_t) -> [String] {
    guard let tasks = try? FileSystem.contents(ofDirectory: "/proc/\(pid)/task") else { return [] }
    return tasks.compactMap { tid in
        (try? FileSystem.readFile("/proc/\(pid)/task/\(tid)/comm", limit: 64)).map {
            String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }
}

/// Whether `pid` still runs (not a zombie), without reaping it.
func isRunning(_ pid: pid_t) -> Bool {
    guard let bytes = try? FileSystem.readFile("/proc/\(pid)/stat", limit: 4096) else { return false }
    // The state follows the ")" that ends the command name.
    guard let close = bytes.lastIndex(of: UInt8(ascii: ")")), close + 2 < bytes.count else { return false }
    return bytes[close + 2] != UInt8(ascii: "Z")
}
