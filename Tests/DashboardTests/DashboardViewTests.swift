@testable import Dashboard
import EventRing
import Glibc
import XCTest

/// What the renderer means, checked cell by cell (the references check the
/// text; these check styles, glyphs and the parts they do not show).
final class DashboardViewTests: XCTestCase {
    var model: DashboardModel!

    override func setUpWithError() throws {
        model = try DashboardRenderTests.fixtureModel()
    }

    func render(_ frame: DashboardFrame, _ width: Int = 120, _ height: Int = 40) -> Canvas {
        DashboardView.render(frame, width: width, height: height)
    }

    func row(of name: String, in canvas: Canvas) throws -> Int {
        try XCTUnwrap((0..<canvas.height).first { canvas.row($0).contains(name) }, "no row shows \(name)")
    }

    func timeline(_ canvas: Canvas, row y: Int) -> [Cell] {
        let x = DashboardLayout(width: canvas.width, height: canvas.height, narration: true).timelineX
        return (x..<canvas.width).map { canvas[x: $0, y: y] }
    }

    func testSendOutcomesHaveTheirOwnGlyphAndStyle() throws {
        let canvas = render(DashboardRenderTests.frame(model, width: 120, height: 40))
        let worker1 = timeline(canvas, row: try row(of: "unicorn worker 1", in: canvas))
        XCTAssertTrue(worker1.contains(Cell("╳", .sendCancelled)), "the operator-cancelled send")
        XCTAssertTrue(worker1.contains(Cell("!", .sendFailed)), "the failed send")
        XCTAssertTrue(worker1.contains(Cell("━", .sendOK)))
        XCTAssertTrue(worker1.contains(Cell("c", .forkMark)))
        XCTAssertTrue(worker1.contains(Cell("2", .rebuild)), "generation 2's rebuild tick")
        let worker3 = timeline(canvas, row: try row(of: "unicorn worker 3", in: canvas))
        XCTAssertEqual(worker3.last { $0.scalar != " " }, Cell("▶", .sendInFlight), "in flight up to now")
        XCTAssertTrue(worker3.contains(Cell("U", .forkFailed)), "the unhooked fork")
        let worker0 = timeline(canvas, row: try row(of: "unicorn worker 0", in: canvas))
        XCTAssertTrue(worker0.contains(Cell("■", .error)), "killed by a signal")
        let master = timeline(canvas, row: try row(of: "unicorn master", in: canvas))
        XCTAssertEqual(master.filter { $0 == Cell("b", .forkMark) }.count, 3, "three hooked forks")
        XCTAssertEqual(master.filter { $0 == Cell("p", .forkMark) }.count, 3)
    }

    func testAsciiGlyphsStayASCII() throws {
        let canvas = render(DashboardRenderTests.frame(model, width: 80, height: 24, glyphs: .ascii), 80, 24)
        XCTAssertTrue(canvas.cells.allSatisfy { $0.scalar.isASCII }, canvas.text)
        XCTAssertTrue(canvas.text.contains("`-"))
        XCTAssertTrue(canvas.text.contains("|-"))
    }

    func testForkArrowsRunFromTheParentRowToTheChildRow() throws {
        let canvas = render(DashboardRenderTests.frame(model, width: 120, height: 40))
        let master = try row(of: "unicorn master", in: canvas)
        let worker2 = try row(of: "unicorn worker 2", in: canvas)
        // The fork of worker 2 (5 s): a connector in every row between.
        let x = DashboardLayout(width: 120, height: 40, narration: true).timelineX
        let c = try XCTUnwrap((x..<120).first { canvas[x: $0, y: worker2] == Cell("c", .forkMark) })
        for y in (master + 1)..<worker2 {
            XCTAssertTrue(["│", "c", "■", "━", "!", "╳"].contains(canvas[x: c, y: y].scalar), "row \(y): \(canvas.row(y))")
        }
    }

