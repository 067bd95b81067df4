import Dashboard
import DemoServer
import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// What went wrong while running a scenario (not a failed check: the run itself).
public struct ScenarioError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One scenario's processes: a session (directory, ring, control socket,
/// logs), a spawned `forkscope agent` and a spawned `forkscope serve`.
///
/// This process never forks: both are started with posix_spawn, and the
/// server does the forking. Every wait has a deadline; `end()` (also run on
/// deinit) ends the whole tree by pid, and the caller is a child subreaper
/// (`DescendantReaper`) so a daemon that left the tree is still ours to end.
public final class ScenarioRun {
    public let session: SessionDirectory
    public let ring: Ring
    public let agentAddress: String
    public let serverAddress: String
    public let server: pid_t
    private let agent: pid_t
    private var ended = false

    public init(executable: String, serveArguments: [String], sessionRoot: String = SessionDirectory.root()) throws {
        session = try SessionDirectory.create(root: sessionRoot)
        ring = try Ring.create(at: session.ringPath, configuration: RingConfiguration(laneCount: 64, slotsPerLane: 4096, stringBytes: 64 * 1024))
        var started: [pid_t] = []
        do {
            let (agentPid, agentLine) = try ScenarioRun.start(executable, session, "agent", ["agent", "--listen", "127.0.0.1:0", "--ring", session.ringPath])
            started.append(agentPid)
            agent = agentPid
            agentAddress = agentLine
            let (serverPid, serverLine) = try ScenarioRun.start(executable, session, "serve", [
                "serve", "--ring", session.ringPath, "--session", session.path, "--agent-url", "http://\(agentLine)",
                "--flush-interval", "50",
            ] + serveArguments)
            server = serverPid
            serverAddress = serverLine
        } catch {
            for pid in started { _ = try? ProcessControl.killTree(root: pid, signal: SIGKILL) }
            _ = started.map { try? ProcessControl.wait(for: $0, deadline: .after(milliseconds: 2_000)) }
            ring.unmap()
            throw error
        }
    }

    deinit { end() }

    /// Ends every process of the run (SIGKILL: a scenario has already stopped the server gracefully when it matters).
    public func end() {
        guard !ended else { return }
        ended = true
        for pid in [server, agent] {
            _ = try? ProcessControl.killTree(root: pid, signal: SIGKILL)
            _ = try? ProcessControl.wait(for: pid, deadline: .after(milliseconds: 2_000))
        }
        ring.unmap()
    }

    /// Removes the session directory (after `end()`).
    public func removeSession() { try? FileSystem.removeTree(session.path) }

    /// Spawns `forkscope ARGS` with stdout on a pipe until its first line
    /// ("listening on ADDR"), stderr in the session's log.
    private static func start(_ executable: String, _ session: SessionDirectory, _ name: String, _ arguments: [String]) throws -> (pid_t, String) {
        let (read, write) = try FileDescriptor.pipe()
        defer { try? read.close() }
        let log = session.logPath(name)
        let spawn = Spawn(path: executable, arguments: ["forkscope"] + arguments, fileActions: [
            .nullDevice(as: .standardInput), .duplicate(write, as: .standardOutput), .appendingLog(log, as: .standardError),
        ])
        let pid: pid_t
        do { pid = try spawn.run() } catch {
            try? write.close()
            throw error
        }
        try write.close()
        var line: [UInt8] = []
        var byte: UInt8 = 0
        let deadline = Deadline.after(milliseconds: 10_000)
        while line.last != 10 {
            guard try read.poll(for: Int16(POLLIN), deadline: deadline) != 0,
                  try withUnsafeMutableBytes(of: &byte, { try read.read(into: $0) }) == 1 else {
                _ = try? ProcessControl.killTree(root: pid, signal: SIGKILL)
                _ = try? ProcessControl.wait(for: pid, deadline: .after(milliseconds: 2_000))
                throw ScenarioError("\(name) (pid \(pid)) did not start within 10 s; see \(log)")
            }
            line.append(byte)
        }
        let text = String(decoding: line.dropLast(), as: UTF8.self)
        guard text.hasPrefix("listening on ") else { throw ScenarioError("\(name) said \(quoted(text)), not \"listening on …\"; see \(log)") }
        return (pid, String(text.dropFirst("listening on ".count)))
    }

    // MARK: driving the run

