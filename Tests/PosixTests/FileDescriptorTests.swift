import Glibc
import XCTest
@testable import Posix

final class FileDescriptorTests: XCTestCase {
    func testPipeRoundTripCarriesBytesAndEndsAtClose() throws {
        let (r, w) = try FileDescriptor.pipe()
        defer { try? r.close() }
        try w.writeAll("hello, pipe\n")
        try w.close()
        XCTAssertEqual(try readToEnd(r), "hello, pipe\n")
    }

    func testPipeEndsCloseOnExecAndCanBeMadeNonBlocking() throws {
        let (r, w) = try FileDescriptor.pipe()
        defer { try? r.close(); try? w.close() }
        XCTAssertTrue(try r.closesOnExec())
        try r.setCloseOnExec(false)
        XCTAssertFalse(try r.closesOnExec())
        try r.setCloseOnExec()
        XCTAssertTrue(try r.closesOnExec())

        XCTAssertFalse(try r.isNonBlocking())
        try r.setNonBlocking()
        XCTAssertTrue(try r.isNonBlocking())
        var byte: UInt8 = 0
        do {
            _ = try withUnsafeMutableBytes(of: &byte) { raw in Result { () throws(SystemError) in try r.read(into: raw) } }.get()
            XCTFail("an empty non-blocking pipe should not block")
        } catch {
            XCTAssertEqual(error, SystemError("read", .wouldBlock))
        }
        try r.setNonBlocking(false)
        XCTAssertFalse(try r.isNonBlocking())
    }

    func testOpenWithNoFollowOnASymlinkGivesELOOP() throws {
        try withTemporaryDirectory { directory in
            let target = directory + "/target", link = directory + "/link"
            try FileDescriptor.open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600).close()
            try FileSystem.createSymbolicLink(at: link, to: target)
            XCTAssertEqual(try FileSystem.readSymbolicLink(link), target)
            XCTAssertTrue(try FileSystem.linkStatus(link).isSymbolicLink)
            do throws(SystemError) {
                _ = try FileDescriptor.open(link, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                XCTFail("O_NOFOLLOW opened a symlink")
            } catch {
                XCTAssertEqual(error, SystemError("open", path: link, .tooManySymbolicLinks))
            }
        }
    }

    func testOpenOfAMissingFileNamesCallPathAndErrno() {
        do {
            _ = try FileDescriptor.open("/nope", O_RDONLY | O_CLOEXEC)
            XCTFail("/nope exists")
        } catch {
            XCTAssertEqual(error.description, "open(/nope): No such file or directory (ENOENT)")
        }
    }

    func testReadSymbolicLinkGrowsItsBufferForLongTargets() throws {
        try withTemporaryDirectory { directory in
            let target = "/" + String(repeating: "t", count: 1000)
            try FileSystem.createSymbolicLink(at: directory + "/long", to: target)
            XCTAssertEqual(try FileSystem.readSymbolicLink(directory + "/long"), target)
        }
    }

    func testDirectoryContentsListsEntriesWithoutDotAndDotDot() throws {
        try withTemporaryDirectory { directory in
            try FileSystem.makeDirectory(directory + "/a", mode: 0o700)
            try FileDescriptor.open(directory + "/b", O_WRONLY | O_CREAT | O_CLOEXEC, mode: 0o600).close()
            XCTAssertEqual(try FileSystem.contents(ofDirectory: directory).sorted(), ["a", "b"])
            XCTAssertEqual(try FileSystem.linkStatus(directory).permissions, 0o700)
        }
        do {
            _ = try FileSystem.contents(ofDirectory: "/nope")
            XCTFail("/nope exists")
        } catch {
            XCTAssertEqual(error, SystemError("opendir", path: "/nope", .noSuchFileOrDirectory))
        }
    }
}

