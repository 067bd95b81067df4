import EventRing
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// With a ring, the agent shows up on the dashboard's time axis: its start
/// (role agent) and one `agent.request` per traces request.
final class AgentRingTests: XCTestCase {
    func checkRingEvents(arguments: [String], environment: [String]?, ring: String) throws {
        let agent = try AgentProcess(arguments, environment: environment)
        let traces = makeTraces(count: 2, perTrace: 3, firstID: 1)
        let bytes = TraceAPIVersion.v04.encode(traces).count
        XCTAssertEqual(try agent.sendTraces(traces).status, 200)
        try agent.control("/control/fault?kind=429&count=1")
        try agent.control("/control/delay?ms=120")
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: 50)).status, 429)
        XCTAssertEqual(try agent.terminate(), .exited(0))

        let (events, _) = try RingReader(path: ring).readAll()
        let mine = events.filter { $0.pid == agent.process.pid }
        let start = try XCTUnwrap(mine.first { $0.kind == .processStart })
        XCTAssertEqual(start.a1, ProcessRole.agent.rawValue)
        let requests = mine.filter { $0.kind == .agentRequest }
        XCTAssertEqual(requests.count, 2)
        XCTAssertEqual(requests.first?.args, [6, UInt64(bytes), 200, 0])
        XCTAssertEqual(requests.last?.a0, 1)
        XCTAssertEqual(requests.last?.a2, 429)
        XCTAssertGreaterThanOrEqual(requests.last?.a3 ?? 0, 110, "delay_ms is the time from read to reply")
        XCTAssertEqual(mine.last?.kind, .processExit)
    }

    func testRingOptionPublishesStartAndOneEventPerTracesRequest() throws {
        let scratch = try ScratchSession()
        _ = try scratch.createRing()
        try checkRingEvents(arguments: ["--ring", scratch.ringPath], environment: nil, ring: scratch.ringPath)
    }

    func testRingFromTheEnvironment() throws {
        let scratch = try ScratchSession()
        _ = try scratch.createRing()
        var environment = Environment.current
        environment["FORKSCOPE_RING"] = scratch.ringPath
        try checkRingEvents(arguments: [], environment: environment.map { "\($0.key)=\($0.value)" }, ring: scratch.ringPath)
    }

    func testUnusableRingIsAnErrorNamingIt() throws {
        let process = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", "127.0.0.1:0", "--ring", "/nonexistent/ring"])
        let errors = try process.readErrors()
        XCTAssertEqual(try process.wait(), .exited(1))
        XCTAssertTrue(errors.contains("/nonexistent/ring"), errors)
    }
}
