import CPosix
@testable import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The ring under real processes: concurrent writers, a writer stopped or
/// killed inside a publish, signal handlers, lane exhaustion, raw fork().
final class RingProcessTests: XCTestCase {
    func testTwoWriterProcessesPublishAMillionEventsEachWithExactAccounting() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 4, slotsPerLane: 1 << 16, stringBytes: 4096))
        defer { ring.unmap() }
        let count = 1_000_000
        let hosts = try (0..<2).map { _ in try SpawnedProcess(["publish", scratch.ringPath, String(count)]) }
        for host in hosts { try host.send("g") }  // start both together
        for host in hosts {
            XCTAssertEqual(try host.readLine(within: 60), "done 0", "no event dropped")
            XCTAssertEqual(try host.wait(), .exited(0))
        }
        let (events, accounting) = try RingReader(path: scratch.ringPath).readAll()
        for lane in accounting.lanes { XCTAssertTrue(lane.isBalanced, "\(lane)") }
        XCTAssertEqual(accounting.total.headAdvance, UInt64(2 * count))
        XCTAssertEqual(accounting.total.ok + accounting.total.overwritten, UInt64(2 * count))
        XCTAssertEqual(accounting.total.torn + accounting.total.pending + accounting.total.abandoned, 0)
        // Each producer's surviving window is its last events, consecutive, in its own lane.
        for host in hosts {
            let mine = events.filter { $0.pid == host.pid }.sorted { $0.sequence < $1.sequence }
            XCTAssertEqual(mine.count, 1 << 16)
            XCTAssertEqual(Set(mine.map(\.lane)).count, 1)
            XCTAssertEqual(mine.map(\.a0), Array((count - (1 << 16))..<count).map(UInt64.init))
        }
    }

    func testStalledLiveWriterIsPendingAndAbandonedOnceKilled() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let host = try SpawnedProcess(["stall", scratch.ringPath])
        XCTAssertEqual(try host.wait(untraced: true), .stopped(SIGSTOP), "the writer stopped inside its publish")

        let following = try RingReader(path: scratch.ringPath)
        var events: [Event] = []
        var accounting = try following.readNew(into: &events)
        XCTAssertEqual(accounting.total.pending, 1)
        XCTAssertEqual(accounting.total.abandoned, 0)
        XCTAssertEqual(accounting.total.ok, 0)

        try ProcessControl.send(SIGKILL, to: host.pid)
        XCTAssertEqual(try host.wait(), .signaled(SIGKILL))
        accounting = try following.readNew(into: &events)
        XCTAssertEqual(accounting.total.pending, 0, "a follower re-examines what was pending")
        XCTAssertEqual(accounting.total.abandoned, 1)
        XCTAssertTrue(accounting.total.isBalanced)
        let fresh = try RingReader(path: scratch.ringPath).readAll().1
        XCTAssertEqual(fresh.total.abandoned, 1)
        XCTAssertEqual(fresh.total.pending, 0)
    }

    func testStalledWriterThatResumesCommitsItsEvent() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let host = try SpawnedProcess(["stall", scratch.ringPath])
        XCTAssertEqual(try host.wait(untraced: true), .stopped(SIGSTOP))
        let following = try RingReader(path: scratch.ringPath)
        var events: [Event] = []
        XCTAssertEqual(try following.readNew(into: &events).total.pending, 1)
        try ProcessControl.send(SIGCONT, to: host.pid)
        XCTAssertEqual(try host.readLine(), "resumed")
        XCTAssertEqual(try host.wait(), .exited(0))
        let accounting = try following.readNew(into: &events)
        XCTAssertEqual(accounting.total.ok, 1)
        XCTAssertEqual(accounting.total.pending, 0)
        XCTAssertEqual(events.map(\.a0), [1])
    }

    func testSignalHandlerPublishingOnTheSameLaneCorruptsNothing() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 2, slotsPerLane: 1 << 19, stringBytes: 4096))
        defer { ring.unmap() }
        let count = 300_000
        let host = try SpawnedProcess(["signals", scratch.ringPath, String(count)])
        let report = try host.readLine(within: 60).split(separator: " ")
        XCTAssertEqual(try host.wait(), .exited(0))
        XCTAssertEqual(report.count, 4)
        let handled = UInt64(report[3]) ?? 0
        XCTAssertGreaterThan(handled, 0, "the timer fired during the run")
        let (events, accounting) = try RingReader(path: scratch.ringPath).readAll()
        XCTAssertEqual(accounting.total.ok, UInt64(count) + handled + 1)
        XCTAssertEqual(accounting.total.torn + accounting.total.pending + accounting.total.abandoned + accounting.total.busyDrops, 0)
        let main = events.filter { $0.generation == 0 && $0.a1 == 0 }.map(\.a0).sorted()
        XCTAssertEqual(main, [0] + Array(0..<count).map(UInt64.init), "every main-thread event intact, once")
        let fromHandler = events.filter { $0.generation == 1 }
        XCTAssertEqual(fromHandler.map(\.a1).sorted(), Array(1...handled))
        XCTAssertTrue(fromHandler.allSatisfy { $0.a0 == 0xFFFF_FFFF && $0.pid == host.pid })
    }

    func testExhaustedLanesCountTheDropThenADeadOwnersLaneIsReclaimed() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 2, slotsPerLane: 16, stringBytes: 256))
        defer { ring.unmap() }
        let first = try SpawnedProcess(["hold", scratch.ringPath])
        let second = try SpawnedProcess(["hold", scratch.ringPath])
        XCTAssertEqual(try first.readLine(), "held")
        XCTAssertEqual(try second.readLine(), "held")
        let third = try SpawnedProcess(["hold", scratch.ringPath])
        XCTAssertEqual(try third.readLine(), "dropped laneExhausted")
        var events: [Event] = []
        XCTAssertEqual(try RingReader(path: scratch.ringPath).readNew(into: &events).laneExhausted, 1, "the drop is counted")

        first.kill()
        let fourth = try SpawnedProcess(["hold", scratch.ringPath])
        XCTAssertEqual(try fourth.readLine(), "held", "the dead owner's lane was reclaimed")
        events.removeAll()
        let accounting = try RingReader(path: scratch.ringPath).readNew(into: &events)
        XCTAssertEqual(accounting.lanes.map(\.claims).sorted(), [1, 2])
        XCTAssertEqual(Set(events.map(\.pid)), [first.pid, second.pid, fourth.pid], "the dead owner's events are still readable")
        for host in [second, third, fourth] { try host.closeInput(); XCTAssertEqual(try host.wait(), .exited(0)) }
    }

    func testChildOfARawForkPublishesIntoAFreshLane() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let host = try SpawnedProcess(["fork-raw", scratch.ringPath])
        let report = try host.readLine().split(separator: " ")
        XCTAssertEqual(try host.wait(), .exited(0))
        XCTAssertEqual(report.first, "child")
        XCTAssertEqual(report.dropFirst(2).joined(separator: " "), "exited with status 0")
        let childPid = pid_t(report[1]) ?? -1
        let (events, _) = try RingReader(path: scratch.ringPath).readAll()
        let parent = events.filter { $0.pid == host.pid }, child = events.filter { $0.pid == childPid }
        XCTAssertEqual(parent.map(\.a0), [1])
        XCTAssertEqual(child.map(\.a0), [2])
        XCTAssertNotEqual(parent.first?.lane, child.first?.lane, "no hook ran, yet the child claimed its own lane")
        XCTAssertEqual(child.first?.tid, childPid, "the cached tid was refreshed after fork")
    }
}
