import EventRing
import ForkSafety
import Foundation
import Glibc
import Posix
import TestSupport
import TraceTransport
import Wire
import XCTest

/// The writer against the real mock agent: every span ends as delivered,
/// or dropped with a counted reason, whatever the agent does.
final class WriterAgentTests: XCTestCase {
    var agent: SpawnedProcess!
    var url = ""

    override func setUpWithError() throws {
        agent = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", "127.0.0.1:0"])
        let line = try agent.readLine()
        url = "http://" + line.dropFirst("listening on ".count)
    }

    override func tearDown() {
        agent.kill()
        agent = nil
    }

    func agentRequest(_ method: String, _ target: String) throws -> [String: Any] {
        let response = try AgentConnection.request(method, target, to: try AgentEndpoint(parsing: url)).get()
        return (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
    }

    func traces(_ count: Int, base: UInt64) -> [[Span]] {
        (0..<count).map { index in
            let id = base + UInt64(index) * 2
            var root = Span(traceID: id, spanID: id, parentID: 0, name: "req", resource: "GET /", service: "writer-test", type: "web",
                            start: 1, duration: 2, error: 0)
            root.metrics = ["process_id": Double(getpid())]
            let child = Span(traceID: id, spanID: id + 1, parentID: id, name: "db", resource: "q", service: "writer-test", type: "sql",
                             start: 1, duration: 1, error: 0)
            return [root, child]
        }
    }

    func writer(maxAttempts: Int = 4) throws -> TraceWriter {
        var configuration = WriterConfiguration()
        configuration.flushIntervalMilliseconds = 20
        configuration.flushThreshold = 20
        configuration.maxSpansPerSend = 20
        configuration.maxAttempts = maxAttempts
        configuration.backoffBaseMilliseconds = 5
        configuration.backoffMaxMilliseconds = 20
        return try TraceWriter(endpoint: AgentEndpoint(parsing: url), policy: .drain, configuration: configuration,
                               timeouts: Timeouts(connectMilliseconds: 500, readMilliseconds: 500, totalMilliseconds: 2_000),
                               registry: AtForkRegistry())
    }

    /// For each fault kind applied to the next 3 trace requests: no crash,
    /// no hang, and unique spans at the agent + dropped = accepted.
    func testEveryFaultKindLosesNothingUncounted() throws {
        for (index, kind) in ["500", "413", "429", "slow-body", "reset", "garbage", "close-after-headers"].enumerated() {
            _ = try agentRequest("POST", "/control/reset")
            _ = try agentRequest("POST", "/control/fault?kind=\(kind)&count=3&interval_ms=1")
            let writer = try writer()
            for trace in traces(50, base: UInt64(index + 1) << 32) { writer.enqueue(trace) }
            writer.stop(deadlineMilliseconds: 10_000)
            let counters = writer.snapshot
            let stats = try agentRequest("GET", "/stats")
            let unique = UInt64(stats["unique_spans"] as? Int ?? -1)
            print("fault \(kind): accepted \(counters.accepted), unique at agent \(unique), duplicates \(stats["duplicate_spans"] ?? "?"), dropped \(counters.dropped)")
            XCTAssertEqual(counters.accepted, 100, kind)
            XCTAssertEqual(counters.buffered, 0, kind)
            XCTAssertEqual(unique + counters.droppedTotal, counters.accepted, "\(kind): every span delivered or dropped with a count")
            if kind == "413" {
                // Not retryable: the agent refused those payloads for good.
                XCTAssertGreaterThan(counters.dropped[.agentRejected] ?? 0, 0, kind)
            } else {
                XCTAssertEqual(counters.droppedTotal, 0, "\(kind) is retryable: nothing dropped")
            }
        }
        _ = try agentRequest("POST", "/control/fault?kind=none")
    }

    func testAnAgentThatStaysDownExhaustsRetriesWithACount() throws {
        agent.kill()
        let writer = try writer(maxAttempts: 3)
        for trace in traces(10, base: 1 << 40) { writer.enqueue(trace) }
        writer.stop(deadlineMilliseconds: 3_000)
        let counters = writer.snapshot
        XCTAssertEqual(counters.accepted, 20)
        XCTAssertEqual(counters.sent, 0)
        XCTAssertEqual(counters.droppedTotal, 20, "\(counters.dropped)")
        XCTAssertTrue(counters.isBalanced)
    }

    func testAFullBufferDropsWithACount() throws {
        var configuration = WriterConfiguration()
        configuration.bufferCapacity = 10
        configuration.flushIntervalMilliseconds = 10_000
        configuration.flushThreshold = 1_000
        let writer = try TraceWriter(endpoint: AgentEndpoint(parsing: url), policy: .drain, configuration: configuration, registry: AtForkRegistry())
        var accepted = 0
        for trace in traces(10, base: 1 << 44) where writer.enqueue(trace) { accepted += 1 }
        XCTAssertEqual(accepted, 5, "5 traces of 2 spans fill 10 slots")
        XCTAssertEqual(writer.snapshot.dropped[.bufferFull], 10)
        writer.stop()
        let counters = writer.snapshot
        XCTAssertEqual(counters.sent, 10)
        XCTAssertTrue(counters.isBalanced)
        XCTAssertEqual(try agentRequest("GET", "/stats")["unique_spans"] as? Int, 10)
    }

    func testCloseStopsLaterEnqueuesWithACount() throws {
        let writer = try writer()
        writer.stop()
        XCTAssertFalse(writer.enqueue(traces(1, base: 1 << 48)[0]))
        XCTAssertEqual(writer.snapshot.dropped[.closed], 2)
        XCTAssertTrue(writer.snapshot.isBalanced)
    }
}
