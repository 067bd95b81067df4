@testable import Dashboard
import EventRing
import Glibc
import TestSupport
import XCTest

/// Events are untrusted: any kind, any argument, any time. Random ones
/// (seeded, so a failure reproduces) are published into a real ring, read
/// back, folded and rendered at every size: nothing may trap.
final class HostileEventTests: XCTestCase {
    func testRandomEventsFoldAndRenderWithoutTrapping() throws {
        for seed in 1...8 as ClosedRange<UInt64> {
            var random = SeededGenerator(seed: seed)
            let r = try DashboardModelTests.ScratchRing()
            let kinds = EventKind.allCases
            let name = r.w.intern("hostile")
            for _ in 0..<200 {
                // Small pids and ids, so events refer to each other (and to us).
                func arg() -> UInt64 {
                    switch random.below(6) {
                    case 0: return UInt64(getpid())
                    case 1: return random.below(8)
                    case 2: return name
                    case 3: return UInt64.max - random.below(3)
                    default: return random.below(100_000)
                    }
                }
                let time: UInt64 = random.below(10) == 0 ? random.next() : r.at(Double(random.below(5000)))
                let raw = random.below(12) == 0 ? UInt16(random.below(400)) : kinds[Int(random.below(UInt64(kinds.count)))].rawValue
                _ = r.w.publish(rawKind: raw, at: time, generation: UInt32(truncatingIfNeeded: random.next()), arg(), arg(), arg(), arg())
            }
            let model = try r.fold()
            XCTAssertEqual(model.eventCount, 200)
            var view = ViewState(controlsAvailable: random.below(2) == 0)
            for _ in 0..<10 {
                view.zoom = Int(random.below(UInt64(ViewState.zoomLevels.count)))
                view.rightEdge = random.below(3) == 0 ? nil : random.next()
                view.selected = model.processes.randomElement()?.key
                view.filter = random.below(3) == 0 ? EventFilter(parsing: "send \(getpid())") : EventFilter()
                view.logOffset = Int(random.below(300))
                view.narration = random.below(2) == 0 ? "narration" : nil
                view.overlay = [nil, .help, .policyChooser(choice: 3)][Int(random.below(3))]
                for (width, height) in [(120, 40), (80, 24), (40, 10), (20, 5), (41, 11), (250, 70)] {
                    for glyphs in [Glyphs.utf8, .ascii] {
                        let now = random.below(4) == 0 ? random.next() : model.lastTime
                        let canvas = DashboardView.render(DashboardFrame(model: model, view: view, now: now, source: .live, title: "h", glyphs: glyphs),
                                                          width: width, height: height)
                        XCTAssertEqual(canvas.cells.count, width * height)
                    }
                }
                for key in [Key.down, .up, .end, .pageUp, .left, .right, .character("+"), .character("n"), .character("k"), .enter, .escape] {
                    _ = view.handle(key, model: model, layout: DashboardLayout(width: 80, height: 24, view: view, model: model), now: random.next())
                }
            }
            _ = ProcessSummary.text(model, source: "h", live: true)
        }
    }
}