    /// Makes `count` requests to the server; returns the spans it says they made.
    public func requests(_ count: Int) throws -> Int {
        var spans = 0
        for _ in 0..<count {
            let response = try ScenarioRun.http(serverAddress, "GET", "/")
            guard response.head.status == 200 else { throw ScenarioError("the server answered HTTP \(response.head.status)") }
            let body = try? JSONValue(parsing: response.body)
            spans += Int(body?["spans"]?.numberValue ?? 0)
        }
        return spans
    }

    /// The agent's `/stats` document.
    public func agentStats() throws -> JSONValue {
        let response = try ScenarioRun.http(agentAddress, "GET", "/stats")
        do { return try JSONValue(parsing: response.body) } catch { throw ScenarioError("agent /stats is not JSON: \(error)") }
    }

    /// `POST /control/…` on the agent (hold, release, wait-held, delay, fault).
    @discardableResult
    public func agentControl(_ target: String, within seconds: UInt64 = 5) throws -> HTTPResponse {
        let response = try ScenarioRun.http(agentAddress, target.hasPrefix("/control/wait-held") ? "GET" : "POST", target, within: seconds)
        guard response.head.status == 200 else {
            throw ScenarioError("agent \(target) answered HTTP \(response.head.status): \(String(decoding: response.body, as: UTF8.self))")
        }
        return response
    }

    /// A control-socket request to the master.
    @discardableResult
    public func control(_ request: ControlRequest) throws -> ControlMessage {
        let client: ControlClient
        do { client = try ControlClient(path: session.controlSocketPath) } catch { throw ScenarioError("control socket: \(error)") }
        switch client.send(request, within: 10) {
        case .success(let message): return message
        case .failure(let error): throw ScenarioError("control \(request.name): \(error)")
        }
    }

    /// The server's processes (from the master's table).
    public func processes() throws -> [(pid: pid_t, start: UInt64, role: String, index: Int)] {
        let message = try control(.processes)
        return (message["processes"]?.arrayValue ?? []).compactMap { entry in
            guard let pid = entry["pid"]?.int64Value, let start = entry["start"]?.int64Value, let role = entry["role"]?.stringValue else { return nil }
            return (pid_t(pid), UInt64(start), role, Int(entry["index"]?.int64Value ?? -1))
        }
    }

    /// QUIT the master (workers flush and close their exporters) and wait for it.
    public func stopGracefully(within milliseconds: UInt64 = 4_000) throws {
        try ProcessControl.send(SIGQUIT, to: server)
        guard try ProcessControl.wait(for: server, deadline: .after(milliseconds: milliseconds)) != nil else {
            throw ScenarioError("the server (pid \(server)) did not exit within \(milliseconds) ms of QUIT")
        }
    }

    /// Every event of the ring, merged by time, and its reader (strings).
    public func events() throws -> ([Event], RingReader) {
        let reader = try RingReader(path: session.ringPath)
        var events: [Event] = []
        try reader.readNew(into: &events)
        RingReader.merge(&events)
        return (events, reader)
    }

    /// Polls `condition` every 20 ms until it holds or `milliseconds` pass.
    public func waitUntil(_ what: String, within milliseconds: UInt64 = 3_000, _ condition: () throws -> Bool) throws {
        let deadline = Deadline.after(milliseconds: milliseconds)
        while try !condition() {
            if deadline.hasPassed { throw ScenarioError("timed out after \(milliseconds) ms waiting for \(what)") }
            var none: [pollfd] = []
            _ = try? poll(&none, timeoutMilliseconds: 20)
        }
    }

    /// One blocking HTTP exchange through the project's own client.
    static func http(_ address: String, _ method: String, _ target: String, within seconds: UInt64 = 5) throws -> HTTPResponse {
        let endpoint = try AgentEndpoint(parsing: "http://" + address)
        var connection = AgentConnection(endpoint: endpoint, timeouts: Timeouts(connectMilliseconds: 2000, readMilliseconds: seconds * 1000, totalMilliseconds: seconds * 1000))
        let source = try CancellationSource()
        let token = source.begin()
        defer { source.end(token); connection.close() }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.host)
        do { return try connection.exchange(HTTPRequest(method: method, target: target, headers: headers), token: token).get() } catch {
            throw ScenarioError("\(method) http://\(address)\(target): \(error)")
        }
    }
}