final class DeadlineTests: XCTestCase {
    func testRemainingMillisecondsRoundsUpAndEndsAtZero() {
        let now = Clock.monotonicNanoseconds()
        let soon = Deadline(monotonicNanoseconds: now + 1_500_000_000)
        XCTAssertGreaterThan(soon.remainingMilliseconds, 1_000)
        XCTAssertLessThanOrEqual(soon.remainingMilliseconds, 1_500)
        XCTAssertFalse(soon.hasPassed)

        let past = Deadline(monotonicNanoseconds: now)
        XCTAssertTrue(past.hasPassed)
        XCTAssertEqual(past.remainingMilliseconds, 0)
        XCTAssertEqual(past.remainingNanoseconds, 0)

        // 1 ns left is 1 ms of poll, not 0 (which would spin until the deadline).
        let tiny = Deadline(monotonicNanoseconds: Clock.monotonicNanoseconds() + 1_000_000_000).remainingMilliseconds
        XCTAssertGreaterThan(tiny, 0)
    }

    func testDeadlineInSecondsFromNow() {
        let deadline = Deadline(seconds: 1.5)
        XCTAssertGreaterThan(deadline.remainingMilliseconds, 1_000)
        XCTAssertLessThanOrEqual(deadline.remainingMilliseconds, 1_500)
        XCTAssertTrue(Deadline(seconds: 0).hasPassed)
        XCTAssertTrue(Deadline(seconds: -3).hasPassed)
        XCTAssertTrue(Deadline(seconds: .nan).hasPassed)
        XCTAssertEqual(Deadline(seconds: .infinity), .never)
        XCTAssertEqual(Deadline(seconds: 1e300), .never)
    }

    func testNeverIsAnIndefinitePollAndFarDeadlinesSaturate() {
        XCTAssertEqual(Deadline.never.remainingMilliseconds, -1)
        XCTAssertFalse(Deadline.never.hasPassed)
        XCTAssertEqual(Deadline.after(nanoseconds: .max), .never)
        XCTAssertEqual(Deadline.after(milliseconds: .max), .never)
        XCTAssertEqual(Deadline(monotonicNanoseconds: .max - 1).remainingMilliseconds, Int32.max)
        XCTAssertLessThan(Deadline.after(milliseconds: 1), .after(milliseconds: 1000))
    }

    func testPollWithAPassedDeadlineReturnsAtOnceEvenWithNoDescriptors() throws {
        var none: [pollfd] = []
        XCTAssertEqual(try poll(&none, deadline: .after(nanoseconds: 0)), 0)
        let (r, w) = try FileDescriptor.pipe()
        defer { try? r.close(); try? w.close() }
        XCTAssertEqual(try r.poll(for: Int16(POLLIN), deadline: .after(milliseconds: 20)), 0)
        try w.writeAll("x")
        XCTAssertEqual(try r.poll(for: Int16(POLLIN), deadline: .after(milliseconds: testDeadlineMilliseconds)), Int16(POLLIN))
    }
}

final class MappedRegionTests: XCTestCase {
    /// A guard page is really inaccessible: /proc/self/maps shows the
    /// region's lowest page with no permissions and the rest read-write.
    func testGuardLowestLeavesTheFirstPageInaccessible() throws {
        let region = try MappedRegion.anonymous(length: 4 * 4096, shared: false)
        defer { try? region.unmap() }
        try region.guardLowest(4096)
        let maps = String(decoding: try FileSystem.readFile("/proc/self/maps", limit: 1 << 22), as: UTF8.self)
        let base = UInt(bitPattern: region.base)
        // The mapping holding `address` (a neighbour of the same kind may have merged with it).
        func permissions(at address: UInt) -> Substring? {
            for line in maps.split(separator: "\n") {
                let fields = line.split(separator: " ")
                let bounds = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
                if bounds.count == 2, bounds[0] <= address, address < bounds[1] { return fields[1] }
            }
            return nil
        }
        XCTAssertEqual(permissions(at: base), "---p", maps)
        XCTAssertEqual(permissions(at: base + 4096), "rw-p", maps)
    }
}
