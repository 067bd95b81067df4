import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// The agent lives by the fork path's rules (DESIGN.md): no Foundation,
/// Dispatch, Swift concurrency, NIO or Synchronization, and one thread.
final class AgentProcessRulesTests: XCTestCase {
    func testAgentServesEverythingFromOneThread() throws {
        let agent = try AgentProcess(["--hold"])
        let held = try agent.client()
        let traces = makeTraces(count: 1, perTrace: 1, firstID: 1)
        try held.send(HTTPRequest(method: "PUT", target: "/v0.4/traces", headers: tracerHeaders(traces), body: TraceAPIVersion.v04.encode(traces)))
        XCTAssertEqual(try agent.request("GET", "/control/wait-held?count=1&timeout_ms=5000").status, 200)
        XCTAssertEqual(try agent.stats()["held"], 1)
        let threads = try FileSystem.contents(ofDirectory: "/proc/\(agent.process.pid)/task")
        XCTAssertEqual(threads.count, 1, "threads: \(threads)")
    }

    func testAgentSourcesImportNothingOffTheForkPath() throws {
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<path.lastIndex(of: "/")!]) }
        let directory = path + "/Sources/Agent"
        let names = try FileSystem.contents(ofDirectory: directory).filter { $0.hasSuffix(".swift") }
        XCTAssertFalse(names.isEmpty)
        let forbiddenImports = ["Foundation", "Dispatch", "Synchronization", "_Concurrency"]
        for name in names {
            let text = String(decoding: try FileSystem.readFile(directory + "/" + name), as: UTF8.self)
            for (number, rawLine) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                // Code only: drop a line comment (the sources put no "//" inside strings).
                let scalars = Array(rawLine.utf8)
                let comment = scalars.indices.dropLast().first { scalars[$0] == UInt8(ascii: "/") && scalars[$0 + 1] == UInt8(ascii: "/") }
                let line = String(decoding: scalars[..<(comment ?? scalars.count)], as: UTF8.self)
                let words = line.split { !($0.isLetter || $0.isNumber || $0 == "_") }
                if words.first == "import", words.count > 1 {
                    XCTAssertFalse(forbiddenImports.contains(String(words[1])) || words[1].hasPrefix("NIO"), "\(name):\(number + 1): \(rawLine)")
                }
                for word in ["async", "await", "actor", "Task", "DispatchQueue", "Mutex"] where words.contains(Substring(word)) {
                    XCTFail("\(name):\(number + 1) uses \(word): \(rawLine)")
                }
            }
        }
    }
}
