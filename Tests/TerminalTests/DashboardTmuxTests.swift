import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The real `forkscope` binary in tmux: attach to a ring that real
/// processes (`forkscope demo-host`, which forks its workers) filled,
/// navigate, open help, search, filter, press a control key read-only, quit.
/// Every step polls the captured pane against a deadline.
final class DashboardTmuxTests: XCTestCase {
    let forkscope = SpawnedProcess.builtExecutable("forkscope")

    /// A session whose ring `forkscope demo-host` filled with a master and
    /// `workers` forked workers (all exited by the time this returns).
    func demoSession(workers: Int = 2) throws -> ScratchSession {
        let scratch = try ScratchSession()
        _ = try scratch.createRing(RingConfiguration(laneCount: 16, slotsPerLane: 256, stringBytes: 16 * 1024))
        let host = try SpawnedProcess(executable: "forkscope", ["demo-host", scratch.ringPath, String(workers)])
        XCTAssertEqual(try host.wait(within: 30), .exited(0))
        return scratch
    }

    /// `forkscope attach` in tmux; colour unless `environment` sets NO_COLOR
    /// (which the test runner's own environment may hold: it is unset).
    func attach(_ scratch: ScratchSession, lang: String, arguments: String = "--readonly", environment: String = "",
                width: Int = 120, height: Int = 40) throws -> TmuxSession {
        try TmuxSession("env -u NO_COLOR LANG=\(lang) LC_ALL= TERM=screen-256color \(environment) \(shellQuoted(forkscope)) attach \(arguments) \(shellQuoted(scratch.session.path))",
                        statusDirectory: scratch.root, width: width, height: height)
    }

    func testAttachShowsWorkersNavigatesHelpsSearchesRefusesControlAndQuits() throws {
        let scratch = try demoSession()
        let tmux = try attach(scratch, lang: "C.UTF-8")
        defer { tmux.close() }

        // The tree: the master and its two forked workers, with box glyphs.
        try tmux.wait(forAll: ["demo master", "├─", "└─", "demo worker 0", "demo worker 1", " READ-ONLY ", "exit 0"])
        let styled = try tmux.capture(escapes: true)
        XCTAssertTrue(styled.contains("\u{1B}[44m") || styled.contains(";44m"), "the title bar is white on blue: \(styled.prefix(300).debugDescription)")

        // Navigate: the details pane follows the selection.
        try tmux.send("Down")
        try tmux.wait(for: "details of the first worker") { $0.split(separator: "\n").contains { $0.hasPrefix("─ ") && $0.contains("demo worker 0") } }
        try tmux.send("End")
        try tmux.wait(for: "details of the last worker") { $0.split(separator: "\n").contains { $0.hasPrefix("─ ") && $0.contains("demo worker 1") } }

        // Help lists the keys; any key closes it.
        try tmux.send("?")
        try tmux.wait(forAll: ["forkscope keys", "search the event log", "Control the demo (refused: attached with --readonly)"])
        try tmux.send("Escape")
        try tmux.wait(for: "help closed") { !$0.contains("forkscope keys") }

        // Search the event log.
        try tmux.send("/")
        try tmux.wait(for: "/ search:")
        try tmux.send("worker.exited", literal: true)
        try tmux.send("Enter")
        try tmux.wait(forAll: ["search \"worker.exited\"", "worker.exited worker="])

        // Filter to fork events.
        try tmux.send("\\")
        try tmux.wait(for: "\\ filter")
        try tmux.send("fork.child", literal: true)
        try tmux.send("Enter")
        let pane = try tmux.wait(for: "the log filtered to fork.child") { pane in
            let log = pane.split(separator: "\n").filter { $0.contains(" +0.") }
            return pane.contains("filter kind fork.child") && !log.isEmpty && log.allSatisfy { $0.contains("fork.child") }
        }
        XCTAssertEqual(pane.split(separator: "\n").filter { $0.contains(" +0.") }.count, 2, pane)

        // A control key, read-only: refused on the status line.
        try tmux.send("f")
        try tmux.wait(for: "read-only: f (fork) refused: attached with --readonly")
        try tmux.send("k")
        try tmux.wait(for: "read-only: k (kill) refused")

        // Pause, then quit: attach ends with status 0.
        try tmux.send("Space")
        try tmux.wait(for: "PAUSED")
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(), 0)
    }

    func testAttachInTheCLocaleDrawsASCIIAndWithNoColorOnlyAttributes() throws {
        let scratch = try demoSession()
        let tmux = try attach(scratch, lang: "C", environment: "NO_COLOR=1")
        defer { tmux.close() }
        let pane = try tmux.wait(forAll: ["demo worker 1", "|-", "`-", " forkscope | ENDED", "Up/Dn select"])
        XCTAssertFalse(pane.unicodeScalars.contains { $0.value > 127 }, "non-ASCII in the C locale:\n\(pane)")
        // Monochrome: reverse video and bold carry the meaning, no colour.
        let styled = try tmux.capture(escapes: true)
        XCTAssertTrue(styled.contains("\u{1B}[7m") || styled.contains(";7m"), "reverse video for the bars")
        for colour in 30...47 where colour != 38 && colour != 39 {
            XCTAssertFalse(styled.contains("\u{1B}[\(colour)m") || styled.contains(";\(colour)m"), "colour \(colour) with NO_COLOR")
        }
        try tmux.send("f")
        try tmux.wait(for: "refused")
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(), 0)
    }

    func testAttachFollowsALiveRingAndResizes() throws {
        let scratch = try ScratchSession()
        _ = try scratch.createRing(RingConfiguration(laneCount: 16, slotsPerLane: 256, stringBytes: 16 * 1024))
        let tmux = try attach(scratch, lang: "C.UTF-8", width: 30, height: 8)
        defer { tmux.close() }
        // Too small: the size message, not a broken layout.
        try tmux.wait(for: "needs at least")
        try tmux.resize(width: 120, height: 40)
        try tmux.wait(forAll: ["waiting for events", " LIVE "])
        // Processes publish while it is attached: their rows appear.
        let host = try SpawnedProcess(executable: "forkscope", ["demo-host", scratch.ringPath, "3"])
        XCTAssertEqual(try host.wait(within: 30), .exited(0))
        try tmux.wait(forAll: ["demo worker 0", "demo worker 1", "demo worker 2"])
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(), 0)
    }

    func testExportWritesTheEventsHeldAsJSONLines() throws {
        let scratch = try demoSession()
        let tmux = try attach(scratch, lang: "C.UTF-8")
        defer { tmux.close() }
        try tmux.wait(for: "demo worker 1")
        try tmux.send("e")
        let pane = try tmux.wait(forAll: ["exported 18 events to ", ".jsonl"])
        let exports = try FileSystem.contents(ofDirectory: scratch.session.path).filter { $0.hasPrefix("export-") && $0.hasSuffix(".jsonl") }
        XCTAssertEqual(exports.count, 1, pane)
        let text = String(decoding: try FileSystem.readFile(scratch.session.path + "/" + exports[0]), as: UTF8.self)
        let dump = try SpawnedProcess(executable: "forkscope", ["dump", "--format", "jsonl", scratch.ringPath])
        let expected = try dump.readToEnd().split(separator: "\n").filter { $0.hasPrefix("{\"t_ns\"") }
        XCTAssertEqual(text.split(separator: "\n"), expected, "export and dump --format jsonl agree")
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(), 0)
    }
}
