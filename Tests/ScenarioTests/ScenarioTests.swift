import Dashboard
import EventRing
import Glibc
import Posix
import Scenarios
import TestSupport
import XCTest

/// Every scenario passes its check against the real demo server, and fails
/// it when its mechanism is switched off (`--sabotage`).
final class ScenarioTests: XCTestCase {
    let executable = SpawnedProcess.builtExecutable("forkscope")

    /// No way to break these from outside the server (see each scenario's `sabotage`).
    static let cannotBeSabotaged: Set<String> = ["daemonize"]
    /// fork-failure makes fork() fail through a cgroup-v1 pids limit: root and a writable pids hierarchy.
    static let pidsCgroupWritable = access("/sys/fs/cgroup/pids/cgroup.procs", W_OK) == 0
    static var notAvailable: Set<String> { pidsCgroupWritable ? [] : ["fork-failure"] }

    func run(_ name: String, sabotaged: Bool = false) throws -> ScenarioOutcome {
        let scenario = try XCTUnwrap(ScenarioCatalog.named(name), name)
        var narration: [String] = []
        let outcome = ScenarioRunner.run(scenario, executable: executable, sabotaged: sabotaged, narrate: { narration.append($0) })
        XCTAssertFalse(narration.isEmpty, "\(name) narrates")
        return outcome
    }

    func describe(_ outcome: ScenarioOutcome) -> String {
        let checks: [String] = outcome.checks.map { "\($0.passed ? "PASS" : "FAIL") \($0.name): \($0.detail)" }
        return ((outcome.error.map { ["run failed: \($0)"] } ?? []) + checks).joined(separator: "\n")
    }

    func testEveryScenarioPassesItsCheckWithinFiveSeconds() throws {
        for scenario in ScenarioCatalog.all where !Self.notAvailable.contains(scenario.name) {
            let outcome = try run(scenario.name)
            XCTAssertTrue(outcome.passed, "\(scenario.name):\n\(describe(outcome))")
            XCTAssertLessThan(outcome.milliseconds, 5_000, scenario.name)
        }
    }

    func testEveryCheckFailsWhenItsMechanismIsBroken() throws {
        for scenario in ScenarioCatalog.all where !Self.cannotBeSabotaged.contains(scenario.name) && !Self.notAvailable.contains(scenario.name) {
            let outcome = try run(scenario.name, sabotaged: true)
            XCTAssertNil(outcome.error, "\(scenario.name): the sabotaged run itself completes")
            XCTAssertFalse(outcome.passed, "\(scenario.name) with \(scenario.sabotage):\n\(describe(outcome))")
        }
    }

    func testPreloadWithHooksRunWithHooksDisabledFailsOnTheSpanCount() throws {
        let outcome = try run("preload-with-hooks", sabotaged: true)
        let failed = outcome.checks.filter { !$0.passed }.map(\.name)
        XCTAssertTrue(failed.contains("unique spans at the agent = accepted"), "\(failed)")
    }

    func testForkFailurePublishesEAGAINAndTheNextForkSucceeds() throws {
        try XCTSkipUnless(Self.pidsCgroupWritable, "needs root and a writable /sys/fs/cgroup/pids")
        let outcome = try run("fork-failure")
        XCTAssertTrue(outcome.passed, describe(outcome))
        let failed = outcome.events.filter { $0.kind == .forkFailed }
        XCTAssertFalse(failed.isEmpty)
        XCTAssertTrue(failed.allSatisfy { $0.a0 == UInt64(EAGAIN) && $0.a1 == ForkStage.parent.rawValue })
        let left = try FileSystem.contents(ofDirectory: "/sys/fs/cgroup/pids").filter { $0.hasPrefix("forkscope-") }
        XCTAssertEqual(left, [], "the pids cgroup is removed")
    }

    func testScenarioNamesAreUniqueAndListed() {
        let names = ScenarioCatalog.all.map(\.name)
        XCTAssertEqual(Set(names).count, names.count)
        for required in ["preload-without-hooks", "preload-with-hooks", "no-preload", "fork-during-send", "cancel-in-flight", "drain-timeout",
                         "daemonize", "refork", "pid-detection", "close-deregisters", "fork-failure", "agent-outage"] {
            XCTAssertTrue(names.contains(required), required)
        }
    }

