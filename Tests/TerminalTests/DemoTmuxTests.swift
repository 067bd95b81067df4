import Foundation
import Glibc
import Posix
import TestSupport
import TraceTransport
import XCTest

/// The whole product as a user meets it: `forkscope` with no arguments, in
/// tmux. Every step polls the pane with a deadline.
final class DemoTmuxTests: XCTestCase {
    let forkscope = SpawnedProcess.builtExecutable("forkscope")

    /// Replaces the log filter (the prompt starts with the current one).
    func filter(_ tmux: TmuxSession, _ text: String) throws {
        try tmux.send("\\")
        try tmux.wait(for: "\\ filter")
        for _ in 0..<40 { try tmux.send("BSpace") }
        try tmux.send(text, literal: true)
        try tmux.send("Enter")
    }

    /// Lines of the event log shown now.
    func logLines(_ pane: String) -> [Substring] { pane.split(separator: "\n").filter { $0.contains("│ +") || $0.hasPrefix(" +") } }

    func testTheDemoForksCancelsAndLeavesNothingRunning() throws {
        let scratch = try ScratchSession()
        // Sessions go under the scratch directory, so this test sees only its own.
        let tmux = try TmuxSession(
            "env -u NO_COLOR LANG=C.UTF-8 LC_ALL= TERM=screen-256color XDG_RUNTIME_DIR=\(shellQuoted(scratch.root)) \(shellQuoted(forkscope)) --load 10",
            statusDirectory: scratch.root, width: 160, height: 45)
        defer { tmux.close() }

        // Two worker rows.
        let first = try tmux.wait(forAll: ["unicorn master", "unicorn worker 0", "unicorn worker 1"], within: 30)
        let agent = try XCTUnwrap(first.split(separator: "\n").first.flatMap { title -> String? in
            guard let range = title.range(of: "agent ") else { return nil }
            return String(title[range.upperBound...].prefix { $0 != " " })
        }, "the title names the agent's address")

        // f: a third worker, forked through the hooks: before, parent, child.
        try tmux.send("f")
        try tmux.wait(for: "unicorn worker 2", within: 20)
        try filter(tmux, "fork.")
        try tmux.wait(forAll: ["fork.before.start", "fork.before.end", "fork.parent", "fork.child"])
        try filter(tmux, "hook.run")
        try tmux.wait(forAll: ["stage=before", "stage=parent", "stage=child"])

        // d: the agent answers each send after 1.5 s, so sends stay in flight.
        try tmux.send("d")
        try tmux.wait(for: "delay")
        for _ in 0..<10 { try tmux.send("BSpace") }
        try tmux.send("1500", literal: true)
        try tmux.send("Enter")
        try tmux.wait(for: "agent delay 1500 ms")

        // Select worker 0 (rows: dashboard, agent, master, worker 0…) and
        // press c while its send is held: it is cancelled by the operator.
        for _ in 0..<3 { try tmux.send("Down") }
        try tmux.wait(for: "worker 0 selected") { pane in
            pane.split(separator: "\n").contains { $0.hasPrefix("─ ") && $0.contains("unicorn worker 0") }
        }
        try filter(tmux, "send.")
        func showsOperatorCancel(_ pane: String) -> Bool {
            logLines(pane).contains { $0.contains("send.cancel") && $0.contains("reason=operator") }
        }
        // A send may not be in flight at the instant of the key: try again.
        var cancelled = false
        for _ in 0..<10 where !cancelled {
            try tmux.send("c")
            let deadline = Deadline(seconds: 3)
            while !cancelled && !deadline.hasPassed {
                cancelled = showsOperatorCancel(try tmux.capture())
                var none: [pollfd] = []
                _ = try poll(&none, timeoutMilliseconds: 50)
            }
        }
        let last = try tmux.capture()
        XCTAssertTrue(cancelled, "no send was cancelled by the operator:\n\(last)")

        // The cancelled payload is re-sent: the agent counts it twice (it had
        // read it before the cancel). Remove the delay so it goes quickly.
        try tmux.send("d")
        try tmux.wait(for: "delay")
        for _ in 0..<10 { try tmux.send("BSpace") }
        try tmux.send("0", literal: true)
        try tmux.send("Enter")
        let endpoint = try AgentEndpoint(parsing: "http://" + agent)
        let resent = Deadline(seconds: 30)
        while true {
            let body = try AgentConnection.request("GET", "/stats", to: endpoint).get().body
            let stats = try JSONSerialization.jsonObject(with: Data(body)) as? [String: Any] ?? [:]
            if (stats["duplicate_spans"] as? Int ?? 0) > 0 { break }
            if resent.hasPassed { return XCTFail("the cancelled payload was not re-sent: \(stats)") }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 100)
        }

        // q: the demo ends, and so does every process it started.
        try tmux.send("q")
        XCTAssertEqual(try tmux.waitForExit(within: 30), 0)
        func leftovers() throws -> [pid_t] {
            // forkscope processes (agent, server, workers, load) of this
            // session: their arguments name its directory. (The shell tmux
            // runs the command in names it too; it is not the demo's.)
            try FileSystem.contents(ofDirectory: "/proc").compactMap { pid_t($0) }.filter { pid in
                guard let bytes = try? FileSystem.readFile("/proc/\(pid)/cmdline", limit: 1 << 16) else { return false }
                let arguments = bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                return arguments.first?.hasSuffix("forkscope") == true && arguments.contains { $0.contains(scratch.root) }
            }
        }
        // A process the demo killed may take a moment to leave /proc.
        let gone = Deadline(seconds: 10)
        var left = try leftovers()
        while !left.isEmpty && !gone.hasPassed {
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 50)
            left = try leftovers()
        }
        XCTAssertEqual(left, [], "processes of the demo still running")
    }
}
