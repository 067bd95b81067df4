import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix
import Scenarios
import Terminal

/// `forkscope scenario`: scripted runs of the demo server that teach the
/// startup sequence. This process never forks: the agent and the server are
/// spawned, and a DescendantReaper ends whatever is left on exit.
struct ScenarioCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scenario",
        abstract: "Run a guided scenario (`forkscope scenario list`), narrated; --check asserts its invariants.",
        discussion: "Each scenario starts an agent and the demo server in a scratch session, drives it, narrates, and with --check exits 1 when an invariant fails."
    )

    @Argument(help: "A scenario name, or `list`.")
    var name: String

    @Flag(help: "Headless: print pass/fail per invariant, exit non-zero on failure.")
    var check = false

    @Flag(help: "Wait for Enter after each narration line.")
    var step = false

    @Flag(help: "Print the run as a sequence diagram (one column per process).")
    var sequence = false

    @Option(help: "With --sequence: also run this scenario and print both diagrams side by side.")
    var beside: String?

    @Flag(help: "Run with the scenario's mechanism switched off (its check must then fail).")
    var sabotage = false

    @Option(help: "Save the run's ring to this file (for attach, dump, export).")
    var record: String?

    @Flag(help: "Keep the session directory (logs) after the run.")
    var keep = false

    func run() throws {
        if name == "list" {
            for scenario in ScenarioCatalog.all {
                print("\(scenario.name.padding(23))\(scenario.summary)")
            }
            return
        }
        guard let scenario = ScenarioCatalog.named(name) else {
            throw ValidationError("no scenario \(quoted(name)); `forkscope scenario list` shows them")
        }
        let other = try beside.map { name -> Scenario in
            guard let other = ScenarioCatalog.named(name) else { throw ValidationError("no scenario \(quoted(name)) for --beside") }
            return other
        }
        let reaper = try DescendantReaper()
        let executable = try ProcessControl.currentExecutablePath()
        print("scenario \(scenario.name): \(scenario.summary)")
        print("  mechanism: \(scenario.mechanism)")
        if sabotage { print("  sabotaged: \(scenario.sabotage)") }
        let stepping = step
        let outcome = ScenarioRunner.run(
            scenario, executable: executable, sabotaged: sabotage, keepSession: keep, recordTo: record,
            narrate: { print("  → \($0)") },
            pause: { if stepping { ScenarioCommand.waitForEnter() } }
        )
        _ = reaper.endAll()
        if sequence, let model = outcome.model {
            let diagram = SequenceDiagram.render(events: outcome.events, model: model, lookup: outcome.lookup)
            print("")
            if let other {
                print("  (running \(other.name) for the right-hand side)")
                let second = ScenarioRunner.run(other, executable: executable, narrate: { _ in })
                _ = reaper.endAll()
                let right = second.model.map { SequenceDiagram.render(events: second.events, model: $0, lookup: second.lookup) }
                    ?? "(\(other.name) did not run: \(second.error ?? "?"))"
                print(SequenceDiagram.sideBySide(diagram, right, titles: (scenario.name, other.name)))
            } else {
                print(diagram)
            }
        }
        if let error = outcome.error { print("  run failed: \(error)") }
        if check || !outcome.passed {
            for result in outcome.checks {
                print("  \(result.passed ? "PASS" : "FAIL") \(result.name): \(result.detail)")
            }
        }
        print("\(outcome.passed ? "PASS" : "FAIL") \(scenario.name) in \(outcome.milliseconds) ms" + (keep ? " (session \(outcome.sessionPath))" : ""))
        if check && !outcome.passed { throw ExitCode(1) }
    }

    /// Enter on stdin, or 5 minutes (every wait has a deadline); EOF continues at once.
    static func waitForEnter() {
        print("    [Enter] next step", terminator: "")
        fflush(nil)
        var byte: UInt8 = 0
        let deadline = Deadline.after(milliseconds: 300_000)
        while (try? FileDescriptor.standardInput.poll(for: Int16(POLLIN), deadline: deadline)) ?? 0 != 0 {
            guard (try? withUnsafeMutableBytes(of: &byte, { try FileDescriptor.standardInput.read(into: $0) })) == 1, byte != 10 else { break }
        }
        print("")
    }
}

private extension String {
    func padding(_ width: Int) -> String { count >= width ? self + " " : self + String(repeating: " ", count: width - count) }
}
