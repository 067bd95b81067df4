import Dashboard
import EventRing
import Terminal
import XCTest

/// The replay clock folds exactly the events at or before it, whichever
/// way it got there (played, stepped, sought forward or back).
final class ReplayFeedTests: XCTestCase {
    /// The dashboard's recorded reference ring (real forked processes).
    static let fixturePath: String = {
        var path = "\(#filePath)"
        for _ in 0..<2 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path + "/DashboardTests/References/fixture.ring"
    }()

    /// The model a plain fold of the events up to `start + position` gives.
    func foldUpTo(_ position: UInt64, path: String) throws -> DashboardModel {
        let reader = try RingReader(path: path, mode: .snapshot)
        var events: [Event] = []
        let accounting = try reader.readNew(into: &events)
        RingReader.merge(&events)
        var model = DashboardModel(origin: RingOrigin(reader.header))
        model.record(accounting)
        let limit = (events.first?.time ?? 0) + position
        model.fold(events.filter { $0.time <= limit }) { reader.string(at: $0) }
        return model
    }

    func assertSame(_ replayed: DashboardModel, _ folded: DashboardModel, _ what: String,
                    file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(replayed.eventCount, folded.eventCount, what, file: file, line: line)
        XCTAssertEqual(replayed.processes, folded.processes, what, file: file, line: line)
        XCTAssertEqual(replayed.arrows, folded.arrows, what, file: file, line: line)
        XCTAssertEqual(replayed.log.count, folded.log.count, what, file: file, line: line)
        XCTAssertEqual(replayed.lastTime, folded.lastTime, what, file: file, line: line)
    }

    func testTheClockAtTFoldsToTheSameModelAsFoldingTheEventsUpToT() throws {
        let replay = try ReplayFeed(path: ReplayFeedTests.fixturePath)
        XCTAssertGreaterThan(replay.events.count, 10)
        XCTAssertGreaterThan(replay.duration, 0)
        let times = [0, replay.duration / 5, replay.duration / 3, replay.duration / 2, replay.duration * 4 / 5, replay.duration]
        // Forward, in order.
        for t in times {
            replay.seek(to: t)
            XCTAssertEqual(replay.position, t)
            assertSame(replay.model, try foldUpTo(t, path: ReplayFeedTests.fixturePath), "forward to \(t)")
        }
        XCTAssertTrue(replay.isAtEnd)
        // Backward: re-folded from the start.
        for t in times.reversed() {
            replay.seek(to: t)
            assertSame(replay.model, try foldUpTo(t, path: ReplayFeedTests.fixturePath), "back to \(t)")
        }
        // Played by the wall clock at ×2 from 0: 10 ms of wall time is 20 ms.
        replay.seek(to: 0)
        replay.faster()
        XCTAssertEqual(replay.speed, 2)
        replay.advance(wallClock: 1_000_000_000)
        replay.advance(wallClock: 1_010_000_000)
        let played = min(replay.duration, 20_000_000)
        XCTAssertEqual(replay.position, played)
        assertSame(replay.model, try foldUpTo(played, path: ReplayFeedTests.fixturePath), "played to \(played)")
        // Paused, the clock stands still.
        replay.setPaused(true)
        replay.advance(wallClock: 2_000_000_000)
        XCTAssertEqual(replay.position, played)
    }

    func testSteppingFoldsTheNextEventsAndSpeedsAreClamped() throws {
        let replay = try ReplayFeed(path: ReplayFeedTests.fixturePath)
        replay.setPaused(true)
        var steps = 0
        while !replay.isAtEnd {
            let before = replay.cursor
            replay.step()
            XCTAssertGreaterThan(replay.cursor, before)
            XCTAssertEqual(replay.now, replay.events[replay.cursor - 1].time)
            assertSame(replay.model, try foldUpTo(replay.position, path: ReplayFeedTests.fixturePath), "step \(steps)")
            steps += 1
            if steps > 20 { replay.jumpToEnd() }
        }
        XCTAssertEqual(replay.cursor, replay.events.count)
        for _ in 0..<10 { replay.slower() }
        XCTAssertEqual(replay.speed, 0.25)
        for _ in 0..<10 { replay.faster() }
        XCTAssertEqual(replay.speed, 16)
    }

    func testTheTitleCaption() {
        XCTAssertEqual(ReplayStatus(speed: 2, position: 12_340_000_000, duration: 45_600_000_000, paused: false).caption(unicode: true),
                       "REPLAY ×2 +12.3s/45.6s")
        XCTAssertEqual(ReplayStatus(speed: 0.25, position: 0, duration: 1_000_000_000, paused: true).caption(unicode: false),
                       "PAUSED x0.25 +0.0s/1.0s")
    }
}
