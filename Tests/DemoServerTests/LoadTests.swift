import DemoServer
import EventRing
import Foundation
import Glibc
import Posix
import TestSupport
import XCTest

/// The demo under real load from `wrk`, while workers come and go.
final class LoadTests: XCTestCase {
    func testUnderWrkNoRequestFailsAndForkingAndStoppingWorkersLosesNoSpan() throws {
        let wrk = "/usr/bin/wrk"
        XCTAssertTrue(FileSystem.exists(wrk), "wrk is installed by .ci/test (Debian package wrk)")
        let run = try DemoRun(["--workers", "2", "--preload"])
        let load = try SpawnedProcess(path: wrk, ["-t2", "-c32", "-d10s", "--latency", "http://\(run.serverAddress)/"])
        let control = try run.controlClient()
        // Mid-run: a new worker through the hooks, and an old one stopped
        // gracefully (QUIT: it finishes its requests and closes its
        // connections with `Connection: close`, so wrk reconnects).
        // Mid-run: once the exporters have delivered a good part of the load.
        let loaded = Deadline(seconds: 8)
        while (try run.agentStats()["unique_spans"] as? Int ?? 0) < 20_000 {
            guard !loaded.hasPassed else { return XCTFail("wrk's load did not reach the agent within 8 s") }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 50)
        }
        let table = try control.send(.processes).get()["processes"]?.arrayValue ?? []
        let master = try XCTUnwrap(table.first { $0["role"]?.stringValue == "master" })
        let old = try XCTUnwrap(table.first { $0["role"]?.stringValue == "worker" })
        XCTAssertNoThrow(try control.send(.fork(pid: pid_t(master["pid"]?.int64Value ?? 0), start: UInt64(master["start"]?.int64Value ?? 0))).get())
        XCTAssertNoThrow(try control.send(.kill(pid: pid_t(old["pid"]?.int64Value ?? 0), start: UInt64(old["start"]?.int64Value ?? 0), signal: SIGQUIT)).get())
        let report = try load.readToEnd(within: 30)
        XCTAssertEqual(try load.wait(), .exited(0), report)
        print(report)
        XCTAssertFalse(report.contains("Non-2xx"), report)
        XCTAssertFalse(report.contains("Socket errors"), report)
        XCTAssertEqual(try run.stopGracefully(within: 30), .exited(0))

        // Every span a worker accepted reached the agent exactly once, and
        // none was dropped: not by the fork, not by the stop, and not as
        // `buffer_full` — even a debug build's exporter keeps up with wrk
        // on 2 cores since spans are encoded when accepted (the flush
        // worker only sends; the deepest buffer is printed to show the margin).
        let (events, _) = try run.events()
        var accepted: UInt64 = 0
        var droppedBy: [DropReason: UInt64] = [:]
        for pid in Set(events.of(.writerGauge).map(\.pid)) {
            accepted += events.of(.writerGauge).last { $0.pid == pid }?.a1 ?? 0
        }
        let counted = try run.agentStats()
        // Drop totals by reason come from each worker's final counters,
        // printed by the worker at exit into the ring as span.dropped events.
        for event in events.of(.spanDropped) { droppedBy[DropReason(rawValue: event.a1) ?? .closed, default: 0] += event.a0 }
        let losses = events.of(.writerLosses)
        var droppedTotal: UInt64 = 0
        for pid in Set(losses.map(\.pid)) { droppedTotal += losses.last { $0.pid == pid }?.a1 ?? 0 }
        let unique = UInt64(counted["unique_spans"] as? Int ?? -1)
        let deepest = events.of(.writerGauge).map(\.a0).max() ?? 0
        print("wrk: accepted \(accepted) spans, delivered \(unique), dropped \(droppedTotal) \(droppedBy), deepest buffer \(deepest) spans")
        XCTAssertGreaterThan(accepted, 1000)
        XCTAssertEqual(counted["duplicate_spans"] as? Int, 0)
        XCTAssertEqual(unique + droppedTotal, accepted, "every accepted span delivered or dropped with a count")
        XCTAssertEqual(droppedTotal, 0, "no span dropped")
        for (reason, count) in droppedBy {
            XCTFail("\(count) spans dropped as \(reason.name): the fork, the stop or a full buffer lost them")
        }
    }
}
