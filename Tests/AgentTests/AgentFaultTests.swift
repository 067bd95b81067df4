import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// Each injected fault, as a raw client sees it, and whether the agent
/// counted the payload (see `AgentFaultKind.countsSpans`).
final class AgentFaultTests: XCTestCase {
    func send(_ agent: AgentProcess, firstID: UInt64, spans: Int = 2) throws -> TestClient {
        let connection = try agent.client()
        let traces = makeTraces(count: 1, perTrace: spans, firstID: firstID)
        try connection.send(HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v04.encode(traces)))
        return connection
    }

    func checkRefusingFault(_ kind: String, status: Int) throws {
        let agent = try AgentProcess()
        try agent.control("/control/fault?kind=\(kind)&count=2")
        for index in 0..<3 {
            let response = try agent.sendTraces(makeTraces(count: 1, perTrace: 3, firstID: UInt64(index * 10 + 1)))
            XCTAssertEqual(response.status, index < 2 ? status : 200, "\(kind), request \(index)")
        }
        let stats = try agent.stats()
        XCTAssertEqual(stats["requests"], 3)
        XCTAssertEqual(stats["spans"], 3, "\(kind): a refused payload is not counted")
        XCTAssertEqual(stats["rejected_spans"], 6)
        let tally = try XCTUnwrap(stats.fault(kind))
        XCTAssertEqual(tally.requests, 2)
        XCTAssertEqual(tally.spans, 6)
        XCTAssertFalse(tally.counted)
        XCTAssertEqual(stats.json["fault"], .null, "the fault was used up")
    }

    func testFault500RefusesTheNextNPayloads() throws { try checkRefusingFault("500", status: 500) }
    func testFault413RefusesTheNextNPayloads() throws { try checkRefusingFault("413", status: 413) }
    func testFault429RefusesTheNextNPayloads() throws { try checkRefusingFault("429", status: 429) }

    func testFaultFromTheCommandLineWithoutCountAppliesToEveryRequest() throws {
        let agent = try AgentProcess(["--fault", "500"])
        for index in 0..<3 {
            XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: UInt64(index + 1))).status, 500)
        }
        XCTAssertEqual(try agent.request("GET", "/info").status, 200, "faults touch traces requests only")
        XCTAssertEqual(try agent.stats().fault("500")?.requests, 3)
        try agent.control("/control/fault?kind=none")
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: 9)).status, 200)
    }

    func testFaultResetGivesTheClientECONNRESETAfterTheAgentReadAndCountedTheRequest() throws {
        let agent = try AgentProcess(["--fault", "reset:1"])
        let connection = try send(agent, firstID: 1, spans: 4)
        let (bytes, error) = connection.readUntilClosed()
        XCTAssertEqual(bytes, [])
        XCTAssertEqual(error?.errno, .connectionReset, "\(String(describing: error))")
        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], 4, "read and counted: a re-send will be a duplicate")
        XCTAssertEqual(stats.fault("reset")?.counted, true)
        XCTAssertEqual(stats.status(0), 1)
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 4, firstID: 1)).status, 200, "only the next request")
        XCTAssertEqual(try agent.stats()["duplicate_spans"], 4)
    }

    func testFaultGarbageRepliesWithBytesThatAreNotHTTP() throws {
        let agent = try AgentProcess()
        try agent.control("/control/fault?kind=garbage&count=1")
        let connection = try send(agent, firstID: 1)
        let (bytes, error) = connection.readUntilClosed()
        XCTAssertNil(error)
        XCTAssertFalse(bytes.isEmpty)
        XCTAssertFalse(bytes.starts(with: Array("HTTP/".utf8)))
        var parser = HTTPResponseParser()
        parser.feed(bytes)
        XCTAssertThrowsError(try parser.nextResponse(to: "PUT"), "an HTTP client must see a malformed response")
        XCTAssertEqual(try agent.stats().fault("garbage")?.counted, true)
    }

    func testFaultCloseAfterHeadersAnnouncesABodyItNeverSends() throws {
        let agent = try AgentProcess()
        try agent.control("/control/fault?kind=close-after-headers&count=1")
        let connection = try send(agent, firstID: 1)
        let (bytes, error) = connection.readUntilClosed()
        XCTAssertNil(error)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("Content-Length: "), text)
        XCTAssertTrue(text.hasSuffix("\r\n\r\n"), "nothing after the head: \(text)")
        var parser = HTTPResponseParser()
        parser.feed(bytes)
        XCTAssertNil(try parser.nextResponse(to: "PUT"))
        XCTAssertThrowsError(try parser.endOfStream()) { XCTAssertEqual($0 as? HTTPParseError, .incompleteMessage) }
        XCTAssertEqual(try agent.stats().fault("close-after-headers")?.counted, true)
    }

    func testFaultSlowBodyTricklesTheBodyByteByByte() throws {
        let agent = try AgentProcess()
        try agent.control("/control/fault?kind=slow-body&count=1&interval_ms=40")
        let connection = try send(agent, firstID: 1)
        let started = Clock.monotonicNanoseconds()
        // The head comes at once, the body does not.
        var head: [UInt8] = []
        while ServerHead.end(of: head) == nil {
            head += try XCTUnwrap(try connection.receive(until: Deadline(seconds: 2)), "closed before the head")
        }
        XCTAssertLessThan((Clock.monotonicNanoseconds() - started) / 1_000_000, 600, "the body alone takes over 1200 ms")
        connection.parser.feed(head)
        let response = try connection.readResponse(to: "PUT", within: 10)
        let elapsed = (Clock.monotonicNanoseconds() - started) / 1_000_000
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(try AgentSamplingRates.parse(response.body)["service:,env:"], 1)
        XCTAssertGreaterThanOrEqual(Int(elapsed), (response.body.count - 2) * 40)
        XCTAssertEqual(try agent.stats().fault("slow-body")?.counted, true)
        // The connection stays usable after a slow body.
        XCTAssertEqual(try connection.exchange(HTTPRequest(method: "GET", target: "/info")).status, 200)
    }

    func testHeldReplyGetsItsFaultWhenReleased() throws {
        let agent = try AgentProcess(["--hold", "--fault", "reset:1"])
        let connection = try send(agent, firstID: 1)
        XCTAssertEqual(try agent.request("GET", "/control/wait-held?count=1&timeout_ms=5000").status, 200)
        XCTAssertEqual(try connection.receive(until: Deadline(seconds: 0.1)), [], "held, not yet reset")
        try agent.control("/control/release")
        XCTAssertEqual(connection.readUntilClosed().error?.errno, .connectionReset)
    }
}

/// Where an HTTP head ends in raw bytes.
enum ServerHead {
    static func end(of bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4) where Array(bytes[index..<(index + 4)]) == [13, 10, 13, 10] { return index + 4 }
        return nil
    }
}
