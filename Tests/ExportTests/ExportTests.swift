import Dashboard
import EventRing
import Foundation
import Glibc
import Posix
import TestSupport
import XCTest

/// `forkscope export` and `forkscope record` on the ring of a real run (the
/// demo server forking through the hooks, driven by a scenario).
final class ExportTests: XCTestCase {
    var scratch: String!

    override func setUpWithError() throws {
        scratch = try FileSystem.makeTemporaryDirectory(prefix: "forkscope-export-")
    }

    override func tearDownWithError() throws {
        try? FileSystem.removeTree(scratch)
    }

    /// Runs `forkscope ARGS` to its end; returns stdout.
    @discardableResult
    func forkscope(_ arguments: [String], expect status: WaitStatus = .exited(0), file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let process = try SpawnedProcess(executable: "forkscope", arguments)
        try process.closeInput()
        let output = try process.readToEnd(within: 30)
        let errors = try process.readErrors(within: 5)
        XCTAssertEqual(try process.wait(within: 30), status, "forkscope \(arguments): \(errors)\n\(output)", file: file, line: line)
        return output
    }

    /// A recording of a real run: master + 2 workers forked through the hooks, requests, graceful stop.
    func recordedRun(_ scenario: String = "preload-with-hooks") throws -> String {
        let path = scratch + "/run.ring"
        try forkscope(["scenario", scenario, "--check", "--record", path])
        return path
    }

    func testPerfettoExportOfARealRunPassesTheValidator() throws {
        let ring = try recordedRun()
        let out = scratch + "/trace.json"
        try forkscope(["export", ring, "--format", "perfetto", "-o", out])
        let report = try PerfettoValidator.validate(Data(contentsOf: URL(fileURLWithPath: out)))
        XCTAssertEqual(report.problems, [], report.problems.joined(separator: "\n"))
        // Event counts round-trip: every ring event is one b/e/i (synthetic partners are marked).
        let reader = try RingReader(path: ring, mode: .snapshot)
        let (events, _) = try reader.readAll()
        XCTAssertEqual(report.fromRing, events.count)
        XCTAssertEqual(report.declaredRingEvents, events.count)
        XCTAssertGreaterThanOrEqual(report.flows, 2, "a flow from the master to each worker")
        XCTAssertGreaterThanOrEqual(report.processes, 3, "master and two workers, each named")
        XCTAssertGreaterThan(report.asyncPairs, 0, "sends as b/e pairs")
    }

    func testPerfettoExportSeparatesIncarnationsAndSurvivesARefork() throws {
        let ring = try recordedRun("refork")
        let out = scratch + "/trace.json"
        try forkscope(["export", ring, "-o", out])
        let report = try PerfettoValidator.validate(Data(contentsOf: URL(fileURLWithPath: out)))
        XCTAssertEqual(report.problems, [])
        let reader = try RingReader(path: ring, mode: .snapshot)
        let (events, _) = try reader.readAll()
        let pids = Set(events.map(\.pid))
        XCTAssertGreaterThanOrEqual(report.processes, pids.count, "one synthetic pid per incarnation, at least one per real pid")
    }

    func testJSONLExportIsExactlyTheDump() throws {
        let ring = try recordedRun()
        let exported = try forkscope(["export", ring, "--format", "jsonl", "-o", "-"])
        let dumped = try forkscope(["dump", ring, "--snapshot", "--format", "jsonl"])
        XCTAssertFalse(exported.isEmpty)
        XCTAssertEqual(exported, dumped)
    }

    func testRecordedFileIsValidatedLikeALiveRing() throws {
        let garbage = scratch + "/garbage.ring"
        _ = FileManager.default.createFile(atPath: garbage, contents: Data(repeating: 0x41, count: 4096))
        let output = try SpawnedProcess(executable: "forkscope", ["export", garbage, "-o", scratch + "/x.json"])
        XCTAssertEqual(try output.wait(within: 10), .exited(2), "a hostile file is a one-line error, status 2")
        XCTAssertFalse(FileManager.default.fileExists(atPath: scratch + "/x.json"))
    }

    /// Replay (attach FILE) folds the saved file: at any time T it reaches
    /// the model the live ring gave at T.
    func testReplayOfARecordingReachesTheLiveModelAtEveryTime() throws {
        let ring = try recordedRun("fork-during-send")
        let copy = scratch + "/copy.ring"
        try forkscope(["record", ring, "-o", copy])
        let live = try RingReader(path: ring, mode: .live)
        let saved = try RingReader(path: copy, mode: .snapshot)
        let (liveEvents, _) = try live.readAll()
        let (savedEvents, _) = try saved.readAll()
        XCTAssertEqual(liveEvents.count, savedEvents.count)
        let times = liveEvents.map(\.time)
        for fraction in [0.1, 0.25, 0.5, 0.75, 1.0] {
            let t = times[min(times.count - 1, Int(Double(times.count - 1) * fraction))]
            var a = DashboardModel(origin: RingOrigin(live.header))
            a.fold(liveEvents.filter { $0.time <= t }, strings: { live.string(at: $0) })
            var b = DashboardModel(origin: RingOrigin(saved.header))
            b.fold(savedEvents.filter { $0.time <= t }, strings: { saved.string(at: $0) })
            XCTAssertEqual(a, b, "model at T = \(fraction) of the run")
            XCTAssertGreaterThan(a.processes.count, 0)
        }
    }

