import CPosix
@testable import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

final class RingRoundTripTests: XCTestCase {
    func testEveryEventKindRoundTripsWithItsArguments() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 4, slotsPerLane: 256, stringBytes: 8192))
        defer { ring.unmap() }
        for kind in EventKind.allCases {
            let k = UInt64(kind.rawValue)
            XCTAssertNil(ring.writer.publish(kind, at: 1000 + k, generation: UInt32(k), k, k << 8, k << 16, ~k))
        }
        let reader = try RingReader(path: scratch.ringPath)
        let (events, accounting) = try reader.readAll()
        XCTAssertEqual(events.map(\.kind), EventKind.allCases.map { Optional($0) })
        for event in events {
            let k = UInt64(event.rawKind)
            XCTAssertEqual(event.args, [k, k << 8, k << 16, ~k])
            XCTAssertEqual(event.time, 1000 + k)
            XCTAssertEqual(event.generation, UInt32(k))
            XCTAssertEqual(event.pid, getpid())
            XCTAssertEqual(event.tid, fks_gettid())
        }
        XCTAssertEqual(accounting.total.ok, UInt64(EventKind.allCases.count))
        XCTAssertTrue(accounting.lanes.allSatisfy(\.isBalanced))
    }

    func testEventKindNamesAreUniqueAndNumbersStable() {
        let names = EventKind.allCases.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        // On-disk numbers are append-only: these must never change.
        XCTAssertEqual(EventKind.processStart.rawValue, 1)
        XCTAssertEqual(EventKind.sendStart.rawValue, 17)
        XCTAssertEqual(EventKind.mark.rawValue, 34)
        for kind in EventKind.allCases { XCTAssertLessThanOrEqual(kind.arguments.count, 4, kind.name) }
    }

    func testInternedStringsRoundTripAndAreStoredOnce() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let texts = ["before_fork", "on_worker_boot", "ECONNRESET while reading", "héllo ✓", String(repeating: "x", count: 300)]
        let offsets = texts.map { ring.writer.intern($0) }
        XCTAssertEqual(texts.map { ring.writer.intern($0) }, offsets, "interning again returns the same offsets")
        XCTAssertEqual(Set(offsets).count, texts.count)
        XCTAssertEqual(ring.writer.intern(""), 0)
        let reader = try RingReader(path: scratch.ringPath)
        XCTAssertEqual(offsets.map { reader.string(at: $0) }, texts)
        XCTAssertEqual(reader.string(at: 0), "")
        XCTAssertNil(reader.string(at: 3), "unaligned offsets are rejected")
        XCTAssertNil(reader.string(at: 1 << 40), "out-of-range offsets are rejected")
    }

    func testFullStringTableIsCountedAndReadsAsAMarker() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 1, slotsPerLane: 16, stringBytes: 128))
        defer { ring.unmap() }
        var offsets: [UInt64] = []
        for i in 0..<20 { offsets.append(ring.writer.intern("string number \(i)")) }
        let reader = try RingReader(path: scratch.ringPath)
        XCTAssertEqual(reader.string(at: offsets.last!), "<string table full>")
        var events: [Event] = []
        XCTAssertGreaterThan(try reader.readNew(into: &events).stringTableFull, 0)
    }

    func testLappingTheRingIsCountedAsOverwritten() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 2, slotsPerLane: 16, stringBytes: 256))
        defer { ring.unmap() }
        for i in 0..<100 { ring.writer.publish(.mark, at: UInt64(i), UInt64(i)) }
        let (events, accounting) = try RingReader(path: scratch.ringPath).readAll()
        XCTAssertEqual(events.map(\.a0), Array(84..<100).map(UInt64.init), "the newest window survives, in order")
        XCTAssertEqual(accounting.total.ok, 16)
        XCTAssertEqual(accounting.total.overwritten, 84)
        XCTAssertEqual(accounting.total.headAdvance, 100)
        XCTAssertTrue(accounting.lanes.allSatisfy(\.isBalanced))
    }

    func testFollowReadsOnlyNewEventsAndCountsALapBetweenReads() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 1, slotsPerLane: 16, stringBytes: 256))
        defer { ring.unmap() }
        let reader = try RingReader(path: scratch.ringPath)
        for i in 0..<10 { ring.writer.publish(.mark, at: UInt64(i), UInt64(i)) }
        var events: [Event] = []
        try reader.readNew(into: &events)
        XCTAssertEqual(events.count, 10)
        events.removeAll()
        for i in 10..<50 { ring.writer.publish(.mark, at: UInt64(i), UInt64(i)) }
        let accounting = try reader.readNew(into: &events)
        XCTAssertEqual(events.map(\.a0), Array(34..<50).map(UInt64.init))
        XCTAssertEqual(accounting.total.ok, 26)
        XCTAssertEqual(accounting.total.overwritten, 24)
        XCTAssertTrue(accounting.total.isBalanced)
    }

    func testRingFileAndSessionArePrivate() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        XCTAssertEqual(try FileSystem.linkStatus(scratch.ringPath).permissions, 0o600)
        XCTAssertEqual(try FileSystem.linkStatus(scratch.session.path).permissions, 0o700)
        XCTAssertThrowsError(try scratch.createRing(), "O_EXCL: an existing ring is never reused") { error in
            XCTAssertTrue("\(error)".contains("File exists"), "\(error)")
        }
    }

    func testSymlinkedRingIsRefused() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let link = scratch.session.path + "/link"
        XCTAssertEqual(symlink(scratch.ringPath, link), 0)
        XCTAssertThrowsError(try RingReader(path: link)) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
        XCTAssertThrowsError(try Ring.open(at: link)) { XCTAssertTrue("\($0)".contains("symbolic link"), "\($0)") }
    }

    func testRingOwnedByAnotherUserIsRefusedForWriting() throws {
        try XCTSkipIf(geteuid() != 0, "needs root to chown a file to another user")
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        ring.unmap()
        XCTAssertEqual(chown(scratch.ringPath, 65534, 65534), 0)
        XCTAssertThrowsError(try Ring.open(at: scratch.ringPath)) { XCTAssertTrue("\($0)".contains("owned by uid 65534"), "\($0)") }
        // root may attach read-only to another user's ring (the sudo debugging case)
        XCTAssertNoThrow(try RingReader(path: scratch.ringPath))
    }

    func testSessionDirectoryWithOpenPermissionsIsRefused() throws {
        let scratch = try ScratchSession()
        XCTAssertEqual(chmod(scratch.session.path, 0o755), 0)
        XCTAssertThrowsError(try scratch.createRing()) { XCTAssertTrue("\($0)".contains("gives access to other users"), "\($0)") }
    }
}
