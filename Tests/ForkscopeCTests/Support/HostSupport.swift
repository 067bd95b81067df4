import EventRing
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// A one-shot HTTP/1.1 GET with `Connection: close`, bounded by a deadline.
enum HTTPClient {
    static func get(_ address: String, _ path: String, within seconds: Double = 5) throws -> [UInt8] {
        let deadline = Deadline(seconds: seconds)
        let socket = try Socket.open(.ipv4, flags: [.closeOnExec, .nonBlocking])
        defer { try? socket.close() }
        if try socket.connect(to: try SocketAddress.ipv4(parsing: address)) == .inProgress {
            guard try socket.fileDescriptor.poll(for: Int16(POLLOUT), deadline: deadline) != 0 else { throw SystemError("connect", path: address, .timedOut) }
            if let error = try socket.pendingError() { throw SystemError("connect", path: address, error) }
        }
        try socket.sendAll("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n")
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

    static func getJSON(_ address: String, _ path: String) throws -> JSONValue {
        try JSONValue(parsing: get(address, path))
    }
}

/// The mock agent's `GET /stats`: totals and spans per `process_id`.
struct AgentStatsDocument {
    let spans: Int
    let unique: Int
    let duplicates: Int
    /// pid → (spans, unique)
    let perProcess: [Int32: (spans: Int, unique: Int)]

    init(_ body: [UInt8]) throws {
        let document = try JSONValue(parsing: body)
        spans = Int(document["spans"]?.numberValue ?? -1)
        unique = Int(document["unique_spans"]?.numberValue ?? -1)
        duplicates = Int(document["duplicate_spans"]?.numberValue ?? -1)
        var perProcess: [Int32: (spans: Int, unique: Int)] = [:]
        for (pid, tally) in document["per_process"]?.objectValue ?? [:] {
            perProcess[Int32(pid) ?? -1] = (Int(tally["spans"]?.numberValue ?? -1), Int(tally["unique"]?.numberValue ?? -1))
        }
        self.perProcess = perProcess
    }
}

/// The events of a ring file, with their strings resolved.
struct RingLog {
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

    /// server.hook events as (hook name, worker index, event).
    func serverHooks(pid: pid_t? = nil) -> [(hook: String, index: UInt64, event: Event)] {
        kind(.serverHook, pid: pid).map { (string($0.a0), $0.a2, $0) }
    }

