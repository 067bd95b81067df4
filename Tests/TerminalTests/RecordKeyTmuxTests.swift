import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// `R` in the dashboard saves the ring; the file reads back like any ring.
final class RecordKeyTmuxTests: XCTestCase {
    func testRSavesTheRingNextToItAndTheFileReadsBack() throws {
        let scratch = try ScratchSession()
        _ = try scratch.createRing(RingConfiguration(laneCount: 16, slotsPerLane: 256, stringBytes: 16 * 1024))
        let host = try SpawnedProcess(executable: "forkscope", ["demo-host", scratch.ringPath, "2"])
        XCTAssertEqual(try host.wait(within: 30), .exited(0))
        let forkscope = SpawnedProcess.builtExecutable("forkscope")
        let tmux = try TmuxSession("env -u NO_COLOR LANG=C.UTF-8 LC_ALL= TERM=screen-256color \(shellQuoted(forkscope)) attach --readonly \(shellQuoted(scratch.session.path))",
                                   statusDirectory: scratch.root)
        defer { tmux.close() }
        try tmux.wait(forAll: ["demo worker 0", "demo worker 1"])
        try tmux.send("R")
        let pane = try tmux.wait(for: "recorded the ring to")
        let line = try XCTUnwrap(pane.split(separator: "\n").first { $0.contains("recorded the ring to") })
        let path = try XCTUnwrap(line.split(separator: " ").first { $0.hasPrefix(scratch.session.path + "/recording-") }).description
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(), 0)

        var saved: [Event] = [], live: [Event] = []
        try RingReader(path: path, mode: .snapshot).readNew(into: &saved)
        try RingReader(path: scratch.ringPath).readNew(into: &live)
        XCTAssertEqual(saved, live, "the recording holds the ring's events")
        XCTAssertEqual(try FileSystem.linkStatus(path).permissions, 0o600)
    }
}