    /// The sequence diagram shows the master's hooks by their real names and a fork arrow into each worker's column.
    func testSequenceDiagramHasAColumnPerProcessAndForkArrows() throws {
        let outcome = try run("preload-with-hooks")
        let model = try XCTUnwrap(outcome.model)
        let diagram = SequenceDiagram.render(events: outcome.events, model: model, lookup: outcome.lookup)
        let lines = diagram.split(separator: "\n").map(String.init)
        XCTAssertTrue(lines[0].contains("unicorn master") && lines[0].contains("unicorn worker 0") && lines[0].contains("unicorn worker 1"), lines[0])
        XCTAssertEqual(lines.filter { $0.contains("fork →") && $0.contains("▶") }.count, 2, diagram)
        XCTAssertTrue(diagram.contains("before_fork") && diagram.contains("after_fork"), diagram)
        XCTAssertTrue(diagram.contains("child: transport"), diagram)
        let side = SequenceDiagram.sideBySide(diagram, diagram, titles: ("left", "right"))
        XCTAssertTrue(side.hasPrefix("left") && side.split(separator: "\n")[0].hasSuffix("┃ right"), side)
        XCTAssertEqual(side.split(separator: "\n").count, lines.count + 2)
        let ascii = SequenceDiagram.render(events: outcome.events, model: model, lookup: outcome.lookup, ascii: true)
        XCTAssertTrue(ascii.unicodeScalars.allSatisfy { $0.isASCII }, ascii)
    }

    /// Without hooks the master's forks are still arrows, labelled as the raw fork() the exporter never saw.
    func testSequenceDiagramShowsARawForkWithoutHooks() throws {
        let outcome = try run("preload-without-hooks")
        let diagram = SequenceDiagram.render(events: outcome.events, model: try XCTUnwrap(outcome.model), lookup: outcome.lookup)
        XCTAssertEqual(diagram.split(separator: "\n").filter { $0.contains("raw fork() →") && $0.contains("▶") }.count, 2, diagram)
        XCTAssertFalse(diagram.contains("fork: child"), diagram)
    }

    /// --step waits for Enter after each narration line; the end of input stops the waiting.
    func testStepWaitsForEnterBetweenNarrationLines() throws {
        let process = try SpawnedProcess(executable: "forkscope", ["scenario", "preload-with-hooks", "--step", "--check"])
        let first = try process.readLine(within: 10)
        XCTAssertTrue(first.hasPrefix("scenario preload-with-hooks"), first)
        XCTAssertTrue(try process.readLine(within: 10).contains("mechanism"))
        XCTAssertTrue(try process.readLine(within: 10).hasPrefix("  → "), "the first narration line")
        try process.send("\n")
        try process.closeInput()
        let rest = try process.readToEnd(within: 20)
        XCTAssertEqual(try process.wait(within: 20), .exited(0), rest)
        XCTAssertEqual(rest.components(separatedBy: "[Enter] next step").count - 1, 3, "a prompt after each of the 3 lines: \(rest)")
        XCTAssertTrue(rest.contains("PASS preload-with-hooks"), rest)
    }

    func testListNamesEveryScenario() throws {
        let process = try SpawnedProcess(executable: "forkscope", ["scenario", "list"])
        try process.closeInput()
        let text = try process.readToEnd(within: 10)
        XCTAssertEqual(try process.wait(within: 10), .exited(0))
        XCTAssertEqual(text.split(separator: "\n").map { String($0.split(separator: " ")[0]) }, ScenarioCatalog.all.map(\.name))
    }

    /// The CLI: exit status 0 on pass, 1 on a failed check.
    func testCheckExitsNonZeroOnFailure() throws {
        let pass = try SpawnedProcess(executable: "forkscope", ["scenario", "no-preload", "--check"])
        try pass.closeInput()
        let text = try pass.readToEnd(within: 20)
        XCTAssertEqual(try pass.wait(within: 20), .exited(0), text)
        XCTAssertTrue(text.contains("PASS no-preload"), text)
        let fail = try SpawnedProcess(executable: "forkscope", ["scenario", "no-preload", "--check", "--sabotage"])
        try fail.closeInput()
        let failed = try fail.readToEnd(within: 20)
        XCTAssertEqual(try fail.wait(within: 20), .exited(1), failed)
        XCTAssertTrue(failed.contains("FAIL no-preload"), failed)
    }
}
