import EventRing
import Foundation
import Glibc
import Posix
import TestSupport
import XCTest

/// `forkscope dump`, run as a user would: the built binary, spawned.
final class DumpCommandTests: XCTestCase {
    func testTextDumpPrintsEventsInTimeOrderThenAccounting() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let hook = ring.writer.intern("before_fork")
        ring.writer.publish(.hookRun, at: 2_000, ForkStage.before.rawValue, hook, Outcome.ok.rawValue, 12)
        ring.writer.publish(.sendStart, at: 1_000, 7, 3, 900, 1)
        let dump = try SpawnedProcess(executable: "forkscope", ["dump", scratch.ringPath])
        let lines = try dump.readToEnd().split(separator: "\n").map(String.init)
        XCTAssertEqual(try dump.wait(), .exited(0))
        XCTAssertEqual(lines.count, 4, lines.joined(separator: "\n"))
        XCTAssertTrue(lines[0].hasSuffix("send.start send=7 spans=3 bytes=900 attempt=1"), lines[0])
        XCTAssertTrue(lines[1].hasSuffix("hook.run stage=before name=\"before_fork\" outcome=ok us=12us"), lines[1])
        XCTAssertTrue(lines[2].hasPrefix("lane 0 owner \(getpid()) claims 1 head 2 ok 2 overwritten 0 torn 0 pending 0 abandoned 0"), lines[2])
        XCTAssertEqual(lines[3], "drops laneExhausted 0 stringTableFull 0")
    }

    func testJSONLinesAreValidJSONWithNamedArguments() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        let error = ring.writer.intern("connection reset by \"agent\"\n")
        ring.writer.publish(.sendFail, at: 5, 9, error, 42, UInt64(ECONNRESET))
        let dump = try SpawnedProcess(executable: "forkscope", ["dump", "--format", "jsonl", scratch.ringPath])
        let lines = try dump.readToEnd().split(separator: "\n")
        XCTAssertEqual(try dump.wait(), .exited(0))
        let objects = try lines.map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let event = try XCTUnwrap(objects.first ?? nil)
        XCTAssertEqual(event["kind"] as? String, "send.fail")
        let args = try XCTUnwrap(event["args"] as? [String: Any])
        XCTAssertEqual(args["error"] as? String, "connection reset by \"agent\"\n")
        XCTAssertEqual(args["errno"] as? String, "ECONNRESET")
        XCTAssertEqual(args["send"] as? Int, 9)
        XCTAssertNotNil((objects[1])?["accounting"])
        XCTAssertNotNil((objects.last ?? nil)?["drops"])
    }

    func testHostileFileGivesOneLineErrorAndExitStatus2() throws {
        let scratch = try ScratchSession()
        let path = scratch.session.path + "/garbage"
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        try fd.writeAll(String(repeating: "not a ring ", count: 100))
        try fd.close()
        for file in [path, scratch.session.path + "/missing"] {
            let dump = try SpawnedProcess(executable: "forkscope", ["dump", file])
            let errors = try dump.readErrors()
            XCTAssertEqual(try dump.readToEnd(), "")
            XCTAssertEqual(try dump.wait(), .exited(2), errors)
            XCTAssertEqual(errors.filter { $0 == "\n" }.count, 1, errors)
            XCTAssertTrue(errors.hasPrefix("forkscope: "), errors)
            XCTAssertTrue(errors.contains(file), errors)
        }
    }

    func testFollowPrintsEventsAsTheyArePublished() throws {
        let scratch = try ScratchSession()
        let ring = try scratch.createRing()
        defer { ring.unmap() }
        ring.writer.publish(.mark, at: 1, 1)
        let dump = try SpawnedProcess(executable: "forkscope", ["dump", "--follow", scratch.ringPath])
        XCTAssertTrue(try dump.readLine().hasSuffix("mark a0=1 a1=0 a2=0 a3=0"))
        ring.writer.publish(.mark, 2)
        XCTAssertTrue(try dump.readLine().hasSuffix("mark a0=2 a1=0 a2=0 a3=0"), "a new event appears without restarting")
        try ProcessControl.send(SIGTERM, to: dump.pid)
        XCTAssertEqual(try dump.wait(), .signaled(SIGTERM))
    }
}