    /// `forkscope replay FILE --from A --to B`: the state printed at the seek point and at the end
    /// are the model folded up to those times.
    func testReplaySeeksAndStopsAtTheModelStateOfThoseTimes() throws {
        let ring = try recordedRun("drain-timeout")
        let reader = try RingReader(path: ring, mode: .snapshot)
        let (events, _) = try reader.readAll()
        let origin = RingOrigin(reader.header)
        let offsets = events.map { origin.offset($0.time) }
        let a = offsets[offsets.count / 3] + 500, b = offsets[2 * offsets.count / 3] + 500
        func summary(upTo ns: UInt64, inclusive: Bool) -> String {
            var model = DashboardModel(origin: origin)
            model.fold(events.filter { inclusive ? origin.offset($0.time) <= ns : origin.offset($0.time) < ns }) { reader.string(at: $0) }
            return ProcessSummary.text(model, source: ring, live: false)
        }
        let output = try forkscope(["replay", ring, "--from", String(Double(a) / 1e9), "--to", String(Double(b) / 1e9), "--step"])
        XCTAssertTrue(output.contains(summary(upTo: a, inclusive: false)), output)
        XCTAssertTrue(output.hasSuffix(summary(upTo: b, inclusive: true)), output)
        let played = output.split(separator: "\n").filter { $0.hasPrefix("+") }.count
        XCTAssertEqual(played, offsets.filter { $0 >= a && $0 <= b }.count, "every event between the two times, once")
    }

    func testRecordRefusesToOverwrite() throws {
        let ring = try recordedRun()
        try forkscope(["record", ring, "-o", scratch + "/once.ring"])
        let again = try SpawnedProcess(executable: "forkscope", ["record", ring, "-o", scratch + "/once.ring"])
        XCTAssertEqual(try again.wait(within: 10), .exited(1))
    }
}

/// The checks every exported trace must pass (the acceptance list).
enum PerfettoValidator {
    struct Report {
        var problems: [String] = []
        var fromRing = 0
        var declaredRingEvents = -1
        var flows = 0
        var processes = 0
        var asyncPairs = 0
    }

    static func validate(_ data: Data) throws -> Report {
        var report = Report()
        guard let root = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            report.problems.append("not a JSON object")
            return report
        }
        guard root["displayTimeUnit"] is String else { report.problems.append("no displayTimeUnit"); return report }
        guard let events = root["traceEvents"] as? [[String: Any]] else { report.problems.append("no traceEvents array"); return report }
        report.declaredRingEvents = ((root["otherData"] as? [String: Any])?["ring_events"] as? Int) ?? -1
        var processNames = Set<Int>(), threadNames = Set<[Int]>()
        var open: [String: String] = [:]          // async id → category
        var flowStarts: [Int: Int] = [:], flowEnds: [Int: Int] = [:]
        var lastTs: [[Int]: Double] = [:]
        var tracks = Set<[Int]>()
        for event in events {
            guard let ph = event["ph"] as? String, let pid = event["pid"] as? Int, let tid = event["tid"] as? Int else {
                report.problems.append("event without ph/pid/tid: \(event)")
                continue
            }
            if ph == "M" {
                if event["name"] as? String == "process_name" { processNames.insert(pid) }
                if event["name"] as? String == "thread_name" { threadNames.insert([pid, tid]) }
                continue
            }
            guard let ts = event["ts"] as? Double else { report.problems.append("no numeric ts: \(event)"); continue }
            tracks.insert([pid, tid])
            if let last = lastTs[[pid, tid]], ts < last { report.problems.append("ts goes back on track \(pid)/\(tid): \(last) → \(ts)") }
            lastTs[[pid, tid]] = ts
            let synthetic = ((event["args"] as? [String: Any])?["synthetic"] as? Bool) == true
            switch ph {
            case "b":
                guard let id = event["id"] as? String, let cat = event["cat"] as? String else { report.problems.append("b without id/cat"); continue }
                if open[id] != nil { report.problems.append("b \(id) opened twice") }
                open[id] = cat
                if !synthetic { report.fromRing += 1 }
            case "e":
                guard let id = event["id"] as? String, let cat = event["cat"] as? String else { report.problems.append("e without id/cat"); continue }
                if open.removeValue(forKey: id) != cat { report.problems.append("e \(id) without its b of category \(cat)") } else { report.asyncPairs += 1 }
                if !synthetic { report.fromRing += 1 }
            case "i":
                report.fromRing += 1
            case "s":
                guard let id = event["id"] as? Int else { report.problems.append("s without id"); continue }
                flowStarts[id, default: 0] += 1
            case "f":
                guard let id = event["id"] as? Int else { report.problems.append("f without id"); continue }
                if flowStarts[id] == nil { report.problems.append("f \(id) before its s") }
                flowEnds[id, default: 0] += 1
            case "X":
                guard event["dur"] is Double else { report.problems.append("X without dur"); continue }
            default:
                report.problems.append("unexpected phase \(ph)")
            }
        }
        for (id, _) in open { report.problems.append("b \(id) never ended") }
        if flowStarts != flowEnds { report.problems.append("flows unpaired: s \(flowStarts.count), f \(flowEnds.count)") }
        for track in tracks {
            if !processNames.contains(track[0]) { report.problems.append("pid \(track[0]) has no process_name") }
            if !threadNames.contains(track) { report.problems.append("tid \(track[1]) of pid \(track[0]) has no thread_name") }
        }
        report.flows = flowStarts.count
        report.processes = processNames.count
        return report
    }
}

