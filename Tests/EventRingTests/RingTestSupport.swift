import EventRing
import Glibc
import Posix
import XCTest

/// A private session root per test, removed afterwards.
final class ScratchSession {
    let root: String
    let session: SessionDirectory

    init(_ name: String = #function) throws {
        var template = Array("/tmp/forkscope-test-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", path: "/tmp", .current)
        }
        root = String(cString: made)
        session = try SessionDirectory.create(name: "s", root: root)
    }

    var ringPath: String { session.ringPath }

    func createRing(_ configuration: RingConfiguration = RingConfiguration(laneCount: 8, slotsPerLane: 64, stringBytes: 4096)) throws -> Ring {
        try Ring.create(at: ringPath, configuration: configuration)
    }

    deinit { try? FileSystem.removeTree(root) }
}

extension RingReader {
    /// Reads everything now in the ring, merged by time.
    func readAll() throws -> ([Event], RingAccounting) {
        var events: [Event] = []
        let accounting = try readNew(into: &events)
        RingReader.merge(&events)
        return (events, accounting)
    }
}
