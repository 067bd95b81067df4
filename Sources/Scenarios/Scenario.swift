import Dashboard
import DemoServer
import EventRing
import Glibc
import Posix
import Wire

/// One asserted invariant of a scenario, with the numbers it compared.
public struct CheckResult: Equatable, Sendable {
    public var name: String
    public var passed: Bool
    public var detail: String
}

/// What a scenario's script sees: the run, the narration line, the pauses
/// of `--step`, and the checks it records.
public final class ScenarioContext {
    public let run: ScenarioRun
    /// True when the scenario runs with its mechanism switched off (`--sabotage`): its checks must fail.
    public let sabotaged: Bool
    let narrate: (String) -> Void
    let pause: () -> Void
    public private(set) var checks: [CheckResult] = []
    /// Spans the server said its requests made.
    public var made = 0

    init(run: ScenarioRun, sabotaged: Bool, narrate: @escaping (String) -> Void, pause: @escaping () -> Void) {
        self.run = run
        self.sabotaged = sabotaged
        self.narrate = narrate
        self.pause = pause
    }

    /// Says what just happened and why, then (with `--step`) waits for a key.
    public func step(_ text: String) {
        narrate(text)
        pause()
    }

    public func check(_ name: String, _ passed: Bool, _ detail: String) {
        checks.append(CheckResult(name: name, passed: passed, detail: detail))
    }

    public func expectEqual<T: Equatable>(_ name: String, _ actual: T, _ expected: T) {
        check(name, actual == expected, "got \(actual), expected \(expected)")
    }

    // MARK: facts over the ring and the agent, for checks

    /// The ring's events (merged by time) and the folded model.
    public func observe() throws -> Observation {
        let (events, reader) = try run.events()
        var model = DashboardModel(origin: RingOrigin(reader.header))
        model.fold(events, strings: { reader.string(at: $0) })
        return Observation(events: events, model: model, lookup: { reader.string(at: $0) }, stats: try run.agentStats())
    }
}

/// The ring and the agent after (or during) a run.
public struct Observation {
    public let events: [Event]
    public let model: DashboardModel
    public let lookup: (UInt64) -> String?
    public let stats: JSONValue

    public func of(_ kind: EventKind) -> [Event] { events.filter { $0.kind == kind } }
    public func of(_ kind: EventKind, pid: pid_t) -> [Event] { events.filter { $0.kind == kind && $0.pid == pid } }
    /// Workers the master spawned (`worker.spawned`), in order.
    public var workers: [pid_t] { of(.workerSpawned).map { pid_t(truncatingIfNeeded: $0.a0) } }
    public func stat(_ key: String) -> Int { Int(stats[key]?.numberValue ?? -1) }
    /// Spans the agent counted from one process (`per_process` by pid).
    public func spansAtAgent(from pid: pid_t) -> Int { Int(stats["per_process"]?[String(pid)]?["unique"]?.numberValue ?? 0) }
    /// A worker's last published buffer depth (`writer.gauge` buffered).
    public func lastBuffered(_ pid: pid_t) -> Int { Int(of(.writerGauge, pid: pid).last?.a0 ?? 0) }
    public func hookStages(_ pid: pid_t) -> [ForkStage] { of(.hookRun, pid: pid).compactMap { ForkStage(rawValue: $0.a0) } }
    public func serverHooks(_ pid: pid_t) -> [String] { of(.serverHook, pid: pid).compactMap { lookup($0.a0) } }
    public var master: pid_t? { of(.workerSpawned).first?.pid }
}

/// A scripted scenario: the server it starts, what it does, what it asserts.
public struct Scenario: Sendable {
    public let name: String
    public let summary: String
    /// The mechanism shown, as the seed describes it.
    public let mechanism: String
    /// What `--sabotage` switches off (the check must then fail).
    public let sabotage: String
    let serve: @Sendable (_ sabotaged: Bool) -> [String]
    let script: @Sendable (ScenarioContext) throws -> Void
}

/// The outcome of one run.
public struct ScenarioOutcome {
    public let scenario: Scenario
    public let checks: [CheckResult]
    public let events: [Event]
    public let model: DashboardModel?
    public let lookup: (UInt64) -> String?
    public let error: String?
    public let milliseconds: UInt64
    public let sessionPath: String
    public var passed: Bool { error == nil && !checks.isEmpty && checks.allSatisfy(\.passed) }
}

public enum ScenarioRunner {
    /// Runs `scenario` to the end. `narrate` receives each narration line;
    /// `pause` is called after each (a key wait with `--step`); the session
    /// is removed unless `keepSession`.
    public static func run(_ scenario: Scenario, executable: String, sabotaged: Bool = false, keepSession: Bool = false,
                           recordTo: String? = nil,
                           narrate: @escaping (String) -> Void, pause: @escaping () -> Void = {}) -> ScenarioOutcome {
        let started = Clock.monotonicNanoseconds()
        let run: ScenarioRun
        do { run = try start(scenario, executable: executable, sabotaged: sabotaged) } catch {
            return ScenarioOutcome(scenario: scenario, checks: [], events: [], model: nil, lookup: { _ in nil }, error: "\(error)",
                                   milliseconds: (Clock.monotonicNanoseconds() - started) / 1_000_000, sessionPath: "")
        }
        return execute(scenario, on: run, sabotaged: sabotaged, keepSession: keepSession, recordTo: recordTo, started: started,
                       narrate: narrate, pause: pause)
    }

    /// Starts the scenario's agent and server (for a caller that shows the ring while the script runs).
    public static func start(_ scenario: Scenario, executable: String, sabotaged: Bool = false) throws -> ScenarioRun {
        try ScenarioRun(executable: executable, serveArguments: scenario.serve(sabotaged))
    }

    /// Runs the script on a started run, then ends it (and removes its session unless `keepSession`).
    public static func execute(_ scenario: Scenario, on run: ScenarioRun, sabotaged: Bool = false, keepSession: Bool = false,
                               recordTo: String? = nil, started: UInt64 = Clock.monotonicNanoseconds(),
                               narrate: @escaping (String) -> Void, pause: @escaping () -> Void = {}) -> ScenarioOutcome {
        func elapsed() -> UInt64 { (Clock.monotonicNanoseconds() - started) / 1_000_000 }
        defer {
            run.end()
            if !keepSession { run.removeSession() }
        }
        let context = ScenarioContext(run: run, sabotaged: sabotaged, narrate: narrate, pause: pause)
        var failure: String?
        do { try scenario.script(context) } catch { failure = "\(error)" }
        var events: [Event] = []
        var model: DashboardModel?
        var lookup: (UInt64) -> String? = { _ in nil }
        if let (all, reader) = try? run.events() {
            events = all
            var folded = DashboardModel(origin: RingOrigin(reader.header))
            folded.fold(all, strings: { reader.string(at: $0) })
            model = folded
            lookup = { reader.string(at: $0) }
            if let recordTo {
                let bytes = reader.copyBytes()
                let fd = try? FileDescriptor.open(recordTo, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode: 0o600)
                _ = try? fd?.writeAll(bytes)
                try? fd?.close()
            }
        }
        return ScenarioOutcome(scenario: scenario, checks: context.checks, events: events, model: model, lookup: lookup,
                               error: failure, milliseconds: elapsed(), sessionPath: run.session.path)
    }
}
