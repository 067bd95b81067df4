@testable import Dashboard
import EventRing
import Glibc
import XCTest

/// Keys change only view state and return an outcome; the model is read,
/// never written. The model is the recorded fixture scene.
final class DashboardInputTests: XCTestCase {
    var model: DashboardModel!
    let layout = DashboardLayout(width: 120, height: 40, narration: false)
    let now: UInt64 = 1_000_000_000_000

    override func setUpWithError() throws {
        model = try DashboardRenderTests.fixtureModel()
    }

    func named(_ name: String) throws -> ProcessKey {
        try XCTUnwrap(model.processes.first { $0.name == name }?.key, "no \(name)")
    }

    @discardableResult
    func press(_ view: inout ViewState, _ keys: Key...) -> [InputOutcome] {
        let before = model!
        let outcomes = keys.map { view.handle($0, model: model, layout: layout, now: now) }
        XCTAssertEqual(model, before, "input must not change the model")
        return outcomes
    }

    func testEveryActionIsBoundAndNoKeyTwice() {
        let bound = Set(KeyTable.bindings.map(\.action))
        XCTAssertEqual(bound, Set(Action.allCases))
        let keys = KeyTable.bindings.flatMap(\.keys)
        XCTAssertEqual(keys.count, Set(keys).count)
        for binding in KeyTable.bindings { XCTAssertFalse(binding.description.isEmpty) }
        XCTAssertEqual(KeyTable.action(for: .function(1)), .help)
        XCTAssertEqual(KeyTable.action(for: .character("?")), .help)
        XCTAssertEqual(KeyTable.action(for: .character("\\")), .filter)
    }

    func testControlKeysAreRefusedReadOnlyWithAStatusMessage() {
        var view = ViewState(controlsAvailable: false, readOnlyReason: "attached with --readonly")
        for key: Unicode.Scalar in ["f", "u", "c", "k", "b", "d", "p"] {
            XCTAssertEqual(press(&view, .character(key)), [.redraw])
            XCTAssertEqual(view.status?.kind, .error)
            XCTAssertTrue(view.status?.text.hasPrefix("read-only: \(key) (") == true, view.status?.text ?? "")
            XCTAssertTrue(view.status?.text.hasSuffix("refused: attached with --readonly") == true, view.status?.text ?? "")
            XCTAssertNil(view.overlay)
            XCTAssertNil(view.prompt)
        }
    }

    func testControlKeysNameTheSelectedProcessByPidAndStartTime() throws {
        var view = ViewState(controlsAvailable: true)
        view.selected = try named("unicorn worker 1")
        let target = try named("unicorn worker 1")
        XCTAssertEqual(press(&view, .character("f")), [.control(.fork(target: target))])
        XCTAssertEqual(press(&view, .character("u")), [.control(.unsafeFork(target: target))])
        XCTAssertEqual(press(&view, .character("c")), [.control(.cancelSend(target: target))])
        // k opens the signal chooser on SIGTERM; Enter sends it.
        XCTAssertEqual(press(&view, .character("k")), [.redraw])
        XCTAssertEqual(view.overlay, .signalChooser(target: target, choice: 0))
        XCTAssertEqual(press(&view, .enter), [.control(.kill(target: target, signal: SIGTERM))])
        XCTAssertNil(view.overlay)
        // Down picks the next one; Esc sends nothing.
        XCTAssertEqual(press(&view, .character("k"), .down, .enter).last, .control(.kill(target: target, signal: SIGINT)))
        XCTAssertEqual(press(&view, .character("k"), .escape), [.redraw, .redraw])
        XCTAssertNil(view.overlay)
    }

    func testKillingAnEndedProcessIsRefused() throws {
        var view = ViewState(controlsAvailable: true)
        view.selected = try named("unicorn worker 0")  // SIGTERMed in the scene
        XCTAssertEqual(press(&view, .character("k")), [.redraw])
        XCTAssertNil(view.overlay)
        XCTAssertEqual(view.status?.kind, .error)
    }