/// The exporter on events nobody ordered: random kinds, arguments and times
/// (seeded), sends whose start or end is missing, a send id reused.
final class PerfettoHostileEventTests: XCTestCase {
    func export(_ scratch: ScratchSession) throws -> (PerfettoValidator.Report, [Event], PerfettoExport.Counts) {
        let reader = try RingReader(path: scratch.ringPath, mode: .snapshot)
        let (events, _) = try reader.readAll()
        var export = PerfettoExport(origin: RingOrigin(reader.header)) { reader.string(at: $0) }
        let text = export.render(events)
        return (try PerfettoValidator.validate(Data(text.utf8)), events, export.counts)
    }

    func testRandomEventsExportToAValidTrace() throws {
        for seed in 1...12 as ClosedRange<UInt64> {
            var random = SeededGenerator(seed: seed)
            let scratch = try ScratchSession()
            let ring = try scratch.createRing(RingConfiguration(laneCount: 4, slotsPerLane: 512, stringBytes: 4096))
            let name = ring.writer.intern("hostile \"quoted\"\n")
            let base = RingOrigin(try RingReader(path: scratch.ringPath).header).monotonic
            for _ in 0..<300 {
                func arg() -> UInt64 {
                    switch random.below(6) {
                    case 0: return UInt64(getpid())
                    case 1: return random.below(4)
                    case 2: return name
                    case 3: return UInt64.max - random.below(3)
                    default: return random.below(100_000)
                    }
                }
                let time = random.below(10) == 0 ? random.next() : base + random.below(5_000_000_000)
                let kinds = EventKind.allCases
                let raw = random.below(12) == 0 ? UInt16(random.below(400)) : kinds[Int(random.below(UInt64(kinds.count)))].rawValue
                ring.writer.publish(rawKind: raw, at: time, generation: 0, arg(), arg(), arg(), arg())
            }
            ring.unmap()
            let (report, events, counts) = try export(scratch)
            XCTAssertEqual(report.problems, [], "seed \(seed)")
            XCTAssertEqual(report.fromRing, events.count, "seed \(seed)")
            XCTAssertEqual(counts.fromRing, events.count)
            // The sequence diagram of the same hostile events renders without trapping.
            let reader = try RingReader(path: scratch.ringPath, mode: .snapshot)
            var model = DashboardModel(origin: RingOrigin(reader.header))
            model.fold(events) { reader.string(at: $0) }
            for ascii in [false, true] {
                let diagram = SequenceDiagram.render(events: events, model: model, lookup: { reader.string(at: $0) }, ascii: ascii)
                XCTAssertFalse(diagram.isEmpty)
            }
        }
    }

    func testSendsMissingAnEndOrAStartArePairedSynthetically() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        let t = RingOrigin(try RingReader(path: scratch.ringPath).header).monotonic + 1_000_000
        let w = ring.writer
        w.publish(.processStart, at: t, UInt64(getppid()), ProcessRole.worker.rawValue, w.intern("w"), 0)
        w.publish(.sendComplete, at: t + 5_000_000, 7, 200, 3_000, 1)      // its start was overwritten
        w.publish(.sendStart, at: t + 6_000_000, 8, 1, 10, 1)              // started twice, never ended
        w.publish(.sendStart, at: t + 7_000_000, 8, 1, 10, 2)
        ring.unmap()
        let (report, events, counts) = try export(scratch)
        XCTAssertEqual(report.problems, [])
        XCTAssertEqual(events.count, 4)
        XCTAssertEqual(report.fromRing, 4)
        XCTAssertEqual(counts.synthetic, 3, "a b for #7, an e for the first #8, an e for the second")
        XCTAssertEqual(report.asyncPairs, 3)
    }
}
