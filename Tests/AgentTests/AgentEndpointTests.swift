import EventRing
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// What `forkscope agent` answers and counts on each endpoint.
final class AgentEndpointTests: XCTestCase {
    func testInfoDescribesTheAgentLikeARealOne() throws {
        let agent = try AgentProcess()
        let response = try agent.request("GET", "/info")
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.headers["Content-Type"], "application/json")
        XCTAssertNotNil(response.headers["Datadog-Agent-State"], "tracers compare this hash to know when to fetch /info again")
        let info = try JSONValue(parsing: response.body)
        XCTAssertNotNil(info["version"]?.stringValue)
        let endpoints = info["endpoints"]?.arrayValue?.compactMap(\.stringValue) ?? []
        XCTAssertTrue(endpoints.contains("/v0.4/traces"), "\(endpoints)")
        XCTAssertTrue(endpoints.contains("/v0.5/traces"), "\(endpoints)")
        XCTAssertEqual(info["client_drop_p0s"]?.boolValue, false, "a tracer must send every trace, so every span can be counted")
        XCTAssertEqual(info["config"]?["receiver_port"]?.numberValue, Double(agent.port))
    }

    func testV04PayloadIsCountedExactly() throws {
        let agent = try AgentProcess()
        let traces = makeTraces(count: 3, perTrace: 4, firstID: 100)
        let payload = TraceAPIVersion.v04.encode(traces)
        let response = try agent.sendTraces(traces, version: .v04)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(try AgentSamplingRates.parse(response.body)["service:,env:"], 1, "the reply real agents send")
        let stats = try agent.stats()
        XCTAssertEqual(stats["requests"], 1)
        XCTAssertEqual(stats["traces"], 3)
        XCTAssertEqual(stats["spans"], 12)
        XCTAssertEqual(stats["unique_spans"], 12)
        XCTAssertEqual(stats["duplicate_spans"], 0)
        XCTAssertEqual(stats["bytes"], payload.count)
        XCTAssertEqual(stats.endpoint("/v0.4/traces"), 1)
    }

    func testV05PayloadIsCountedExactly() throws {
        let agent = try AgentProcess()
        let traces = makeTraces(count: 5, perTrace: 3, firstID: 500)
        let response = try agent.sendTraces(traces, version: .v05, method: "POST")
        XCTAssertEqual(response.status, 200)
        let stats = try agent.stats()
        XCTAssertEqual(stats["requests"], 1)
        XCTAssertEqual(stats["traces"], 5)
        XCTAssertEqual(stats["spans"], 15)
        XCTAssertEqual(stats["unique_spans"], 15)
        XCTAssertEqual(stats.endpoint("/v0.5/traces"), 1)
    }

    func testSameSpanIDsSentTwiceCountAsDuplicates() throws {
        let agent = try AgentProcess()
        let traces = makeTraces(count: 2, perTrace: 5, firstID: 1)
        XCTAssertEqual(try agent.sendTraces(traces, version: .v04).status, 200)
        // The re-send of an at-least-once client, in the other format.
        XCTAssertEqual(try agent.sendTraces(traces, version: .v05).status, 200)
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 2, firstID: 50), version: .v04).status, 200)
        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], 22)
        XCTAssertEqual(stats["unique_spans"], 12)
        XCTAssertEqual(stats["duplicate_spans"], 10)
    }

    func testSpansAreCountedPerSendingProcessFromTheRootsProcessID() throws {
        let agent = try AgentProcess()
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 2, perTrace: 3, firstID: 10, pid: 111)).status, 200)
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 4, firstID: 90, pid: 222), version: .v05).status, 200)
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 3, firstID: 10, pid: 111)).status, 200)  // re-sent
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 2, firstID: 700, pid: nil)).status, 200)
        let stats = try agent.stats()
        let first = try XCTUnwrap(stats.process(111))
        XCTAssertEqual(first.spans, 9)
        XCTAssertEqual(first.unique, 6)
        XCTAssertEqual(first.duplicates, 3)
        let second = try XCTUnwrap(stats.process(222))
        XCTAssertEqual(second.spans, 4)
        XCTAssertEqual(second.unique, 4)
        let unknown = try XCTUnwrap(stats.process(0), "chunks without process_id go to pid 0")
        XCTAssertEqual(unknown.spans, 2)
    }

    func testUndecodablePayloadGets400WithAReasonAndCountsNothing() throws {
        let agent = try AgentProcess()
        let response = try agent.request("PUT", "/v0.4/traces", body: [0x93, 0x01, 0x02])
        XCTAssertEqual(response.status, 400)
        XCTAssertTrue(String(decoding: response.body, as: UTF8.self).contains("cannot decode the v0.4 payload"))
        let v05 = try agent.request("PUT", "/v0.5/traces", body: TraceAPIVersion.v04.encode(makeTraces(count: 1, perTrace: 1, firstID: 1)))
        XCTAssertEqual(v05.status, 400, "a v0.4 payload is not a v0.5 one")
        let stats = try agent.stats()
        XCTAssertEqual(stats["requests"], 2)
        XCTAssertEqual(stats["bad_payloads"], 2)
        XCTAssertEqual(stats["spans"], 0)
    }

    func testWrongMethodGets405AndUnknownPathGets404() throws {
        let agent = try AgentProcess()
        let get = try agent.request("GET", "/v0.4/traces")
        XCTAssertEqual(get.status, 405)
        XCTAssertEqual(get.headers["Allow"], "PUT, POST")
        XCTAssertEqual(try agent.request("POST", "/info").status, 405)
        XCTAssertEqual(try agent.request("GET", "/control/release").status, 405)
        XCTAssertEqual(try agent.request("GET", "/v0.3/traces").status, 404)
        XCTAssertEqual(try agent.request("GET", "/").status, 404)
        XCTAssertEqual(try agent.stats().endpoint("other"), 2)
    }

    func testTracerSideEndpointsAreAcceptedAndCountedSeparately() throws {
        let agent = try AgentProcess()
        XCTAssertEqual(try agent.request("PUT", "/v0.6/stats", body: [0x80]).status, 200)
        XCTAssertEqual(try agent.request("POST", "/telemetry/proxy/api/v2/apmtelemetry", body: Array("{}".utf8)).status, 202)
        let stats = try agent.stats()
        XCTAssertEqual(stats.endpoint("/v0.6/stats"), 1)
        XCTAssertEqual(stats.endpoint("/telemetry/proxy/"), 1)
        XCTAssertEqual(stats["spans"], 0)
    }

    func testKeepAliveConnectionServesManyRequestsInOrder() throws {
        let agent = try AgentProcess()
        let connection = try agent.client()
        for index in 0..<20 {
            let traces = makeTraces(count: 1, perTrace: 2, firstID: UInt64(index * 10 + 1))
            let request = HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v04.encode(traces))
            XCTAssertEqual(try connection.exchange(request).status, 200)
        }
        // Pipelined: three requests in one write, three replies in order.
        var pipelined: [UInt8] = []
        for target in ["/info", "/nope", "/stats"] { pipelined += try HTTPRequest(method: "GET", target: target).serialized() }
        try connection.send(pipelined)
        XCTAssertEqual(try connection.readResponse().status, 200)
        XCTAssertEqual(try connection.readResponse().status, 404)
        let stats = AgentStats(try JSONValue(parsing: try connection.readResponse().body))
        XCTAssertEqual(stats["spans"], 40)
        XCTAssertEqual(stats.json["connections"]?["accepted"]?.numberValue, 1)
    }

    func testExpectContinueGets100ContinueBeforeTheBody() throws {
        let agent = try AgentProcess()
        let connection = try agent.client()
        let traces = makeTraces(count: 1, perTrace: 3, firstID: 1)
        var headers = tracerHeaders(traces)
        headers.add(name: "Expect", value: "100-continue")
        let request = HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: headers, body: TraceAPIVersion.v04.encode(traces))
        try connection.send(try request.serializedHead())
        let interim = try XCTUnwrap(try connection.receive(until: Deadline(seconds: 5)))
        XCTAssertTrue(String(decoding: interim, as: UTF8.self).hasPrefix("HTTP/1.1 100 Continue\r\n\r\n"))
        try connection.send(request.body)
        XCTAssertEqual(try connection.readResponse(to: "PUT").status, 200)
        XCTAssertEqual(try agent.stats()["spans"], 3)
    }

    func testUnixSocketListener() throws {
        let directory = try FileSystem.makeTemporaryDirectory()
        defer { try? FileSystem.removeTree(directory) }
        let path = directory + "/agent.sock"
        let agent = try AgentProcess(listen: "unix:" + path)
        XCTAssertEqual(agent.address, "unix:" + path)
        XCTAssertEqual(try agent.sendTraces(makeTraces(count: 1, perTrace: 2, firstID: 1)).status, 200)
        XCTAssertEqual(try agent.stats()["spans"], 2)
        XCTAssertEqual(try agent.terminate(), .exited(0))
        XCTAssertFalse(FileSystem.exists(path), "the socket file is removed on a clean stop")
    }

    func testSIGTERMStopsTheAgentCleanlyWithOpenConnections() throws {
        let agent = try AgentProcess(["--hold"])
        let held = try agent.client()
        let traces = makeTraces(count: 1, perTrace: 1, firstID: 1)
        try held.send(HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v04.encode(traces)))
        XCTAssertEqual(try agent.request("GET", "/control/wait-held?count=1&timeout_ms=5000").status, 200)
        XCTAssertEqual(try agent.terminate(), .exited(0))
        let (_, error) = held.readUntilClosed()
        XCTAssertTrue(error == nil || error?.errno == .connectionReset, "\(String(describing: error))")
    }

    func testInvalidCommandLineIsRefusedWithAMessage() throws {
        for arguments in [["--listen", "localhost"], ["--fault", "boom"], ["--fault", "500:0"]] {
            let process = try SpawnedProcess(executable: "forkscope", ["agent"] + arguments)
            let errors = try process.readErrors()
            XCTAssertNotEqual(try process.wait(), .exited(0), "\(arguments)")
            XCTAssertTrue(errors.contains("invalid"), "\(arguments): \(errors)")
        }
    }

    func testBusyPortIsAnErrorNamingThePort() throws {
        let agent = try AgentProcess()
        let second = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", agent.address])
        let errors = try second.readErrors()
        XCTAssertEqual(try second.wait(), .exited(1))
        XCTAssertTrue(errors.contains("cannot listen on \(agent.address)"), errors)
    }
}
