@testable import Dashboard
import EventRing
import XCTest

/// `s`: the events held, as a sequence diagram over the dashboard.
final class SequenceOverlayTests: XCTestCase {
    func testSOpensTheSequenceDiagramWhichScrollsAndClosesOnAnyOtherKey() throws {
        let model = try DashboardRenderTests.fixtureModel()
        var frame = DashboardRenderTests.frame(model, width: 120, height: 40)
        let layout = DashboardLayout(width: 120, height: 40, narration: true)
        XCTAssertEqual(frame.view.handle(.character("s"), model: model, layout: layout, now: 0), .redraw)
        XCTAssertEqual(frame.view.overlay, .sequence)
        let text = DashboardView.render(frame, width: 120, height: 40).text
        XCTAssertTrue(text.contains("sequence: hooks, fork stages, forks"), text)
        XCTAssertTrue(text.contains("unicorn master"), "a column per process:\n\(text)")
        XCTAssertTrue(text.contains("▶"), "fork arrows to the child's column:\n\(text)")
        _ = frame.view.handle(.down, model: model, layout: layout, now: 0)
        _ = frame.view.handle(.right, model: model, layout: layout, now: 0)
        XCTAssertEqual(frame.view.sequenceTop, 1)
        XCTAssertEqual(frame.view.sequenceLeft, 12)
        XCTAssertEqual(frame.view.handle(.escape, model: model, layout: layout, now: 0), .redraw)
        XCTAssertNil(frame.view.overlay)

        var ascii = DashboardRenderTests.frame(model, width: 120, height: 40, glyphs: .ascii)
        ascii.view.overlay = .sequence
        let canvas = DashboardView.render(ascii, width: 120, height: 40)
        XCTAssertTrue(canvas.cells.allSatisfy { $0.scalar.isASCII }, "ASCII when the locale is not UTF-8:\n\(canvas.text)")
    }
}
