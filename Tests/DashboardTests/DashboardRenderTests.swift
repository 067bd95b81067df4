@testable import Dashboard
import EventRing
import Posix
import TestSupport
import XCTest

/// The dashboard rendered into a plain character grid, compared with
/// reference text files. The model is folded from a recorded ring
/// (`References/fixture.ring`, written by real forked processes of
/// `dashboard-fixture-host render`), so the pids in the references are
/// stable. `FORKSCOPE_RECORD_REFERENCES=1` re-records the ring and the
/// references; review their diff like code.
final class DashboardRenderTests: XCTestCase {
    static let ringName = "fixture.ring"

    /// The model of the recorded scene (recorded first when asked to).
    static func fixtureModel() throws -> DashboardModel {
        let path = TestFiles.reference(ringName)
        if TestFiles.recording && !recorded {
            recorded = true
            let run = try FixtureRun("render", ring: RingConfiguration(laneCount: 8, slotsPerLane: 128, stringBytes: 8192))
            try TestFiles.copy(run.scratch.ringPath, to: path)
        }
        return try FixtureRun.fold(path: path, mode: .snapshot)
    }

    nonisolated(unsafe) static var recorded = false

    /// The frame every reference shows: 9 s into the scene, worker 1 (the
    /// one whose send failed) selected, the whole scene fitted on the axis.
    static func frame(_ model: DashboardModel, width: Int, height: Int, glyphs: Glyphs = .utf8) -> DashboardFrame {
        var view = ViewState(controlsAvailable: true)
        view.selected = model.processes.first { $0.name == "unicorn worker 1" }?.key
        view.narration = "A fork with policy cancel cancelled the master's send #4; its 20 spans were re-queued and sent after the fork."
        let layout = DashboardLayout(width: width, height: height, narration: true)
        view.fit(span: 9_300_000_000, columns: layout.timelineWidth)
        return DashboardFrame(model: model, view: view, now: model.at(9000), source: .saved,
                              title: "fixture.ring", glyphs: glyphs)
    }

    func check(width: Int, height: Int, glyphs: Glyphs = .utf8, name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try DashboardRenderTests.fixtureModel()
        let canvas = DashboardView.render(DashboardRenderTests.frame(model, width: width, height: height, glyphs: glyphs), width: width, height: height)
        XCTAssertEqual(canvas.width, width)
        XCTAssertEqual(canvas.height, height)
        let path = TestFiles.reference(name)
        if TestFiles.recording {
            try TestFiles.write(canvas.text, to: path)
            return
        }
        let expected = try TestFiles.read(path)
        if canvas.text != expected {
            let got = canvas.text.split(separator: "\n", omittingEmptySubsequences: false)
            let want = expected.split(separator: "\n", omittingEmptySubsequences: false)
            let first = zip(got, want).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(got.count, want.count)
            XCTFail("""
                render \(width)x\(height) differs from \(name) at line \(first + 1):
                  got:  \(first < got.count ? String(got[first]) : "(none)")
                  want: \(first < want.count ? String(want[first]) : "(none)")
                whole render:
                \(canvas.text)
                """, file: file, line: line)
        }
    }

    func testRender120x40MatchesReference() throws { try check(width: 120, height: 40, name: "render-120x40.txt") }
    func testRender80x24MatchesReference() throws { try check(width: 80, height: 24, name: "render-80x24.txt") }
    func testRender40x10MatchesReference() throws { try check(width: 40, height: 10, name: "render-40x10.txt") }
    func testRender20x5ShowsTheSizeMessage() throws { try check(width: 20, height: 5, name: "render-20x5.txt") }
    func testRender80x24InASCIIMatchesReference() throws { try check(width: 80, height: 24, glyphs: .ascii, name: "render-80x24-ascii.txt") }
}