    func testPromptsAndChoosersForBurstDelayAndPolicy() {
        var view = ViewState(controlsAvailable: true)
        press(&view, .character("b"))
        XCTAssertEqual(view.prompt, .burst)
        XCTAssertEqual(view.promptText, "200")
        XCTAssertEqual(press(&view, .character("x")), [.ignored], "only digits in a number prompt")
        XCTAssertEqual(press(&view, .backspace, .backspace, .character("5"), .enter).last, .control(.burst(requests: 25)))
        press(&view, .character("d"), .backspace, .backspace, .backspace, .backspace)
        XCTAssertEqual(press(&view, .character("2"), .character("5"), .character("0"), .enter).last, .control(.agentDelay(milliseconds: 250)))
        XCTAssertEqual(view.agentDelayMilliseconds, 250)
        press(&view, .character("d"), .backspace, .backspace, .backspace)
        XCTAssertEqual(press(&view, .enter), [.redraw], "an empty delay is refused")
        XCTAssertEqual(view.status?.kind, .error)
        press(&view, .character("p"))
        XCTAssertEqual(view.overlay, .policyChooser(choice: 0))
        XCTAssertEqual(press(&view, .down, .down, .enter).last, .control(.forkPolicy(.drainThenCancel(milliseconds: 250))))
        XCTAssertEqual(ForkPolicySetting.drainThenCancel(milliseconds: 250).text, "drain:250")
    }

    func testSelectionMovesInTreeOrderAndScrollsIntoView() throws {
        var view = ViewState(controlsAvailable: false)
        let rows = view.rows(model)
        press(&view, .down)
        XCTAssertEqual(view.selected, model.processes[rows[1].index].key)
        press(&view, .end)
        XCTAssertEqual(view.selected, model.processes[rows.last!.index].key)
        press(&view, .down)
        XCTAssertEqual(view.selected, model.processes[rows.last!.index].key, "stops at the last row")
        press(&view, .home, .up)
        XCTAssertEqual(view.selected, model.processes[rows[0].index].key)
    }

    func testTheSelectionScrollsTheRowsToStayVisible() throws {
        // A master that spawned 20 workers: more rows than a small window has.
        let r = try DashboardModelTests.ScratchRing()
        r.publish(1, .processStart, 1, ProcessRole.master.rawValue, r.w.intern("master"), 0)
        for n in 0..<20 { r.publish(2 + Double(n), .workerSpawned, UInt64(900_000 + n), UInt64(n)) }
        let many = try r.fold()
        let small = DashboardLayout(width: 80, height: 12, narration: false)
        let visible = small.processRows.count
        var view = ViewState(controlsAvailable: false)
        for _ in 0..<15 { _ = view.handle(.down, model: many, layout: small, now: now) }
        XCTAssertEqual(view.processTop, 15 - visible + 1)
        XCTAssertEqual(view.selected?.pid, 900_014)
        let canvas = DashboardView.render(DashboardFrame(model: many, view: view, now: r.at(30), source: .saved, title: "t", glyphs: .utf8),
                                          width: 80, height: 12)
        XCTAssertTrue(canvas.row(small.processRows.upperBound - 1).contains("900014"), canvas.text)
        XCTAssertTrue(canvas.row(small.processRows.lowerBound).contains("↑"), "more rows above")
        for _ in 0..<15 { _ = view.handle(.up, model: many, layout: small, now: now) }
        XCTAssertEqual(view.processTop, 0)
    }

    func testPanZoomAndFollow() {
        var view = ViewState(controlsAvailable: false)
        let zoom = view.zoom
        press(&view, .character("+"))
        XCTAssertEqual(view.zoom, zoom - 1)
        press(&view, .character("-"), .character("-"))
        XCTAssertEqual(view.zoom, zoom + 1)
        for _ in 0..<40 { press(&view, .character("-")) }
        XCTAssertEqual(view.zoom, ViewState.zoomLevels.count - 1)
        XCTAssertNil(view.rightEdge)
        press(&view, .left)
        let edge = try! XCTUnwrap(view.rightEdge)
        XCTAssertLessThan(edge, now)
        for _ in 0..<100 { press(&view, .right) }
        XCTAssertNil(view.rightEdge, "panning past now follows again")
        press(&view, .left, .character("0"))
        XCTAssertNil(view.rightEdge)
    }

    func testPauseFreezesTheViewAndSaysSo() {
        var view = ViewState(controlsAvailable: false)
        press(&view, .character(" "))
        XCTAssertTrue(view.paused)
        XCTAssertTrue(view.status?.text.hasPrefix("paused") == true)
        press(&view, .character(" "))
        XCTAssertFalse(view.paused)
    }

