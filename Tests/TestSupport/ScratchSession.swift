import EventRing
import Glibc
import Posix
import XCTest

/// A private session root per test, removed afterwards.
public final class ScratchSession {
    public let root: String
    public let session: SessionDirectory

    public init(_ name: String = #function) throws {
        var template = Array("/tmp/forkscope-test-XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw SystemError("mkdtemp", path: "/tmp", .current)
        }
        root = String(cString: made)
        session = try SessionDirectory.create(name: "s", root: root)
    }

    public var ringPath: String { session.ringPath }

    public func createRing(_ configuration: RingConfiguration = RingConfiguration(laneCount: 8, slotsPerLane: 64, stringBytes: 4096)) throws -> Ring {
        try Ring.create(at: ringPath, configuration: configuration)
    }

    deinit { try? FileSystem.removeTree(root) }
}

extension RingReader {
    /// Reads everything now in the ring, merged by time.
    public func readAll() throws -> ([Event], RingAccounting) {
        var events: [Event] = []
        let accounting = try readNew(into: &events)
        RingReader.merge(&events)
        return (events, accounting)
    }
}
