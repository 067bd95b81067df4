import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// Hostile input and load: the agent answers what it can, closes what it
/// must, and keeps serving everyone else.
final class AgentRobustnessTests: XCTestCase {
    /// Sends `bytes` on a fresh connection; the reply's status (nil if the
    /// agent only closed) once the agent closes the connection.
    func rawExchange(_ agent: AgentProcess, _ bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) throws -> Int? {
        let connection = try agent.client()
        defer { connection.close() }
        do { try connection.send(bytes) } catch let error as ClientError where error.errno == .connectionReset || error.errno == .brokenPipe {
            // The agent answered and closed before taking everything: fine.
        }
        let (reply, error) = connection.readUntilClosed()
        XCTAssertNotEqual(error?.errno, .timedOut, "the agent must answer or close", file: file, line: line)
        guard reply.starts(with: Array("HTTP/1.1 ".utf8)), reply.count >= 12 else { return nil }
        return Int(String(decoding: reply[9..<12], as: UTF8.self))
    }

    func testHostileRequestsAreAnsweredAndTheAgentKeepsServing() throws {
        let agent = try AgentProcess()
        let hugeHeader = "GET /info HTTP/1.1\r\nX-Big: " + String(repeating: "a", count: 200_000) + "\r\n\r\n"
        XCTAssertEqual(try rawExchange(agent, Array(hugeHeader.utf8)), 431)
        let manyHeaders = "GET /info HTTP/1.1\r\n" + (0..<500).map { "X-\($0): v\r\n" }.joined() + "\r\n"
        XCTAssertEqual(try rawExchange(agent, Array(manyHeaders.utf8)), 431)
        XCTAssertEqual(try rawExchange(agent, Array("PUT /v0.4/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8)), 400)
        XCTAssertEqual(try rawExchange(agent, Array("PUT /v0.4/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n".utf8)), 400)
        XCTAssertEqual(try rawExchange(agent, Array("PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n".utf8)), 400)
        XCTAssertEqual(try rawExchange(agent, Array("PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".utf8)), 400)
        XCTAssertEqual(try rawExchange(agent, Array("PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 500000000\r\n\r\n".utf8)), 413)
        XCTAssertEqual(try rawExchange(agent, Array("PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n".utf8)), 400)
        XCTAssertEqual(try rawExchange(agent, Array("GET /info HTTP/2.0\r\n\r\n".utf8)), 505)
        XCTAssertEqual(try rawExchange(agent, Array("GET /info HTTP/1.1\nHost: x\n\n".utf8)), 400)
        // A chunked traces payload is fine, though.
        let traces = makeTraces(count: 1, perTrace: 2, firstID: 1)
        let body = TraceAPIVersion.v04.encode(traces)
        let chunked = Array("PUT /v0.4/traces HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\(String(body.count, radix: 16))\r\n".utf8)
            + body + Array("\r\n0\r\n\r\n".utf8)
        XCTAssertEqual(try rawExchange(agent, chunked), 200)

        // Random bytes, some starting like a request.
        var generator = SeededGenerator(seed: 0x5eed)
        for round in 0..<40 {
            var bytes = (0..<(1 + Int(generator.next() % 2000))).map { _ in UInt8(truncatingIfNeeded: generator.next()) }
            if round % 2 == 0 { bytes = Array("PUT /v0.4/traces HTTP/1.1\r\n".utf8) + bytes }
            bytes += Array("\r\n\r\n".utf8)
            _ = try rawExchange(agent, bytes)
        }
        // Connections that send nothing, or half a request, then vanish.
        for _ in 0..<20 { try agent.client().close() }
        let partial = try agent.client()
        try partial.send(Array("PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 100\r\n\r\nabc".utf8))
        partial.close()

        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], 2)
        XCTAssertGreaterThan(stats.endpoint("malformed"), 10)
        XCTAssertNil(try agent.process.exitStatusIfExited(), "the agent is still running")
    }

    func testSlowClientHoldingAHalfSentRequestBlocksNoOne() throws {
        let agent = try AgentProcess()
        let slow = try agent.client()
        try slow.send(Array("PUT /v0.4/traces HTTP/1.1\r\nContent-Length: 1000\r\n\r\nabc".utf8))
        let started = Clock.monotonicNanoseconds()
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 1, firstID: 1)).status, 200)
        XCTAssertLessThan((Clock.monotonicNanoseconds() - started) / 1_000_000, 1000)
        slow.close()
    }

    func testManyConcurrentConnectionsAreAllServedAndCounted() throws {
        let agent = try AgentProcess()
        let connectionCount = 200
        var connections: [TestClient] = []
        for index in 0..<connectionCount {
            let connection = try agent.client()
            let traces = makeTraces(count: 2, perTrace: 3, firstID: UInt64(index * 100 + 1), pid: Int32(1000 + index % 4))
            try connection.send(HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v04.encode(traces)))
            connections.append(connection)
        }
        for connection in connections { XCTAssertEqual(try connection.readResponse(to: "PUT").status, 200) }
        let stats = try agent.stats()
        XCTAssertEqual(stats["requests"], connectionCount)
        XCTAssertEqual(stats["spans"], connectionCount * 6)
        XCTAssertEqual(stats["unique_spans"], connectionCount * 6)
        for pid in Int32(1000)..<1004 { XCTAssertEqual(stats.process(pid)?.spans, connectionCount / 4 * 6) }
        XCTAssertGreaterThanOrEqual(stats.json["connections"]?["open"]?.numberValue ?? 0, Double(connectionCount))
    }

    func testLargePayloadIsCountedExactly() throws {
        let agent = try AgentProcess()
        let traces = makeTraces(count: 500, perTrace: 40, firstID: 1)
        for version in TraceAPIVersion.allCases {
            XCTAssertEqual(try agent.sendTraces(traces, version: version, within: 30).status, 200, "\(version)")
        }
        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], 40_000)
        XCTAssertEqual(stats["unique_spans"], 20_000)
        XCTAssertGreaterThan(stats["bytes"], 2_000_000)
    }

    func testTraceOfManyMoreSpansThanItsTableWindowIsCountedExactly() throws {
        // The seen-span table keeps a trace's spans together, up to a few
        // cache lines; the rest of a long trace goes elsewhere, and a
        // re-send must still find every one of them.
        let agent = try AgentProcess()
        let long = makeTraces(count: 1, perTrace: 20_000, firstID: 7)
        let short = makeTraces(count: 300, perTrace: 3, firstID: 9)
        XCTAssertEqual(try agent.sendTraces(long + short, version: .v05, within: 30).status, 200)
        XCTAssertEqual(try agent.sendTraces(short + long, version: .v04, within: 30).status, 200)
        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], 2 * 20_900)
        XCTAssertEqual(stats["unique_spans"], 20_900)
        XCTAssertEqual(stats.process(4242)?.duplicates, 20_900)
    }

    func testHTTP10RequestGetsItsReplyAndAClose() throws {
        let agent = try AgentProcess()
        let traces = makeTraces(count: 1, perTrace: 2, firstID: 1)
        let body = TraceAPIVersion.v04.encode(traces)
        let connection = try agent.client()
        try connection.send(Array("PUT /v0.4/traces HTTP/1.0\r\nContent-Length: \(body.count)\r\n\r\n".utf8) + body)
        let (bytes, error) = connection.readUntilClosed()
        XCTAssertNil(error)
        let text = String(decoding: bytes, as: UTF8.self)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 200 OK\r\n"), text)
        XCTAssertTrue(text.contains("Connection: close\r\n"), text)
    }

    func testManyHeldRepliesAtOnceWhileControlIsServed() throws {
        let agent = try AgentProcess(["--hold"])
        let count = 100
        var connections: [TestClient] = []
        for index in 0..<count {
            let connection = try agent.client()
            let traces = makeTraces(count: 1, perTrace: 1, firstID: UInt64(index + 1))
            try connection.send(HTTPRequest(method: "POST", target: "/v0.5/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v05.encode(traces)))
            connections.append(connection)
        }
        XCTAssertEqual(try agent.request("GET", "/control/wait-held?count=\(count)&timeout_ms=5000").status, 200)
        XCTAssertEqual(try agent.stats()["held"], count)
        XCTAssertEqual(try agent.control("/control/release")["released"]?.numberValue, Double(count))
        for connection in connections { XCTAssertEqual(try connection.readResponse(to: "POST").status, 200) }
        XCTAssertEqual(try agent.stats()["unique_spans"], count)
    }
}

