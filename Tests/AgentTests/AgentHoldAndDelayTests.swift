import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// Held and delayed replies: the seed's delaying mock agent. A test must
/// know the agent has *read* a request before it forks, and control
/// requests must be served while traces replies are held.
final class AgentHoldAndDelayTests: XCTestCase {
    func sendHeld(_ agent: AgentProcess, firstID: UInt64, spans: Int = 2) throws -> TestClient {
        let connection = try agent.client()
        let traces = makeTraces(count: 1, perTrace: spans, firstID: firstID)
        try connection.send(HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v04.encode(traces)))
        return connection
    }

    func testHeldReplyWaitsForReleaseWhileControlAndStatsAreServed() throws {
        let agent = try AgentProcess()
        XCTAssertEqual(try agent.control("/control/hold")["holding"]?.boolValue, true)
        let sender = try sendHeld(agent, firstID: 1)
        let waited = try agent.request("GET", "/control/wait-held?count=1&timeout_ms=5000")
        XCTAssertEqual(waited.status, 200)
        XCTAssertEqual(try JSONValue(parsing: waited.body)["held"]?.numberValue, 1)

        // Read and counted, not answered: the state a fork must handle.
        let stats = try agent.stats()
        XCTAssertEqual(stats["held"], 1)
        XCTAssertEqual(stats["spans"], 2)
        XCTAssertEqual(try agent.request("GET", "/info").status, 200)
        XCTAssertEqual(try sender.receive(until: Deadline(seconds: 0.2)), [], "no reply while held")

        XCTAssertEqual(try agent.control("/control/release")["released"]?.numberValue, 1)
        XCTAssertEqual(try sender.readResponse(to: "PUT").status, 200)
        XCTAssertEqual(try agent.stats()["held"], 0)
    }

    func testReleaseCountReleasesTheOldestHeldRepliesFirst() throws {
        let agent = try AgentProcess(["--hold"])
        var senders: [TestClient] = []
        for index in 0..<3 {
            senders.append(try sendHeld(agent, firstID: UInt64(index * 10 + 1)))
            // One at a time, so the hold order is the send order.
            XCTAssertEqual(try agent.request("GET", "/control/wait-held?count=\(index + 1)&timeout_ms=5000").status, 200)
        }
        XCTAssertEqual(try agent.control("/control/release?count=2")["released"]?.numberValue, 2)
        XCTAssertEqual(try senders[0].readResponse(to: "PUT").status, 200)
        XCTAssertEqual(try senders[1].readResponse(to: "PUT").status, 200)
        XCTAssertEqual(try senders[2].receive(until: Deadline(seconds: 0.2)), [], "the newest stays held")
        XCTAssertEqual(try agent.stats()["held"], 1)
        // Stop holding new replies: the next request is answered at once, the held one still waits.
        try agent.control("/control/hold?enabled=false")
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: 900)).status, 200)
        XCTAssertEqual(try agent.control("/control/release")["released"]?.numberValue, 1)
        XCTAssertEqual(try senders[2].readResponse(to: "PUT").status, 200)
    }

    func testWaitHeldTimesOutWith408() throws {
        let agent = try AgentProcess(["--hold"])
        let started = Clock.monotonicNanoseconds()
        let response = try agent.request("GET", "/control/wait-held?count=1&timeout_ms=150")
        let elapsed = (Clock.monotonicNanoseconds() - started) / 1_000_000
        XCTAssertEqual(response.status, 408)
        XCTAssertEqual(try JSONValue(parsing: response.body)["reached"]?.boolValue, false)
        XCTAssertGreaterThanOrEqual(elapsed, 140)
        XCTAssertLessThan(elapsed, 3000)
    }

    func testClientThatGivesUpOnAHeldReplyLeavesItsSpansCountedSoAResendIsADuplicate() throws {
        let agent = try AgentProcess(["--hold"])
        let sender = try sendHeld(agent, firstID: 7, spans: 3)
        XCTAssertEqual(try agent.request("GET", "/control/wait-held?count=1&timeout_ms=5000").status, 200)
        sender.close()  // a cancelled send
        XCTAssertTrue(try eventually { try agent.stats()["held"] == 0 }, "the abandoned reply is no longer held")
        let afterCancel = try agent.stats()
        XCTAssertEqual(afterCancel["abandoned_replies"], 1)
        XCTAssertEqual(afterCancel["spans"], 3)

        try agent.control("/control/hold?enabled=false")
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 3, firstID: 7)).status, 200)  // the re-send
        let stats = try agent.stats()
        XCTAssertEqual(stats["unique_spans"], 3)
        XCTAssertEqual(stats["duplicate_spans"], 3, "at-least-once delivery made visible")
    }

    func testFixedDelayFromTheCommandLineDelaysOnlyTracesReplies() throws {
        let agent = try AgentProcess(["--delay", "800"])
        var started = Clock.monotonicNanoseconds()
        XCTAssertEqual(try agent.request("GET", "/info").status, 200)
        XCTAssertLessThan((Clock.monotonicNanoseconds() - started) / 1_000_000, 600, "control and info are never delayed")
        started = Clock.monotonicNanoseconds()
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: 1)).status, 200)
        XCTAssertGreaterThanOrEqual((Clock.monotonicNanoseconds() - started) / 1_000_000, 790)
    }

    func testDelaySetAtRunTimeDelaysEachReplyWithoutBlockingOthers() throws {
        let agent = try AgentProcess()
        XCTAssertEqual(try agent.control("/control/delay?ms=800")["delay_ms"]?.numberValue, 800)
        let started = Clock.monotonicNanoseconds()
        let senders = try (0..<4).map { try sendHeld(agent, firstID: UInt64($0 * 10 + 1)) }
        // While four replies are delayed, /stats answers at once.
        let stats = try agent.stats()
        XCTAssertLessThan((Clock.monotonicNanoseconds() - started) / 1_000_000, 700)
        XCTAssertLessThanOrEqual(stats["delayed"], 4)
        for sender in senders { XCTAssertEqual(try sender.readResponse(to: "PUT").status, 200) }
        let elapsed = (Clock.monotonicNanoseconds() - started) / 1_000_000
        XCTAssertGreaterThanOrEqual(elapsed, 790)
        XCTAssertLessThan(elapsed, 2400, "the four delays ran side by side, not one after another (3200 ms)")
        try agent.control("/control/delay?ms=0")
        let again = Clock.monotonicNanoseconds()
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: 99)).status, 200)
        XCTAssertLessThan((Clock.monotonicNanoseconds() - again) / 1_000_000, 300)
    }

    func testBadControlParametersGet400() throws {
        let agent = try AgentProcess()
        XCTAssertEqual(try agent.request("POST", "/control/delay").status, 400)
        XCTAssertEqual(try agent.request("POST", "/control/delay?ms=-1").status, 400)
        XCTAssertEqual(try agent.request("POST", "/control/fault?kind=teapot").status, 400)
        XCTAssertEqual(try agent.request("POST", "/control/fault?kind=500&count=0").status, 400)
        XCTAssertEqual(try agent.request("POST", "/control/hold?enabled=maybe").status, 400)
        XCTAssertEqual(try agent.request("GET", "/control/wait-held").status, 400)
    }

    func testResetZeroesTheCounters() throws {
        let agent = try AgentProcess()
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 2, perTrace: 2, firstID: 1)).status, 200)
        try agent.control("/control/reset")
        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], 0)
        XCTAssertEqual(stats["requests"], 0)
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 2, perTrace: 2, firstID: 1)).status, 200)
        XCTAssertEqual(try agent.stats()["duplicate_spans"], 0, "the span ids seen are forgotten too")
    }
}