    func testSearchScrollsToTheNewestMatchAndNFindsOlderOnes() {
        var view = ViewState(controlsAvailable: false)
        view.pane = .logs
        press(&view, .character("/"), .character("w"), .character("o"), .character("r"), .character("k"), .character("e"),
              .character("r"), .character("."), .character("s"), .character("p"))
        XCTAssertEqual(view.search, "worker.sp", "the search follows the typing")
        press(&view, .enter)
        XCTAssertEqual(view.pane, .events)
        let indices = view.logIndices(model)
        let text = EventText(model: model)
        func bottom() -> String { text.compactLine(model.log[indices[indices.count - 1 - view.logOffset]]) }
        XCTAssertTrue(bottom().contains("worker.spawned"), bottom())
        let newest = view.logOffset
        press(&view, .character("N"))
        XCTAssertGreaterThan(view.logOffset, newest)
        XCTAssertTrue(bottom().contains("worker.spawned"))
        press(&view, .character("n"))
        XCTAssertEqual(view.logOffset, newest)
        press(&view, .character("n"))
        XCTAssertEqual(view.status?.kind, .error, "no newer match")
        press(&view, .escape)
        XCTAssertEqual(view.search, "")
    }

    func testFilterNarrowsTheLogByKindAndTheRowsByPidKeepingAncestors() throws {
        let worker = try named("unicorn worker 2")
        var filter = EventFilter(parsing: "\(worker.pid) send")
        XCTAssertEqual(filter.pids, [worker.pid])
        XCTAssertEqual(filter.kinds, ["send"])
        filter = EventFilter(parsing: "kind:fork.child role:worker unicorn")
        XCTAssertEqual(filter.kinds, ["fork.child"])
        XCTAssertEqual(filter.words, ["worker", "unicorn"])

        var view = ViewState(controlsAvailable: false)
        press(&view, .character("\\"))
        for c in "\(worker.pid) send".unicodeScalars { press(&view, .character(c)) }
        press(&view, .enter)
        let rows = view.rows(model).map { model.processes[$0.index].displayName }
        XCTAssertEqual(rows, ["unicorn master", "unicorn worker 2"], "the match and its ancestors")
        let events = view.logIndices(model).map { model.log[$0] }
        XCTAssertFalse(events.isEmpty)
        XCTAssertTrue(events.allSatisfy { $0.pid == worker.pid && $0.kind!.name.hasPrefix("send") })
        press(&view, .character("\\"), .backspace)
        for _ in 0..<20 { press(&view, .backspace) }
        press(&view, .enter)
        XCTAssertTrue(view.filter.isEmpty)
        XCTAssertEqual(view.rows(model).count, model.processes.count)
    }

    func testHelpOpensWithF1AndAnyKeyClosesIt() {
        var view = ViewState(controlsAvailable: false)
        press(&view, .function(1))
        XCTAssertEqual(view.overlay, .help)
        press(&view, .down)
        XCTAssertEqual(view.helpTop, 1)
        press(&view, .character("x"))
        XCTAssertNil(view.overlay)
        XCTAssertEqual(press(&view, .character("?"), .character("q")).last, .quit)
    }

    func testTabCyclesPanesAndExportAndQuitAreOutcomes() {
        var view = ViewState(controlsAvailable: false)
        press(&view, .tab)
        XCTAssertEqual(view.pane, .logs)
        press(&view, .tab)
        XCTAssertEqual(view.pane, .events)
        let narrow = DashboardLayout(width: 60, height: 24, narration: false)
        var small = ViewState(controlsAvailable: false)
        var seen: [ViewState.Pane] = []
        for _ in 0..<3 { _ = small.handle(.tab, model: model, layout: narrow, now: now); seen.append(small.pane) }
        XCTAssertEqual(seen, [.logs, .details, .events])
        XCTAssertEqual(press(&view, .character("e")), [.export])
        XCTAssertEqual(press(&view, .character("q")), [.quit])
        XCTAssertEqual(press(&view, .function(10)), [.quit])
        XCTAssertEqual(press(&view, .character("Z")), [.ignored])
    }
}
