import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// `forkscope record --duration`: a continuous capture keeps what the
/// source ring overwrote while it was followed.
final class ContinuousRecordTests: XCTestCase {
    func testAContinuousCaptureKeepsEventsTheSourceRingOverwrote() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 4, slotsPerLane: 16, stringBytes: 4096))
        defer { ring.unmap() }
        let hook = ring.writer.intern("before_fork")
        ring.writer.publish(.hookRun, ForkStage.before.rawValue, hook, Outcome.ok.rawValue, 1)
        let output = scratch.root + "/capture.ring"
        let record = try SpawnedProcess(executable: "forkscope", ["record", scratch.ringPath, "-o", output, "--duration", "3"])
        // The capture is a ring being written as we go: read it live to know
        // when the recorder has taken each batch before the next one could
        // lap the 16-slot source (80 marks: five windows).
        // The file appears before its header is written: open it once the
        // reader accepts it.
        let created = Deadline(seconds: 10)
        var opened: RingReader? = nil
        while opened == nil {
            opened = try? RingReader(path: output)
            guard opened == nil else { break }
            guard !created.hasPassed else { return XCTFail("record did not create \(output)") }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 10)
        }
        let following = try XCTUnwrap(opened)
        var captured = 0
        for batch in 0..<10 {
            for i in 0..<8 where batch * 8 + i < 80 { ring.writer.publish(.mark, UInt64(batch * 8 + i)) }
            let published = min(80, (batch + 1) * 8)
            let taken = Deadline(seconds: 10)
            while captured < published {
                guard !taken.hasPassed else { return XCTFail("the recorder did not take batch \(batch)") }
                var events: [Event] = []
                try following.readNew(into: &events)
                captured += events.filter { $0.kind == .mark }.count
                if captured < published {
                    var none: [pollfd] = []
                    _ = try poll(&none, timeoutMilliseconds: 10)
                }
            }
        }
        let report = try record.readToEnd(within: 30)
        XCTAssertEqual(try record.wait(within: 30), .exited(0), report)

        var source: [Event] = []
        try RingReader(path: scratch.ringPath).readNew(into: &source)
        XCTAssertEqual(source.filter { $0.kind == .mark }.count, 16, "the source ring kept only its window")

        let capture = try RingReader(path: output, mode: .snapshot)
        var events: [Event] = []
        let accounting = try capture.readNew(into: &events)
        RingReader.merge(&events)
        XCTAssertTrue(accounting.lanes.allSatisfy(\.isBalanced))
        let marks = events.filter { $0.kind == .mark }
        XCTAssertEqual(marks.map(\.a0), Array(0..<80).map(UInt64.init), report)
        XCTAssertTrue(marks.allSatisfy { $0.pid == getpid() }, "each event keeps its own pid")
        let hookRun = try XCTUnwrap(events.first { $0.kind == .hookRun })
        XCTAssertEqual(capture.string(at: hookRun.a1), "before_fork", "strings re-interned in the capture")
        XCTAssertEqual(capture.header.createdMonotonic, ring.region.base.load(fromByteOffset: 48, as: UInt64.self), "the source's clock")
    }
}
