@testable import Dashboard
import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// A scenario of `dashboard-fixture-host` run into a scratch ring: real
/// forked processes, real lanes, explicit event times.
struct FixtureRun {
    let scratch: ScratchSession
    /// `NAME → (pid, start ticks)` as the processes announced themselves.
    let processes: [String: ProcessKey]
    /// Other lines the host printed (`reuse real`, …).
    let notes: [String]

    static let smallRing = RingConfiguration(laneCount: 8, slotsPerLane: 128, stringBytes: 8192)

    init(_ scenario: String, _ extra: [String] = [], ring configuration: RingConfiguration = FixtureRun.smallRing,
         file: StaticString = #filePath, line: UInt = #line) throws {
        scratch = try ScratchSession()
        _ = try scratch.createRing(configuration)
        let host = try SpawnedProcess(executable: "dashboard-fixture-host", [scenario, scratch.ringPath] + extra)
        let output = try host.readToEnd(within: 30, file: file, line: line)
        let status = try host.wait(within: 30, file: file, line: line)
        let errors = try host.readErrors()
        XCTAssertEqual(status, .exited(0), "fixture host \(scenario): \(errors)", file: file, line: line)
        var processes: [String: ProcessKey] = [:]
        var notes: [String] = []
        for text in output.split(separator: "\n") {
            let words = text.split(separator: " ")
            if words.count == 3, let pid = Int32(words[1]), let start = UInt64(words[2]) {
                processes[String(words[0])] = ProcessKey(pid: pid, start: start)
            } else {
                notes.append(String(text))
            }
        }
        XCTAssertEqual(notes.last, "done", "fixture host \(scenario) did not finish: \(output)", file: file, line: line)
        self.processes = processes
        self.notes = notes
    }

    /// The ring read once, merged and folded.
    func fold(logCapacity: Int = 100_000) throws -> DashboardModel {
        try FixtureRun.fold(path: scratch.ringPath, logCapacity: logCapacity)
    }

    static func fold(path: String, mode: RingReader.Mode = .live, logCapacity: Int = 100_000) throws -> DashboardModel {
        let reader = try RingReader(path: path, mode: mode)
        var events: [Event] = []
        let accounting = try reader.readNew(into: &events)
        RingReader.merge(&events)
        var model = DashboardModel(origin: RingOrigin(reader.header), logCapacity: logCapacity)
        model.record(accounting)
        model.fold(events) { reader.string(at: $0) }
        return model
    }

    func key(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> ProcessKey {
        try XCTUnwrap(processes[name], "the fixture host announced no \(name): \(processes)", file: file, line: line)
    }
}

extension DashboardModel {
    /// The process with this key, failing the test when there is none.
    func require(_ key: ProcessKey, file: StaticString = #filePath, line: UInt = #line) throws -> ProcessModel {
        try XCTUnwrap(process(key), "no process \(key) in \(processes.map(\.key))", file: file, line: line)
    }

    /// Milliseconds after the ring's creation (the fixture host's unit).
    func at(_ milliseconds: Double) -> UInt64 { origin.monotonic + UInt64(milliseconds * 1_000_000) }
}

/// Test files next to this one (`References/…`), found from #filePath so no
/// resource bundle is needed.
enum TestFiles {
    static let directory: String = {
        var path = "\(#filePath)"
        for _ in 0..<2 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path
    }()

    static func reference(_ name: String) -> String { directory + "/References/" + name }

    static var recording: Bool { Environment.current["FORKSCOPE_RECORD_REFERENCES"] == "1" }

    static func read(_ path: String) throws -> String {
        String(decoding: try FileSystem.readFile(path), as: UTF8.self)
    }

    static func write(_ text: String, to path: String) throws {
        try? FileSystem.remove(path)
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644)
        defer { try? fd.close() }
        try fd.writeAll(text)
    }

    static func copy(_ source: String, to path: String) throws {
        let bytes = try FileSystem.readFile(source)
        try? FileSystem.remove(path)
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644)
        defer { try? fd.close() }
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try fd.writeAll(raw) } }.get()
    }
}
