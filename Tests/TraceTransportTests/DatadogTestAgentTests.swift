import EventRing
import ForkSafety
import Foundation
import Glibc
import Posix
import TestSupport
import TraceTransport
import Wire
import XCTest

/// Our encoder and transport against Datadog's own test agent
/// (`ddapm-test-agent`, installed from PyPI by `.ci/test`): it must accept
/// both payload versions with its header checks on, and give back exactly
/// the traces we sent.
final class DatadogTestAgentTests: XCTestCase {
    var agent: SpawnedProcess?
    var port: UInt16 = 0

    /// A free port: bind to 0, read it, release it for the agent.
    func freePort() throws -> UInt16 {
        let probe = try Socket.open(.ipv4, .stream, flags: [.closeOnExec])
        defer { try? probe.close() }
        try probe.bind(to: .ipv4(.loopback(port: 0)))
        guard case .ipv4(let address) = try probe.localAddress() else { throw SystemError("getsockname", .invalidArgument) }
        return address.port
    }

    override func setUpWithError() throws {
        port = try freePort()
        let script = "import sys; from ddapm_test_agent.agent import main; sys.argv[0] = 'ddapm-test-agent'; sys.exit(main())"
        // The header checks fail a payload with 400 when our headers are wrong.
        var environment = Environment.current
        environment["ENABLED_CHECKS"] = "trace_count_header,meta_tracer_version_header,trace_content_length"
        agent = try SpawnedProcess(
            // Its OTLP listeners default to fixed ports (4317/4318): give
            // them free ones so two runs on one machine cannot collide.
            path: "/usr/bin/env", ["python3", "-c", script, "--port", String(port),
                                   "--otlp-http-port", String(try freePort()), "--otlp-grpc-port", String(try freePort())],
            environment: environment.map { "\($0.key)=\($0.value)" }
        )
        // Python needs a moment to start: wait until the port accepts.
        let deadline = Deadline(seconds: 60)
        while true {
            if (try? get("/info")) != nil { break }
            if deadline.hasPassed {
                XCTFail("ddapm-test-agent did not start on port \(port) within 60 s (.ci/test installs it from PyPI)")
                throw SystemError("connect", path: "127.0.0.1:\(port)", .timedOut)
            }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 50)
            if let status = try agent?.exitStatusIfExited() {
                let errors = (try? agent?.readErrors(within: 1)) ?? ""
                XCTFail("ddapm-test-agent exited (\(status)): \(errors.suffix(2000))")
                throw SystemError("ddapm-test-agent", .noChildProcess)
            }
        }
    }

    override func tearDown() {
        agent?.kill()
        agent = nil
    }

    /// A blocking GET through our own client.
    func get(_ target: String) throws -> HTTPResponse {
        try AgentConnection.request("GET", target, to: try AgentEndpoint(parsing: "http://127.0.0.1:\(port)"),
                                    timeouts: Timeouts(connectMilliseconds: 200, readMilliseconds: 5000, totalMilliseconds: 10_000)).get()
    }

    func sampleTraces(base: UInt64) -> [[Span]] {
        func span(_ trace: UInt64, _ id: UInt64, parent: UInt64, name: String) -> Span {
            var span = Span(traceID: trace, spanID: id, parentID: parent, name: name, resource: "GET /items/\(id)",
                            service: "forkscope-demo", type: "web", start: 1_700_000_000_000_000_000 + Int64(id),
                            duration: 1_500 + Int64(id), error: id % 2 == 0 ? 1 : 0)
            span.meta = ["component": "forkscope", "http.method": "GET", "worker": "w\(id % 3)"]
            span.metrics = ["process_id": 4242, "_sampling_priority_v1": 1, "ratio": 0.25]
            return span
        }
        return [
            [span(base + 1, base + 10, parent: 0, name: "rack.request"), span(base + 1, base + 11, parent: base + 10, name: "db.query")],
            [span(base + 2, base + 20, parent: 0, name: "worker.job")],
        ]
    }

    func testBothPayloadVersionsAreAcceptedAndReturnedExactly() throws {
        let token = "forkscope-\(getpid())"
        XCTAssertEqual(try get("/test/session/start?test_session_token=\(token)").head.status, 200)
        let transport = try Transport(endpoint: AgentEndpoint(parsing: "http://127.0.0.1:\(port)"), policy: .drain, registry: AtForkRegistry())
        defer { transport.close() }
        var sent: [[Span]] = []
        for (index, version) in [TraceAPIVersion.v04, .v05].enumerated() {
            let traces = sampleTraces(base: UInt64(index + 1) * 1000)
            sent += traces
            var headers = TracePayload.requestHeaders(traceCount: traces.count, tracer: WriterConfiguration().tracer)
            headers.add(name: "X-Datadog-Test-Session-Token", value: token)
            let payload = EncodedPayload(path: version.path, bytes: version.encode(traces), headers: headers,
                                         traceCount: traces.count, spanCount: traces.reduce(0) { $0 + $1.count })
            let outcome = transport.send(payload)
            guard case .responded(let status, _, let body) = outcome else { return XCTFail("\(version): \(outcome)") }
            XCTAssertEqual(status, 200, "\(version): \(String(decoding: body, as: UTF8.self))")
        }
        let response = try get("/test/session/traces?test_session_token=\(token)")
        XCTAssertEqual(response.head.status, 200)
        let returned = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(response.body)) as? [[[String: Any]]])
        XCTAssertEqual(returned.count, sent.count)
        let byID = Dictionary(uniqueKeysWithValues: returned.flatMap { $0 }.map { (($0["span_id"] as? NSNumber)?.uint64Value ?? 0, $0) })
        for span in sent.flatMap({ $0 }) {
            let got = try XCTUnwrap(byID[span.spanID], "span \(span.spanID) came back")
            XCTAssertEqual((got["trace_id"] as? NSNumber)?.uint64Value, span.traceID)
            XCTAssertEqual((got["parent_id"] as? NSNumber)?.uint64Value, span.parentID)
            XCTAssertEqual(got["name"] as? String, span.name)
            XCTAssertEqual(got["resource"] as? String, span.resource)
            XCTAssertEqual(got["service"] as? String, span.service)
            XCTAssertEqual(got["type"] as? String, span.type)
            XCTAssertEqual((got["start"] as? NSNumber)?.int64Value, span.start)
            XCTAssertEqual((got["duration"] as? NSNumber)?.int64Value, span.duration)
            XCTAssertEqual((got["error"] as? NSNumber)?.int32Value, span.error)
            let meta = got["meta"] as? [String: String] ?? [:]
            for (key, value) in span.meta { XCTAssertEqual(meta[key], value, "meta \(key)") }
            let metrics = got["metrics"] as? [String: NSNumber] ?? [:]
            for (key, value) in span.metrics { XCTAssertEqual(metrics[key]?.doubleValue, value, "metric \(key)") }
        }
    }

    func testTheAgentsHeaderChecksAreReallyOn() throws {
        // Guards the test above: a wrong X-Datadog-Trace-Count must fail.
        let traces = sampleTraces(base: 9000)
        var headers = TracePayload.requestHeaders(traceCount: traces.count + 5, tracer: WriterConfiguration().tracer)
        headers.add(name: "X-Datadog-Test-Session-Token", value: "wrong-count-\(getpid())")
        let transport = try Transport(endpoint: AgentEndpoint(parsing: "http://127.0.0.1:\(port)"), policy: .drain, registry: AtForkRegistry())
        defer { transport.close() }
        let outcome = transport.send(EncodedPayload(path: "/v0.4/traces", bytes: TraceAPIVersion.v04.encode(traces), headers: headers,
                                                    traceCount: traces.count, spanCount: 3))
        guard case .responded(let status, _, _) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertEqual(status, 400)
    }
}
