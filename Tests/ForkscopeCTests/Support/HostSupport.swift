import Posix
import TestSupport
import Wire
import XCTest

/// `HTTP.request` under the name the ABI tests' `MockAgent` uses.
enum HTTPClient {
    static func get(_ address: String, _ path: String, within seconds: Double = 5) throws -> [UInt8] {
        try HTTP.request(address, path, within: seconds)
    }
}

/// The mock agent's `GET /stats`: totals and spans per `process_id`.
struct AgentStatsDocument {
    let spans: Int
    let unique: Int
    let duplicates: Int
    /// pid → (spans, unique)
    let perProcess: [Int32: (spans: Int, unique: Int)]

    init(_ body: [UInt8]) throws {
        let document = try JSONValue(parsing: body)
        spans = Int(document["spans"]?.numberValue ?? -1)
        unique = Int(document["unique_spans"]?.numberValue ?? -1)
        duplicates = Int(document["duplicate_spans"]?.numberValue ?? -1)
        var perProcess: [Int32: (spans: Int, unique: Int)] = [:]
        for (pid, tally) in document["per_process"]?.objectValue ?? [:] {
            perProcess[Int32(pid) ?? -1] = (Int(tally["spans"]?.numberValue ?? -1), Int(tally["unique"]?.numberValue ?? -1))
        }
        self.perProcess = perProcess
    }
}

/// `forkscope host gunicorn` started by a test.
final class GunicornHost: ServerHost {
    init(preload: Bool, agent: MockAgent, arguments: [String] = [], workers: Int = 2, gracefulTimeout: Int = 5,
         file: StaticString = #filePath, line: UInt = #line) throws {
        guard FileSystem.exists("/usr/bin/gunicorn") else {
            XCTFail("/usr/bin/gunicorn is missing: .ci/test installs Debian's gunicorn (apt-get install gunicorn)", file: file, line: line)
            throw SystemError("gunicorn", path: "/usr/bin/gunicorn", .noSuchFileOrDirectory)
        }
        try super.init("gunicorn", bootHook: "post_worker_init", preload: preload, agentURL: agent.url, arguments: arguments, workers: workers,
                       gracefulTimeout: gracefulTimeout, startup: 30, file: file, line: line)
    }
}
