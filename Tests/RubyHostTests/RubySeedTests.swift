import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The first seed's own tests, in Ruby (bindings/ruby/test/seed_test.rb),
/// against a real `forkscope agent`, through the native extension built
/// for this run: a fork during a held send waits for it (policy drain),
/// the child sends and exits 0, the parent's transport still works; and
/// Thread#kill of a thread in a held send ends it promptly, re-raises the
/// interrupt (never an error response) and re-queues the spans.
final class RubySeedTests: XCTestCase {
    func testForkDrainsTheHeldSendAndThreadKillCancelsItRequeuesAndReraises() throws {
        let extensionDirectory = try RubyToolchain.extensionDirectory()
        let agent = try Agent()
        let environment = Environment.current.merging([
            "FORKSCOPE_AGENT_URL": agent.url,
            "RUBYLIB": RubyToolchain.rubyLib(extensionDirectory),
            "FORKSCOPE_FLUSH_INTERVAL_MS": "100",
        ]) { $1 }.map { "\($0.key)=\($0.value)" }.sorted()
        let ruby = try SpawnedProcess(path: RubyToolchain.ruby, [Repository.root + "/bindings/ruby/test/seed_test.rb", "--verbose"],
                                      environment: environment)
        let output = try ruby.readToEnd(within: 60)
        let errors = try ruby.readErrors(within: 5)
        XCTAssertEqual(try ruby.wait(within: 10), .exited(0), output + errors)
        XCTAssertTrue(output.contains("2 runs, ") && output.contains("0 failures, 0 errors, 0 skips"), output + errors)
        let figures = output.split(separator: "\n").filter { $0.contains("kill-to-death") || $0.contains("fork blocked") }
        XCTAssertEqual(figures.count, 2, output)
        for figure in figures { print("ruby seed: \(figure)") }
    }
}
