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
        if !check && !sequence && isatty(1) != 0 {
            try runInDashboard(scenario, executable: executable, reaper: reaper)
            return
        }
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

    /// On a terminal: the dashboard on the scenario's ring, the script on
    /// its own thread narrating into the dashboard's narration line (a step
    /// every 3 s: the dashboard owns the keys, so --step applies to the
    /// text mode only). The control keys work as in the demo.
    private func runInDashboard(_ scenario: Scenario, executable: String, reaper: DescendantReaper) throws {
        let run = try ScenarioRunner.start(scenario, executable: executable, sabotaged: sabotage)
        var options = DashboardOptions(ringPath: run.session.ringPath, session: run.session, title: "scenario \(scenario.name) — \(scenario.summary)")
        options.reaper = reaper
        options.narration = "\(scenario.name): starting — \(scenario.mechanism)"
        let dashboard = try TerminalDashboard(options: options, controller: SocketController(path: run.session.controlSocketPath))
        let sabotaged = sabotage, record = self.record
        let script = ScriptThread {
            let outcome = ScenarioRunner.execute(
                scenario, on: run, sabotaged: sabotaged, keepSession: true, recordTo: record,
                narrate: { dashboard.setNarration($0) },
                pause: { var none: [pollfd] = []; _ = try? poll(&none, timeoutMilliseconds: 3_000) }
            )
            let failed = outcome.checks.filter { !$0.passed }.map(\.name)
            dashboard.setNarration("\(outcome.passed ? "PASS" : "FAIL") \(scenario.name)"
                + (failed.isEmpty ? "" : ": " + failed.joined(separator: "; ")) + (outcome.error.map { " — \($0)" } ?? "") + " · q quits")
            return outcome
        }
        try script.start()
        try dashboard.run()
        // Quitting early ends the processes (the reaper), so the script's next wait fails at once.
        if let outcome = script.join() {
            print("\(outcome.passed ? "PASS" : "FAIL") \(scenario.name) in \(outcome.milliseconds) ms" + (keep ? " (session \(outcome.sessionPath))" : ""))
        }
        if !keep { run.removeSession() }
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

/// The scenario's script on a POSIX thread while the dashboard owns the
/// main thread (this process never forks, so a thread here is safe).
final class ScriptThread: @unchecked Sendable {
    private let body: () -> ScenarioOutcome
    private var outcome: ScenarioOutcome?
    private var thread: pthread_t?

    init(_ body: @escaping () -> ScenarioOutcome) { self.body = body }

    func start() throws {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(self).toOpaque()
        let result = pthread_create(&thread, nil, scriptThreadMain, context)
        guard result == 0 else {
            Unmanaged<ScriptThread>.fromOpaque(context).release()
            throw SystemError("pthread_create", Errno(rawValue: result))
        }
        self.thread = thread
    }

    /// Waits for the script (its waits all have deadlines) and returns its outcome.
    func join() -> ScenarioOutcome? {
        guard let thread else { return nil }
        pthread_join(thread, nil)
        self.thread = nil
        return outcome
    }

    fileprivate func main() { outcome = body() }
}

/// A thread entry point must not be actor-isolated (DESIGN.md, Swift 6 isolation).
private nonisolated func scriptThreadMain(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let context else { return nil }
    let script = Unmanaged<ScriptThread>.fromOpaque(context).takeRetainedValue()
    script.main()
    return nil
}
