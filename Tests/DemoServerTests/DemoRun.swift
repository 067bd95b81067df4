import DemoServer
import EventRing
import ForkSafety
import Foundation
import Glibc
import Posix
import TestSupport
import TraceTransport
import Wire
import XCTest

/// One real run of the demo: a scratch session with a ring, a spawned
/// `forkscope agent`, a spawned `forkscope serve` (master + workers), and a
/// client. Every wait has a deadline; on teardown the whole tree is killed.
final class DemoRun {
    let scratch: ScratchSession
    let ring: Ring
    let agent: SpawnedProcess
    let agentURL: String
    let server: SpawnedProcess
    let serverAddress: String

    init(_ serveArguments: [String], agentArguments: [String] = [], file: StaticString = #filePath, line: UInt = #line) throws {
        scratch = try ScratchSession()
        ring = try scratch.createRing(RingConfiguration(laneCount: 64, slotsPerLane: 8192, stringBytes: 64 * 1024))
        agent = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", "127.0.0.1:0", "--ring", scratch.ringPath] + agentArguments)
        let agentLine = try agent.readLine()
        guard agentLine.hasPrefix("listening on ") else { throw SystemError("agent", path: agentLine, .invalidArgument) }
        agentURL = "http://" + agentLine.dropFirst("listening on ".count)
        server = try SpawnedProcess(executable: "forkscope", [
            "serve", "--ring", scratch.ringPath, "--session", scratch.session.path, "--agent-url", agentURL,
            "--flush-interval", "50",
        ] + serveArguments)
        let serverLine = try server.readLine()
        guard serverLine.hasPrefix("listening on ") else { throw SystemError("serve", path: serverLine, .invalidArgument) }
        serverAddress = String(serverLine.dropFirst("listening on ".count))
    }

    deinit {
        _ = try? ProcessControl.killTree(root: server.pid, signal: SIGKILL)
        server.kill()
        agent.kill()
        ring.unmap()
    }

    /// GET `target` from the server; returns the response.
    func get(_ target: String = "/", within seconds: UInt64 = 10) throws -> HTTPResponse {
        try http(serverAddress, "GET", target, within: seconds)
    }

    /// Makes `count` requests; returns how many spans the server says it made.
    func requests(_ count: Int) throws -> Int {
        var spans = 0
        for _ in 0..<count {
            let response = try get()
            XCTAssertEqual(response.head.status, 200)
            let body = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
            spans += body?["spans"] as? Int ?? 0
        }
        return spans
    }

    func agentStats() throws -> [String: Any] {
        let response = try http(String(agentURL.dropFirst("http://".count)), "GET", "/stats")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    func agentControl(_ target: String) throws -> HTTPResponse {
        try http(String(agentURL.dropFirst("http://".count)), "POST", target)
    }

    /// QUIT the master and wait for the whole server to exit.
    func stopGracefully(within seconds: Double = 20) throws -> WaitStatus {
        try ProcessControl.send(SIGQUIT, to: server.pid)
        return try server.wait(within: seconds)
    }

    /// The ring's events, merged by time, and a string lookup.
    func events() throws -> ([Event], RingReader) {
        let reader = try RingReader(path: scratch.ringPath)
        var events: [Event] = []
        try reader.readNew(into: &events)
        RingReader.merge(&events)
        return (events, reader)
    }

    func controlClient() throws -> ControlClient { try ControlClient(path: scratch.session.controlSocketPath) }
}

/// One blocking HTTP exchange through the project's own client.
func http(_ address: String, _ method: String, _ target: String, within seconds: UInt64 = 10) throws -> HTTPResponse {
    try AgentConnection.request(method, target, to: try AgentEndpoint(parsing: "http://" + address),
                                timeouts: Timeouts(connectMilliseconds: 2000, readMilliseconds: seconds * 1000, totalMilliseconds: seconds * 1000)).get()
}

extension Array where Element == Event {
    func of(_ kind: EventKind) -> [Event] { filter { $0.kind == kind } }
}