    /// The pid that published `hook` for worker `index` (a worker's own hooks).
    func pid(ofHook hook: String, index: UInt64) -> pid_t? {
        serverHooks().first { $0.hook == hook && $0.index == index }?.event.pid
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

/// `forkscope host gunicorn` started by a test, with what it printed.
final class GunicornHost {
    let process: SpawnedProcess
    let scratch: ScratchSession
    private(set) var lines: [String: String] = [:]
    private(set) var output = ""
    let address: String
    let master: pid_t
    let ringPath: String
    let sessionPath: String

    /// Starts it and waits (bounded) until it printed where everything is.
    init(preload: Bool, agent: MockAgent, arguments: [String] = [], workers: Int = 2, gracefulTimeout: Int = 5,
         file: StaticString = #filePath, line: UInt = #line) throws {
        guard FileSystem.exists("/usr/bin/gunicorn") else {
            XCTFail("/usr/bin/gunicorn is missing: .ci/test installs Debian's gunicorn (apt-get install gunicorn)", file: file, line: line)
            throw SystemError("gunicorn", path: "/usr/bin/gunicorn", .noSuchFileOrDirectory)
        }
        scratch = try ScratchSession()
        var all = ["host", "gunicorn", "--listen", "127.0.0.1:0", "--workers", String(workers), "--session-root", scratch.root,
                   "--agent-url", agent.url, "--flush-interval-ms", "200", "--graceful-timeout", String(gracefulTimeout)]
        if preload { all.append("--preload") }
        process = try SpawnedProcess(executable: "forkscope", all + arguments)
        var printed: [String: String] = [:]
        while printed["stop"] == nil {
            let text = try process.readLine(within: 30, file: file, line: line)
            output += text + "\n"
            guard let space = text.firstIndex(of: " ") else { continue }
            printed[String(text[..<space])] = text[space...].trimmingCharacters(in: .whitespaces)
        }
        lines = printed
        let gunicorn = printed["gunicorn"] ?? ""
        address = String(gunicorn.dropFirst("http://".count).prefix { $0 != " " })
        master = pid_t(gunicorn.components(separatedBy: "master pid ").last?.prefix { $0.isNumber } ?? "") ?? 0
        ringPath = printed["ring"] ?? ""
        sessionPath = printed["session"] ?? ""
        XCTAssertGreaterThan(master, 0, output, file: file, line: line)
    }

    /// The gunicorn master's current children (its workers).
    var workers: [pid_t] { (try? ProcessControl.children(of: master)) ?? [] }

    /// Runs examples/gunicorn/load.py with Debian's python.
    func load(_ requests: Int, concurrency: Int = 4, file: StaticString = #filePath, line: UInt = #line) throws -> LoadResult {
        let client = try SpawnedProcess(path: "/usr/bin/python3", [
            RepositoryFile.root + "/examples/gunicorn/load.py", "http://\(address)/",
            "--requests", String(requests), "--concurrency", String(concurrency),
        ])
        let text = try client.readToEnd(within: 60, file: file, line: line)
        XCTAssertEqual(try client.wait(within: 10, file: file, line: line), .exited(0), text, file: file, line: line)
        return try LoadResult(Array(text.utf8))
    }

    /// SIGTERM to `forkscope host`: gunicorn stops gracefully, then the host
    /// ends what is left. Returns everything the host printed.
    @discardableResult
    func stop(within seconds: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ProcessControl.send(SIGTERM, to: process.pid)
        output += try process.readToEnd(within: seconds, file: file, line: line)
        XCTAssertEqual(try process.wait(within: 10, file: file, line: line), .exited(0), output, file: file, line: line)
        return output
    }

    /// The gunicorn log, for failure messages.
    var gunicornLog: String {
        (try? FileSystem.readFile(sessionPath + "/gunicorn.log")).map { String(decoding: $0, as: UTF8.self) } ?? "(no log)"
    }

    deinit {
        // A failed test leaves nothing running: the host is a subreaper
        // that ends its tree on SIGTERM; if it is stuck, kill the tree.
        if (try? process.exitStatusIfExited()) == nil {
            try? ProcessControl.send(SIGTERM, to: process.pid)
            if (try? process.wait(within: 15)) == nil {
                _ = try? ProcessControl.killTree(root: process.pid, signal: SIGKILL)
                process.kill()
            }
        }
    }
}

/// What examples/gunicorn/load.py reported.
struct LoadResult {
    let ok: Int
    let failed: Int
    let perPid: [pid_t: Int]

    init(_ bytes: [UInt8]) throws {
        let document = try JSONValue(parsing: bytes)
        ok = Int(document["ok"]?.numberValue ?? -1)
        failed = Int(document["failed"]?.numberValue ?? -1)
        var perPid: [pid_t: Int] = [:]
        for (pid, count) in document["per_pid"]?.objectValue ?? [:] { perPid[pid_t(pid) ?? -1] = Int(count.numberValue ?? -1) }
        self.perPid = perPid
    }

    static func + (lhs: LoadResult, rhs: LoadResult) -> LoadResult {
        LoadResult(ok: lhs.ok + rhs.ok, failed: lhs.failed + rhs.failed, perPid: lhs.perPid.merging(rhs.perPid, uniquingKeysWith: +))
    }

    private init(ok: Int, failed: Int, perPid: [pid_t: Int]) {
        self.ok = ok
        self.failed = failed
        self.perPid = perPid
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