    func testDetailsShowTheSelectedProcessExporterState() throws {
        let canvas = render(DashboardRenderTests.frame(model, width: 120, height: 40))
        let text = canvas.text
        XCTAssertTrue(text.contains("last #4 failed: connection refused"))
        XCTAssertTrue(text.contains("sends ok 2 · cancelled 1 · failed 1"))
        XCTAssertTrue(text.contains("writer buffered 10 · accepted 45 · sent 35"))
        XCTAssertTrue(text.contains("re-queued 25 · cancelled 1 · failed 1"))
        var frame = DashboardRenderTests.frame(model, width: 120, height: 40)
        frame.view.selected = model.processes.first { $0.name == "unicorn worker 2" }?.key
        let other = render(frame).text
        XCTAssertTrue(other.contains("dropped 30: buffer_full 30"), other)
    }

    func testLossesAreInTheTitleWhenTheRingLostEvents() {
        let canvas = render(DashboardRenderTests.frame(model, width: 120, height: 40))
        XCTAssertTrue(canvas.row(0).contains("LOST overwritten 23"))
        let x = canvas.row(0).unicodeScalars.map { $0 }.firstIndex(of: "L")!
        XCTAssertEqual(canvas[x: x, y: 0].style, .warning)
    }

    func testAHostileProcessNameCannotShiftARow() throws {
        let run = try FixtureRunlessRing()
        let canvas = render(DashboardFrame(model: run.model, view: ViewState(controlsAvailable: false), now: run.model.lastTime,
                                           source: .saved, title: "x", glyphs: .utf8), 100, 20)
        for y in 0..<canvas.height { XCTAssertEqual(canvas.row(y).unicodeScalars.count, 100) }
        XCTAssertTrue(canvas.text.contains("evil?name??"), canvas.text)
        XCTAssertFalse(canvas.text.contains("\u{1B}"))
    }

    func testReadOnlyStatusLineHidesControlKeysAndHelpSaysWhy() {
        var frame = DashboardRenderTests.frame(model, width: 120, height: 40)
        frame.view = ViewState(controlsAvailable: false, readOnlyReason: "attached with --readonly")
        var canvas = render(frame)
        let status = canvas.row(39)
        XCTAssertTrue(status.hasPrefix(" READ-ONLY "), status)
        XCTAssertFalse(status.contains("fork"))
        XCTAssertTrue(status.contains("q quit"))
        frame.view.overlay = .help
        canvas = render(frame)
        XCTAssertTrue(canvas.text.contains("Control the demo (refused: attached with --readonly)"), canvas.text)
        for binding in KeyTable.bindings.prefix(12) { XCTAssertTrue(canvas.text.contains(binding.description), binding.description) }
    }

    func testPromptAndStatusMessagesTakeTheStatusLine() {
        var frame = DashboardRenderTests.frame(model, width: 80, height: 24)
        frame.view.prompt = .search
        frame.view.promptText = "fork"
        XCTAssertTrue(render(frame, 80, 24).row(23).hasPrefix("/ search: fork█"))
        frame.view.prompt = nil
        frame.view.say("exported 225 events", now: frame.now)
        XCTAssertTrue(render(frame, 80, 24).row(23).hasPrefix(" exported 225 events"))
        frame.now += 10_000_000_000
        XCTAssertFalse(render(frame, 80, 24).row(23).contains("exported"), "status messages expire")
    }

    func testSignalChooserListsSIGTERMFirstAsTheDefault() throws {
        var frame = DashboardRenderTests.frame(model, width: 120, height: 40)
        let target = try XCTUnwrap(frame.view.selected)
        frame.view.overlay = .signalChooser(target: target, choice: 0)
        let text = render(frame).text
        XCTAssertTrue(text.contains("Signal to \(target.pid) unicorn worker 1"))
        XCTAssertTrue(text.contains(" SIGTERM (default)"))
        XCTAssertTrue(text.contains(" SIGKILL"))
    }
}

/// A model with a process whose name holds escape, tab, wide and combining
/// characters (as a hostile host could intern), published by this process.
struct FixtureRunlessRing {
    let model: DashboardModel

    init() throws {
        let r = try DashboardModelTests.ScratchRing()
        r.publish(1, .processStart, 1, ProcessRole.worker.rawValue, r.w.intern("evil\u{1B}name\t漢字\u{301}"), 0)
        r.publish(2, .sendStart, 1, 1, 1, 1)
        model = try r.fold()
    }
}
