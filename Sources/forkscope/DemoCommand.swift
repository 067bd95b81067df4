import ArgumentParser
import Dashboard
import DemoServer
import EventRing
import ForkSafety
import Glibc
import Posix
import Terminal

/// The default command: a complete demo on embedded defaults. One session
/// (directory, ring, control socket, logs), the mock agent, the demo server
/// (2 workers, preload, fork hooks on, light load) and the dashboard
/// attached — nothing else to start, nothing left running after `q`.
///
/// This process runs the TUI and never forks: the agent and the server are
/// started with posix_spawn, tracked by (pid, start time), and ended on exit
/// (we are their child subreaper, so a daemon or an orphaned worker is ours
/// to end too).
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Start the demo on embedded defaults: agent, preforking server, dashboard (the default command)."
    )

    @Option(help: "Workers of the demo server.")
    var workers = 2

    @Option(help: "Startup order: unicorn, puma or gunicorn.")
    var profile: ServerProfile = .unicorn

    @Flag(inversion: .prefixedNo, help: "Load the app (create the exporter) in the master before forking.")
    var preload = true

    @Flag(inversion: .prefixedNo, help: "Fork workers through the at-fork hooks.")
    var forkHooks = true

    @Option(help: "Requests per second of background load.")
    var load = 5

    @Option(help: "What a fork does with a send in flight: drain, cancel or drain:MS.")
    var policy = "drain"

    @Flag(help: "No dashboard: run for --duration seconds, then print a per-process summary (also when stdout is not a terminal).")
    var headless = false

    @Option(help: "Seconds to run without a dashboard.")
    var duration = 5.0

    func validate() throws {
        guard SendPolicy(parsing: policy) != nil else { throw ValidationError("--policy must be drain, cancel or drain:MS (got \(policy))") }
        guard (1...16).contains(workers) else { throw ValidationError("--workers must be 1...16") }
    }

    func run() throws {
        let reaper = try DescendantReaper()
        let session = try SessionDirectory.create()
        let ring = try Ring.create(at: session.ringPath)
        ring.writer.publish(.processStart, UInt64(getppid()), ProcessRole.tool.rawValue, ring.writer.intern("forkscope (dashboard)"),
                            ProcessControl.startTime(of: getpid()) ?? 0)
        let executable = try ProcessControl.currentExecutablePath()
        let headless = self.headless || isatty(1) == 0

        func start(_ name: String, _ arguments: [String]) throws -> (ProcessKey, String) {
            let (read, write) = try FileDescriptor.pipe()
            defer { try? read.close() }
            let log = session.logPath(name)
            let spawn = Spawn(path: executable, arguments: ["forkscope"] + arguments, fileActions: [
                .nullDevice(as: .standardInput), .duplicate(write, as: .standardOutput), .appendingLog(log, as: .standardError),
            ])
            let key = try reaper.spawn(spawn)
            try write.close()
            // Its first line says where it listens; everything else goes to its log.
            var line: [UInt8] = []
            var byte: UInt8 = 0
            while line.last != 10 {
                guard try read.poll(for: Int16(POLLIN), deadline: Deadline(seconds: 15)) != 0,
                      try withUnsafeMutableBytes(of: &byte, { try read.read(into: $0) }) == 1 else {
                    _ = reaper.endAll()
                    Failure.exit("\(name) (pid \(key.pid)) did not start; see \(log)", code: 1)
                }
                line.append(byte)
            }
            return (key, String(decoding: line.dropLast().dropFirst("listening on ".count), as: UTF8.self))
        }

        let (_, agent) = try start("agent", ["agent", "--listen", "127.0.0.1:0", "--ring", session.ringPath])
        let (serverKey, server) = try start("serve", [
            "serve", "--profile", profile.rawValue, "--workers", String(workers), preload ? "--preload" : "--no-preload",
            forkHooks ? "--fork-hooks" : "--no-fork-hooks", "--agent-url", "http://\(agent)", "--policy", policy,
            "--ring", session.ringPath, "--session", session.path, "--load", String(load),
        ])
        let title = "forkscope demo — \(profile.rawValue), \(workers) workers, preload \(preload ? "on" : "off"), hooks \(forkHooks ? "on" : "off") — server \(server), agent \(agent)"

        if headless {
            let summary = try HeadlessSummary.run(ringPath: session.ringPath, title: title, duration: duration)
            stopServer(serverKey)
            let report = reaper.endAll()
            try? FileDescriptor.standardOutput.writeAll(summary)
            print("session \(session.path) (logs kept; `forkscope ls --clean` removes old sessions)")
            if !report.survivors.isEmpty { warn("could not end: \(report.survivors)") }
            return
        }
        var options = DashboardOptions(ringPath: session.ringPath, session: session, title: title)
        options.reaper = reaper
        options.narration = "Keys: f fork a worker through the hooks · u unsafe fork · c cancel a send · d agent delay · b burst · p policy · ? help · q quit"
        let dashboard = try TerminalDashboard(options: options, controller: SocketController(path: session.controlSocketPath))
        _ = try dashboard.run()
        stopServer(serverKey)
        _ = reaper.endAll()
    }

    /// QUIT the server first (graceful: workers flush), before the reaper
    /// ends whatever is left.
    private func stopServer(_ server: ProcessKey) {
        guard ProcessControl.isAlive(pid: server.pid, startTime: server.start) else { return }
        try? ProcessControl.send(SIGQUIT, to: server.pid)
        _ = try? ProcessControl.wait(for: server.pid, deadline: .after(milliseconds: 5_000))
    }
}

/// The forking half of the demo, in its own process.
struct DemoHost: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo-host", shouldDisplay: false)

    @Argument var ring: String
    @Argument var workers: Int

    func run() throws {
        let writer = try Ring.open(at: ring).writer
        writer.publish(.processStart, UInt64(getppid()), ProcessRole.master.rawValue, writer.intern("demo master"))
        var children: [(pid_t, Int)] = []
        for index in 0..<workers {
            let stage = writer.intern("demo fork")
            writer.publish(.forkBeforeStart, 0)
            let started = Clock.monotonicNanoseconds()
            let pid = fork()
            if pid == 0 {
                // The ring's pthread_atfork handler bumped the fork counter:
                // this first publish claims a fresh lane for the child.
                writer.publish(.forkChild, UInt64(getppid()), 1)
                writer.publish(.processStart, UInt64(getppid()), ProcessRole.worker.rawValue, writer.intern("demo worker \(index)"))
                writer.publish(.hookRun, ForkStage.child.rawValue, stage, Outcome.ok.rawValue, 0)
                writer.publish(.processExit, 0, 0)
                _exit(0)
            }
            guard pid > 0 else { throw SystemError("fork", .current) }
            writer.publish(.forkParent, UInt64(pid), (Clock.monotonicNanoseconds() - started) / 1000)
            writer.publish(.workerSpawned, UInt64(pid), UInt64(index))
            children.append((pid, index))
        }
        for (pid, index) in children {
            let status = try ProcessControl.wait(for: pid)?.status
            writer.publish(.workerExited, UInt64(pid), status?.exitArgument ?? 0, status?.signalArgument ?? 0, UInt64(index))
        }
        writer.publish(.processExit, 0, 0)
    }
}
