import Glibc
import Posix
import TestSupport
import XCTest

/// The Python binding's own unit tests (bindings/python/tests), run with
/// the interpreter Debian's gunicorn uses, /usr/bin/python3, against the
/// built library and a real agent.
final class PythonBindingTests: XCTestCase {
    func testBindingUnitTestsPassUnderDebianPython() throws {
        let scratch = try ScratchSession()
        let agent = try MockAgent.start()
        let python = try SpawnedProcess(path: "/usr/bin/python3", [
            "-B", "-m", "unittest", "discover", "-v", "-s", RepositoryFile.root + "/bindings/python/tests",
        ], environment: [
            "PATH=/usr/bin:/bin",
            "FORKSCOPE_LIB=" + SpawnedProcess.builtExecutable("libforkscope-c.so"),
            "FORKSCOPE_TEST_AGENT=" + agent.url,
            "FORKSCOPE_TEST_DIR=" + scratch.session.path,
            "FORKSCOPE_FLUSH_INTERVAL_MS=100",
        ])
        let report = try python.readErrors(within: 60)
        XCTAssertEqual(try python.wait(within: 10), .exited(0), report)
        XCTAssertTrue(report.contains("\nOK"), report)
    }
}
