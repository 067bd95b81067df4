import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// The Ruby binding's own tests (bindings/ruby/test), run by Debian's ruby
/// with minitest against a real `forkscope agent`, through the native
/// extension built for this run.
final class RubyBindingTests: XCTestCase {
    /// The first seed's tests: a fork during a held send waits for it
    /// (policy drain), the child sends and exits 0, the parent's transport
    /// still works; Thread#kill of a thread in a held send ends it
    /// promptly, re-raises the interrupt (never an error response) and
    /// re-queues the spans, delivered once the agent answers.
    func testSeedForkDrainsTheHeldSendAndThreadKillCancelsRequeuesAndReraises() throws {
        let output = try runMinitest("seed_test.rb", runs: 2)
        let figures = output.split(separator: "\n").filter { $0.contains("kill-to-death") || $0.contains("fork blocked") }
        XCTAssertEqual(figures.count, 2, output)
        for figure in figures { print("ruby seed: \(figure)") }
    }

    /// AtFork stages around Process.fork (with and without a block) and
    /// Process.daemon, handles and removal, the cheap :before, Transport
    /// close and the finalizer that captures only hook handles.
    func testAtForkPatchAndTransportLifecycle() throws {
        _ = try runMinitest("at_fork_test.rb", runs: 7)
    }

    private func runMinitest(_ file: String, runs: Int, line: UInt = #line) throws -> String {
        let extensionDirectory = try RubyToolchain.extensionDirectory()
        let agent = try Agent()
        let environment = Environment.current.merging([
            "FORKSCOPE_AGENT_URL": agent.url,
            "RUBYLIB": RubyToolchain.rubyLib(extensionDirectory),
            "FORKSCOPE_FLUSH_INTERVAL_MS": "100",
        ]) { $1 }.map { "\($0.key)=\($0.value)" }.sorted()
        let ruby = try SpawnedProcess(path: RubyToolchain.ruby, [Repository.root + "/bindings/ruby/test/" + file, "--verbose"],
                                      environment: environment)
        let output = try ruby.readToEnd(within: 60)
        let errors = try ruby.readErrors(within: 5)
        XCTAssertEqual(try ruby.wait(within: 10), .exited(0), output + errors, line: line)
        XCTAssertTrue(output.contains("\(runs) runs, ") && output.contains(" 0 failures, 0 errors, 0 skips"), output + errors, line: line)
        return output
    }
}
