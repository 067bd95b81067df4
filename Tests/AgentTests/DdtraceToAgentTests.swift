import EventRing
import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// The acceptance check against real Datadog software: the Python tracer
/// (`ddtrace` from PyPI, installed by `.ci/test`) sends to `forkscope
/// agent`, and every span is counted exactly once under the sender's pid.
/// It runs with ddtrace's defaults (it fetches /info, sends telemetry to
/// /telemetry/proxy/, which the agent accepts and counts separately).
final class DdtraceToAgentTests: XCTestCase {
    static let script: String = {
        // Tests/AgentTests/<this file> → the repository root.
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        return path + "/examples/ddtrace_to_agent.py"
    }()

    override func setUpWithError() throws {
        let probe = try SpawnedProcess(path: "/usr/bin/env", ["python3", "-c", "import ddtrace; print(ddtrace.__version__)"])
        let version = trimmed(try probe.readToEnd(within: 60))
        guard try probe.wait(within: 60) == .exited(0), !version.isEmpty else {
            XCTFail("python3 cannot import ddtrace: run .ci/test, which installs it from PyPI (python3 -m pip install ddtrace)")
            throw XCTSkip("ddtrace missing")
        }
    }

    /// Runs the example against `agent`; returns the script's pid and report.
    func runTracer(_ agent: AgentProcess, apiVersion: String, spans: Int, perTrace: Int) throws -> (pid: Int32, report: JSONValue) {
        var environment = Environment.current.filter { !$0.key.hasPrefix("DD_") }
        environment["DD_TRACE_AGENT_URL"] = "http://127.0.0.1:\(agent.port)"
        environment["DD_TRACE_API_VERSION"] = apiVersion
        environment["DD_SERVICE"] = "forkscope-agent-tests"
        let tracer = try SpawnedProcess(
            path: "/usr/bin/env", ["python3", Self.script, "--spans", String(spans), "--per-trace", String(perTrace)],
            environment: environment.map { "\($0.key)=\($0.value)" })
        let output = try tracer.readToEnd(within: 60)
        let errors = try tracer.readErrors(within: 10)
        XCTAssertEqual(try tracer.wait(within: 30), .exited(0), errors)
        let report = try JSONValue(parsing: trimmed(output))
        XCTAssertEqual(report["spans"]?.numberValue, Double(spans))
        XCTAssertFalse(errors.contains("Traceback"), errors)
        print("ddtrace \(report["ddtrace"]?.stringValue ?? "?") over \(apiVersion): \(output)")
        return (tracer.pid, report)
    }

    func checkEverySpanCountedOnce(apiVersion: String) throws {
        let agent = try AgentProcess()
        let spans = 157
        let (pid, _) = try runTracer(agent, apiVersion: apiVersion, spans: spans, perTrace: 5)
        let stats = try agent.stats()
        XCTAssertEqual(stats["spans"], spans, "\(stats.json.jsonText)")
        XCTAssertEqual(stats["unique_spans"], spans)
        XCTAssertEqual(stats["duplicate_spans"], 0)
        XCTAssertEqual(stats["traces"], (spans + 4) / 5)
        XCTAssertEqual(stats["bad_payloads"], 0)
        XCTAssertEqual(stats.endpoint("/\(apiVersion)/traces"), stats["requests"])
        let tally = try XCTUnwrap(stats.process(pid), "per_process has the script's pid \(pid): \(stats.json.jsonText)")
        XCTAssertEqual(tally.spans, spans)
        XCTAssertEqual(tally.unique, spans)
    }

    func testDdtraceOverV04EverySpanCountedOnce() throws { try checkEverySpanCountedOnce(apiVersion: "v0.4") }
    func testDdtraceOverV05EverySpanCountedOnce() throws { try checkEverySpanCountedOnce(apiVersion: "v0.5") }
}

/// `text` without surrounding whitespace and newlines.
func trimmed(_ text: String) -> String {
    String(text.drop { $0.isWhitespace }.reversed().drop { $0.isWhitespace }.reversed())
}
