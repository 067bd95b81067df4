import Glibc
import Posix
import TestSupport
import XCTest

/// `forkscope bench fork`, run as a user would: the built binary, spawned
/// (it forks itself; the test process never does). Tests run a debug build.
final class ForkBenchCommandTests: XCTestCase {
    func testBenchForkRefusesADebugBuildWithoutAllowDebug() throws {
        let bench = try SpawnedProcess(executable: "forkscope", ["bench", "fork"])
        let errors = try bench.readErrors()
        XCTAssertEqual(try bench.readToEnd(), "")
        XCTAssertEqual(try bench.wait(), .exited(2), errors)
        XCTAssertTrue(errors.contains("debug build") && errors.contains("--allow-debug"), errors)
    }

    func testBenchForkPrintsEveryRowAndOneJSONLine() throws {
        let bench = try SpawnedProcess(executable: "forkscope", ["bench", "fork", "--allow-debug", "--iterations", "3", "--wakes", "5", "--heap-mib", "1"])
        let output = try bench.readToEnd(within: 30)
        XCTAssertEqual(try bench.wait(within: 30), .exited(0), output)
        let lines = output.split(separator: "\n").map(String.init)
        for row in ["fork() + waitpid, bare", "Fork.fork() + waitpid, no runtime", "Fork.fork() + waitpid, idle runtime",
                    "Fork.fork() + waitpid, busy runtime", "cancel → blocked waiter returns", "idle runtime, stage by stage", "reference for the before stage", "targets:"] {
            XCTAssertTrue(lines.contains { $0.hasPrefix(row) }, "no \(row) row:\n\(output)")
        }
        let json = lines.filter { $0.hasPrefix("{") }
        XCTAssertEqual(json.count, 1, output)
        for key in ["\"bench\":\"fork\"", "\"idle_stage_p50_us\":", "\"bare_p50_us\":", "\"idle_p99_us\":", "\"busy_p50_us\":", "\"hooks_added_p50_us\":", "\"hooks_added_paired_p50_us\":", "\"join_reference_p50_us\":", "\"cancel_wake_p99_us\":"] {
            XCTAssertTrue(json.first?.contains(key) == true, "\(key) missing: \(json)")
        }
    }
}
