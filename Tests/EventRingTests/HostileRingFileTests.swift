@testable import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// A reader treats the file as hostile: every malformed file gives one
/// clear error naming the file and the problem, never a crash or a hang.
final class HostileRingFileTests: XCTestCase {
    var scratch: ScratchSession!
    var goodBytes: [UInt8] = []

    override func setUpWithError() throws {
        scratch = try ScratchSession()
        let ring = try scratch.createRing(RingConfiguration(laneCount: 2, slotsPerLane: 16, stringBytes: 256))
        ring.writer.publish(.mark, at: 1, 1)
        ring.unmap()
        goodBytes = try FileSystem.readFile(scratch.ringPath)
    }

    override func tearDown() { scratch = nil }

    /// Writes `bytes` as a private file and returns the reader's error text.
    func error(for bytes: [UInt8], file: StaticString = #filePath, line: UInt = #line) -> String {
        let path = scratch.session.path + "/hostile"
        _ = try? FileSystem.remove(path)
        do {
            let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
            try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try fd.writeAll(raw) } }.get()
            try fd.close()
        } catch {
            XCTFail("could not write the test file: \(error)", file: file, line: line)
        }
        for mode in [RingReader.Mode.live, .snapshot] {
            do {
                _ = try RingReader(path: path, mode: mode)
                XCTFail("a hostile file was accepted (\(mode))", file: file, line: line)
            } catch {
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix(path + ": "), "the error names the file: \(text)", file: file, line: line)
                return text
            }
        }
        return ""
    }

    func patched(_ offset: Int, _ value: some FixedWidthInteger) -> [UInt8] {
        var bytes = goodBytes
        withUnsafeBytes(of: value) { raw in for (i, b) in raw.enumerated() { bytes[offset + i] = b } }
        return bytes
    }

    func testTheUnmodifiedFileIsAccepted() throws {
        XCTAssertNoThrow(try RingReader(path: scratch.ringPath, mode: .snapshot))
    }

    func testEmptyFile() {
        XCTAssertTrue(error(for: []).contains("the file is empty"))
    }

    func testTruncatedHeader() {
        XCTAssertTrue(error(for: Array(goodBytes.prefix(100))).contains("shorter than the 256-byte header"))
    }

    func testWrongMagic() {
        XCTAssertTrue(error(for: patched(0, UInt64(0x4B4E554A))).contains("wrong magic"))
    }

    func testOtherByteOrder() {
        XCTAssertTrue(error(for: patched(12, RingFormat.byteOrderMark.byteSwapped)).contains("other byte order"))
    }

    func testWrongVersion() {
        XCTAssertTrue(error(for: patched(8, UInt32(2))).contains("format version 2"))
    }

    func testHugeLaneCount() {
        XCTAssertTrue(error(for: patched(24, UInt32.max)).contains("lane count 4294967295 outside"))
    }

    func testZeroLanes() {
        XCTAssertTrue(error(for: patched(24, UInt32(0))).contains("lane count 0 outside"))
    }

    func testSlotCountNotAPowerOfTwo() {
        XCTAssertTrue(error(for: patched(28, UInt32(24))).contains("not a power of two"))
    }

    func testOverflowingOffsets() {
        XCTAssertTrue(error(for: patched(72, UInt64.max - 10)).contains("lanes offset is 18446744073709551605"))
        XCTAssertTrue(error(for: patched(80, UInt64(1) << 62)).contains("strings offset"))
        XCTAssertTrue(error(for: patched(88, UInt64.max)).contains("string table capacity"))
    }

    func testFileShorterThanTheHeaderClaims() {
        XCTAssertTrue(error(for: Array(goodBytes.prefix(goodBytes.count - 4096))).contains("header describes"))
    }

    func testRandomBytes() {
        var generator = SystemRandomNumberGenerator()
        for size in [1, 255, 256, 4096, 70_000] {
            let bytes = (0..<size).map { _ in UInt8.random(in: 0...255, using: &generator) }
            XCTAssertFalse(error(for: bytes).isEmpty)
        }
    }

    func testHostileStringOffsetsAndKindsAreContainedNotFatal() throws {
        // A valid header with hostile contents: an unknown kind and string
        // offsets pointing anywhere. Reading must account, not crash.
        let ring = try Ring.open(at: scratch.ringPath)
        defer { ring.unmap() }
        ring.writer.publish(rawKind: 9999, at: 2, generation: 0, 1, 2, 3, 4)
        ring.writer.publish(.hookRun, at: 3, 1, 0xFFFF_FFFF_FFFF, 0, 0)
        let reader = try RingReader(path: scratch.ringPath)
        var events: [Event] = []
        let accounting = try reader.readNew(into: &events)
        XCTAssertTrue(accounting.lanes.allSatisfy(\.isBalanced))
        XCTAssertTrue(events.contains { $0.rawKind == 9999 && $0.kind == nil })
        XCTAssertNil(reader.string(at: 0xFFFF_FFFF_FFFF))
        // Every offset of the string table's range, aligned or not, is either a string or nil.
        for offset in stride(from: UInt64(0), to: 600, by: 1) { _ = reader.string(at: offset) }
    }

    func testHostileStringEntryLengthIsRejected() throws {
        // Corrupt the length of the reserved "<string table full>" entry.
        let header = try RingReader(path: scratch.ringPath, mode: .snapshot).header
        let bytes = patched(Int(header.layout.stringsOffset) + 8, UInt32.max)
        let path = scratch.session.path + "/bad-strings"
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try fd.writeAll(raw) } }.get()
        try fd.close()
        let reader = try RingReader(path: path, mode: .snapshot)
        XCTAssertNil(reader.string(at: 8))
        XCTAssertEqual(reader.string(at: 0), "")
    }
}
