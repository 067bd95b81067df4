import EventRing
import Glibc
import Posix
import Wire
import XCTest

/// Files of this repository, found from this source file's path.
public enum Repository {
    public static var root: String {
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path
    }
}

/// `forkscope host SERVER` (gunicorn, puma, unicorn) started by a test, and
/// what it printed: the server's address and master, the session's ring.
open class ServerHost {
    public let server: String
    /// The hook a worker publishes once it serves (gunicorn post_worker_init,
    /// Puma on_worker_boot, Unicorn after_worker_ready).
    public let bootHook: String
    public let process: SpawnedProcess
    public let scratch: ScratchSession
    public private(set) var output = ""
    public let address: String
    public let master: pid_t
    public let ringPath: String
    public let sessionPath: String

    /// Starts it and waits (bounded by `startup` seconds a line) until it
    /// printed where everything is. `arguments` follow the common ones.
    public init(_ server: String, bootHook: String, preload: Bool, agentURL: String, arguments: [String] = [], workers: Int = 2,
                gracefulTimeout: Int = 5, startup: Double, file: StaticString = #filePath, line: UInt = #line) throws {
        self.server = server
        self.bootHook = bootHook
        scratch = try ScratchSession()
        var all = ["host", server, "--listen", "127.0.0.1:0", "--workers", String(workers), "--session-root", scratch.root,
                   "--agent-url", agentURL, "--flush-interval-ms", "200", "--graceful-timeout", String(gracefulTimeout)]
        if preload { all.append("--preload") }
        process = try SpawnedProcess(executable: "forkscope", all + arguments)
        var printed: [String: String] = [:]
        while printed["stop"] == nil {
            let text = try process.readLine(within: startup, file: file, line: line)
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

    public var ring: RingLog { get throws { try RingLog(path: ringPath) } }

    /// The server's log, for failure messages.
    public var log: String {
        (try? FileSystem.readFile(sessionPath + "/\(server).log")).map { String(decoding: $0, as: UTF8.self) } ?? "(no log)"
    }

    /// Waits until `count` workers published `bootHook` since `after` (ring
    /// time); returns their pids.
    public func bootedWorkers(_ count: Int, after: UInt64 = 0, within seconds: Double = 30,
                              file: StaticString = #filePath, line: UInt = #line) throws -> [pid_t] {
        let deadline = Deadline(seconds: seconds)
        while true {
            let pids = try ring.serverHooks().filter { $0.hook == bootHook && $0.event.time > after }.map(\.event.pid)
            if pids.count >= count { return pids }
            if deadline.hasPassed { break }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 50)
        }
        XCTFail("\(count) workers did not boot within \(seconds) s:\n\(log)", file: file, line: line)
        throw SystemError("boot", .timedOut)
    }

    /// examples/gunicorn/load.py with Debian's python (any server answering {"pid": N}).
    public func load(_ requests: Int, concurrency: Int = 4, file: StaticString = #filePath, line: UInt = #line) throws -> LoadResult {
        try finish(startLoad(requests, concurrency: concurrency), file: file, line: line)
    }

    /// Starts load.py without waiting for it (a worker can be killed mid-run).
    public func startLoad(_ requests: Int, concurrency: Int = 4) throws -> SpawnedProcess {
        try SpawnedProcess(path: "/usr/bin/python3", [
            Repository.root + "/examples/gunicorn/load.py", "http://\(address)/",
            "--requests", String(requests), "--concurrency", String(concurrency),
        ])
    }

    public func finish(_ client: SpawnedProcess, file: StaticString = #filePath, line: UInt = #line) throws -> LoadResult {
        let text = try client.readToEnd(within: 60, file: file, line: line)
        XCTAssertEqual(try client.wait(within: 10, file: file, line: line), .exited(0), text, file: file, line: line)
        return try LoadResult(JSONValue(parsing: Array(text.utf8)))
    }

    /// Serves `requests`, waits five flush intervals (the 200 ms this
    /// harness sets), then reads the exporter's state from the worker that
    /// answers `/_forkscope/state`.
    public func serveThenReadState(_ requests: Int, file: StaticString = #filePath, line: UInt = #line)
        throws -> (load: LoadResult, state: JSONValue, counters: JSONValue, accepted: Double) {
        let load = try self.load(requests, file: file, line: line)
        XCTAssertEqual(load.ok, requests, file: file, line: line)
        var none: [pollfd] = []
        _ = try poll(&none, timeoutMilliseconds: 1_000)
        let state = try HTTP.json(address, "/_forkscope/state")
        let counters = try XCTUnwrap(state["counters"], file: file, line: line)
        return (load, state, counters, counters["accepted"]?.numberValue ?? -1)
    }

    /// SIGTERM to `forkscope host`: the server stops gracefully, then the
    /// host ends what is left. Returns everything the host printed.
    @discardableResult
    open func stop(within seconds: Double = 30, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try ProcessControl.send(SIGTERM, to: process.pid)
        output += try process.readToEnd(within: seconds, file: file, line: line)
        XCTAssertEqual(try process.wait(within: 10, file: file, line: line), .exited(0), output, file: file, line: line)
        return output
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
public struct LoadResult {
    public var ok: Int
    public var failed: Int
    public var perPid: [pid_t: Int]

    public init(_ document: JSONValue) {
        ok = Int(document["ok"]?.numberValue ?? -1)
        failed = Int(document["failed"]?.numberValue ?? -1)
        perPid = [:]
        for (pid, count) in document["per_pid"]?.objectValue ?? [:] { perPid[pid_t(pid) ?? -1] = Int(count.numberValue ?? -1) }
    }

    public static func + (lhs: LoadResult, rhs: LoadResult) -> LoadResult {
        var sum = lhs
        sum.ok += rhs.ok
        sum.failed += rhs.failed
        sum.perPid.merge(rhs.perPid, uniquingKeysWith: +)
        return sum
    }
}

/// The events of a ring file, with their strings resolved.
public struct RingLog {
    public let events: [Event]
    private let strings: [UInt64: String]

    public init(path: String) throws {
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

    public func string(_ offset: UInt64) -> String { strings[offset] ?? "" }

    public func of(_ pid: pid_t) -> [Event] { events.filter { $0.pid == pid } }

    public func kind(_ kind: EventKind, pid: pid_t? = nil) -> [Event] {
        events.filter { $0.kind == kind && (pid == nil || $0.pid == pid) }
    }

    /// server.hook events as (hook name, worker index, event).
    public func serverHooks(pid: pid_t? = nil) -> [(hook: String, index: UInt64, event: Event)] {
        kind(.serverHook, pid: pid).map { (string($0.a0), $0.a2, $0) }
    }

    /// The pids that published `hook` for worker `index`, oldest first.
    public func pids(ofHook hook: String, index: UInt64) -> [pid_t] {
        serverHooks().filter { $0.hook == hook && $0.index == index }.map(\.event.pid)
    }

    /// The lifecycle of `pid` as names: server hooks by name, fork stages
    /// and exporter events by kind (sends and gauges left out).
    public func story(_ pid: pid_t) -> [String] {
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
    public func describe(_ pid: pid_t) -> String {
        of(pid).map { event in
            let name = event.kind?.name ?? "kind \(event.rawKind)"
            let arguments = (event.kind?.arguments ?? []).enumerated().map { index, argument in
                "\(argument.name)=\(argument.type == .string ? string(event.args[index]) : String(event.args[index]))"
            }
            return "\(event.time) \(name) \(arguments.joined(separator: " "))"
        }.joined(separator: "\n")
    }
}

/// A one-shot HTTP/1.1 request with `Connection: close`, bounded.
public enum HTTP {
    public static func request(_ address: String, _ path: String, method: String = "GET", within seconds: Double = 5) throws -> [UInt8] {
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

    public static func json(_ address: String, _ path: String) throws -> JSONValue {
        try JSONValue(parsing: request(address, path))
    }
}

/// A process's threads, as Linux lists them.
public enum Threads {
    /// Their names (`/proc/PID/task/*/comm`).
    public static func names(of pid: pid_t) -> [String] {
        guard let tasks = try? FileSystem.contents(ofDirectory: "/proc/\(pid)/task") else { return [] }
        return tasks.compactMap { tid in
            (try? FileSystem.readFile("/proc/\(pid)/task/\(tid)/comm", limit: 64)).map {
                String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
    }
}
