import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// `forkscope attach FILE` on a recorded ring plays it back: REPLAY in the
/// title, Space pauses, `.` steps one event, `[`/`]` change the speed, `{`
/// seeks back, `0` jumps to the end.
final class ReplayTmuxTests: XCTestCase {
    let forkscope = SpawnedProcess.builtExecutable("forkscope")

    /// The title bar's "N events".
    func eventCount(_ pane: String) -> Int? {
        guard let title = pane.split(separator: "\n").first else { return nil }
        let words = title.split(separator: " ")
        guard let n = words.firstIndex(of: "events"), n > 0 else { return nil }
        return Int(words[n - 1].filter { $0 != "," })
    }

    /// "+a/b" of the title's replay clock.
    func clock(_ pane: String) -> (String, String)? {
        guard let title = pane.split(separator: "\n").first,
              let word = title.split(separator: " ").first(where: { $0.hasPrefix("+") && $0.contains("/") && $0.hasSuffix("s") })
        else { return nil }
        let parts = word.dropFirst().split(separator: "/")
        return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
    }

    func testAttachingARecordedRingReplaysPausesStepsChangesSpeedAndReachesTheEnd() throws {
        let scratch = try ScratchSession()
        _ = try scratch.createRing(RingConfiguration(laneCount: 16, slotsPerLane: 256, stringBytes: 16 * 1024))
        let host = try SpawnedProcess(executable: "forkscope", ["demo-host", scratch.ringPath, "2"])
        XCTAssertEqual(try host.wait(within: 30), .exited(0))
        let file = scratch.root + "/recorded.ring"
        let record = try SpawnedProcess(executable: "forkscope", ["record", scratch.session.path, "-o", file])
        XCTAssertEqual(try record.wait(within: 30), .exited(0))

        let tmux = try TmuxSession("env -u NO_COLOR LANG=C.UTF-8 LC_ALL= TERM=screen-256color \(shellQuoted(forkscope)) attach --readonly \(shellQuoted(file))",
                                   statusDirectory: scratch.root)
        defer { tmux.close() }
        try tmux.wait(forAll: ["REPLAY ×1 +", "demo master"])

        // Pause, and back to the start: only the first events are folded.
        try tmux.send("Space")
        try tmux.wait(for: "PAUSED ×1 +")
        try tmux.send("{", literal: true)
        let start = try tmux.wait(for: "the clock at 0") { self.clock($0)?.0 == "0.0s" && self.eventCount($0) != nil }
        let before = try XCTUnwrap(eventCount(start))

        // Step: one more event, still paused.
        try tmux.send(".", literal: true)
        try tmux.wait(for: "one step") { $0.contains("PAUSED ×1") && (self.eventCount($0) ?? 0) > before }

        // Speed.
        try tmux.send("]", literal: true)
        try tmux.wait(for: "PAUSED ×2 +")
        try tmux.send("[", literal: true)
        try tmux.send("[", literal: true)
        try tmux.wait(for: "PAUSED ×0.5 +")

        // The end: every event, the clock at the recording's length.
        try tmux.send("0", literal: true)
        let end = try tmux.wait(for: "the end") { pane in
            guard let (at, of) = self.clock(pane) else { return false }
            return at == of && (self.eventCount(pane) ?? 0) > before + 1
        }
        let saved = try ReplayTmuxTests.count(file)
        XCTAssertEqual(eventCount(end), saved, end)

        // Resume, then quit.
        try tmux.send("Space")
        try tmux.wait(for: "REPLAY ×0.5 +")
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(), 0)
    }

    static func count(_ path: String) throws -> Int {
        let reader = try RingReader(path: path, mode: .snapshot)
        var events: [Event] = []
        _ = try reader.readNew(into: &events)
        return events.count
    }
}
