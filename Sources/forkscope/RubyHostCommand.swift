import ArgumentParser
import EventRing
import Glibc
import Posix

/// The options `forkscope host puma` and `forkscope host unicorn` share.
struct RubyHostOptions: ParsableArguments {
    @Flag(help: "Load the app in the master before forking the workers (Puma preload_app!, Unicorn preload_app true): the exporter and its flush thread exist before fork().")
    var preload = false

    @Option(help: "Worker processes.")
    var workers = 2

    @Option(help: "Where the server listens: HOST:PORT (port 0 picks a free one; the address is printed).")
    var listen = "127.0.0.1:0"

    @Flag(name: .customLong("no-fork-hooks"), help: "Do not install the binding's at_fork patch (Process._fork): the failure of the Sqreen post, then fork-counter recovery.")
    var noForkHooks = false

    @Flag(name: .customLong("no-fork-detection"), help: "Also turn off fork-counter detection: with --no-fork-hooks, workers keep a flush thread that does not exist and their spans pile up unsent.")
    var noForkDetection = false

    @Option(help: "The trace agent to send to; when omitted, `forkscope agent` is started on a free port.")
    var agentURL: String?

    @Option(help: "What a fork does with a send in flight: drain, cancel or drain:T.")
    var policy = "drain"

    @Option(help: "Exporter flush interval in milliseconds.")
    var flushIntervalMs: UInt64 = 1_000

    @Option(help: "Seconds a worker gets to finish and flush on stop.")
    var gracefulTimeout = 10

    @Option(help: "Publish into this existing ring instead of a new session's (logs go beside it).")
    var ring: String?

    @Option(help: "Create the new session under this directory instead of the default root.")
    var sessionRoot: String?

    @Option(help: "The directory holding the built extension forkscope_native.so (default: $FORKSCOPE_RUBY_EXT, else .build-ruby in the checkout).")
    var rubyExt: String?

    func validate() throws {
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1...64") }
        guard noForkHooks || !noForkDetection else {
            throw ValidationError("--no-fork-detection only matters with --no-fork-hooks (with hooks, every fork runs the stages)")
        }
        guard gracefulTimeout >= 0 else { throw ValidationError("--graceful-timeout must be ≥ 0") }
        guard (try? IPv4Address(parsing: listen)) != nil else { throw ValidationError("--listen \(listen) is not HOST:PORT (IPv4)") }
    }
}

/// `forkscope host puma`: examples/puma under Debian's Puma in cluster mode.
struct HostPuma: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "puma",
        abstract: "Run examples/puma under real Puma (cluster mode) against a new session's ring and an agent.",
        discussion: """
            Prints where everything is, then runs until SIGINT or SIGTERM: Puma gets SIGTERM (graceful: \
            workers finish, run on_worker_shutdown, which flushes, and exit), then the agent this command \
            started is stopped and every process left below this one is killed. Puma's hooks (before_fork, \
            on_worker_fork, after_worker_fork, on_worker_boot, on_worker_shutdown, on_refork) appear in the \
            ring by name. With --fork-worker, worker 0 forks the others; `kill -URG <master>` reforks them.
            """
    )

    @OptionGroup var options: RubyHostOptions

    @Option(help: "Puma's fork_worker: worker 0 forks the other workers; it reforks them after this many requests (0: only on SIGURG to the master).")
    var forkWorker: Int?

    @Option(help: "The puma executable (Debian's runs /usr/bin/ruby).")
    var puma = "/usr/bin/puma"

    func validate() throws {
        if let forkWorker, forkWorker < 0 { throw ValidationError("--fork-worker must be ≥ 0") }
    }

    func run() throws {
        var extra: [String: String] = [:]
        if let forkWorker { extra["FORKSCOPE_FORK_WORKER"] = String(forkWorker) }
        try RubyHost(server: "puma", executable: puma, options: options, stopSignal: SIGTERM,
                     arguments: { example in ["-C", example + "/puma.rb", example + "/config.ru"] },
                     extraEnvironment: extra, modeNote: forkWorker.map { "fork_worker \($0)" }).run()
    }
}

/// `forkscope host unicorn`: examples/unicorn under Debian's Unicorn.
struct HostUnicorn: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unicorn",
        abstract: "Run examples/unicorn under real Unicorn against a new session's ring and an agent.",
        discussion: """
            Prints where everything is, then runs until SIGINT or SIGTERM: Unicorn gets SIGQUIT (its \
            graceful stop: workers finish, flush in at_exit, and exit), then the agent this command \
            started is stopped and every process left below this one is killed. Unicorn's hooks \
            (before_fork, after_fork, after_worker_ready, after_worker_exit) appear in the ring by name.
            """
    )

    @OptionGroup var options: RubyHostOptions

    @Option(help: "The unicorn executable (Debian's runs /usr/bin/ruby).")
    var unicorn = "/usr/bin/unicorn"

    func run() throws {
        try RubyHost(server: "unicorn", executable: unicorn, options: options, stopSignal: SIGQUIT,
                     arguments: { example in ["-c", example + "/unicorn.conf.rb", example + "/config.ru"] },
                     extraEnvironment: [:], modeNote: nil).run()
    }
}

/// One run of a Ruby server that embeds the binding: session, agent,
/// server, the printed summary, the graceful stop. Like `host gunicorn`,
/// this process only spawns (posix_spawn) and watches.
struct RubyHost {
    let server: String
    let executable: String
    let options: RubyHostOptions
    let stopSignal: CInt
    let arguments: (String) -> [String]
    let extraEnvironment: [String: String]
    let modeNote: String?

    func run() throws {
        try ProcessControl.becomeChildSubreaper()
        try Signals.block([SIGINT, SIGTERM, SIGCHLD])

        let files = try RubyExampleFiles.locate(server: server, extensionDirectory: options.rubyExt)
        guard FileSystem.exists(executable) else {
            throw ValidationError("\(executable) not found: install Debian's \(server) (apt-get install ruby ruby-dev \(server))")
        }
        let session: SessionDirectory
        let ringPath: String
        if let ring = options.ring {
            ringPath = ring
            session = SessionDirectory(path: ExampleFiles.parent(ring).isEmpty ? "." : ExampleFiles.parent(ring))
        } else {
            session = try options.sessionRoot.map { try SessionDirectory.create(root: $0) } ?? SessionDirectory.create()
            ringPath = session.ringPath
            _ = try Ring.create(at: ringPath)
        }
        let writer = try Ring.open(at: ringPath).writer
        writer.publish(.processStart, UInt64(UInt32(bitPattern: getppid())), ProcessRole.host.rawValue, writer.intern("forkscope host \(server)"))

        var processes = HostedProcesses()
        processes.stopSignal = stopSignal
        processes.serverName = server
        defer { processes.endAll() }

        let agentURL: String
        if let given = options.agentURL {
            agentURL = given
        } else {
            let agent = try HostGunicorn.startAgent(executable: files.executable, ring: ringPath, log: session.logPath("agent"))
            processes.agent = agent.pid
            agentURL = "http://\(agent.address)"
        }

        let address = try Self.concreteAddress(options.listen)
        var environment = Environment.current
        environment["FORKSCOPE_RING"] = ringPath
        environment["FORKSCOPE_AGENT_URL"] = agentURL
        environment["FORKSCOPE_POLICY"] = options.policy
        environment["FORKSCOPE_FLUSH_INTERVAL_MS"] = String(options.flushIntervalMs)
        environment["FORKSCOPE_FORK_HOOKS"] = options.noForkHooks ? "0" : "1"
        environment["FORKSCOPE_DETECT_FORKS"] = options.noForkDetection ? "0" : "1"
        environment["FORKSCOPE_WORKERS"] = String(options.workers)
        environment["FORKSCOPE_PRELOAD"] = options.preload ? "1" : "0"
        environment["FORKSCOPE_LISTEN"] = address
        environment["FORKSCOPE_GRACEFUL_TIMEOUT"] = String(options.gracefulTimeout)
        environment["FORKSCOPE_SERVER"] = server
        environment["RUBYLIB"] = ([files.library, files.extensionDirectory] + (environment["RUBYLIB"].map { [$0] } ?? [])).joined(separator: ":")
        for (key, value) in extraEnvironment { environment[key] = value }
        let log = session.logPath(server)
        processes.server = try Spawn.run(
            executable, arguments: [executable] + arguments(files.example),
            environment: environment.map { "\($0.key)=\($0.value)" }.sorted(),
            fileActions: [.nullDevice(as: .standardInput), .appendingLog(log, as: .standardOutput),
                          .duplicate(.standardOutput, as: .standardError)],
            newProcessGroup: true
        )
        try processes.waitForListener(address, log: log, within: 30)
        let mode = [options.preload ? "preload" : "no preload", options.noForkHooks ? "fork hooks off" : "fork hooks on",
                    options.noForkHooks ? (options.noForkDetection ? "fork detection off" : "fork detection on") : nil,
                    modeNote].compactMap { $0 }
        let label = server.padding(toLength: 9)
        try say("""
            session   \(session.path)
            ring      \(ringPath)
            agent     \(agentURL)\(processes.agent.map { " (started, pid \($0), log \(session.logPath("agent")))" } ?? " (given)")
            \(label) http://\(address) (master pid \(processes.server ?? 0), \(options.workers) workers, \(mode.joined(separator: ", ")), log \(log))
            watch     forkscope attach \(ringPath)   (or: forkscope dump --follow \(ringPath))
            stop      Ctrl-C, or kill -TERM \(getpid())

            """)

        let status = processes.runUntilStopped()
        if let agent = processes.agent, let stats = AgentStats.fetch(agentURL) {
            try say("agent     counted \(stats)\n")
            processes.stop(agent, signal: SIGTERM, within: 3)
            processes.agent = nil
        }
        processes.endAll()
        writer.publish(.processExit, 0, 0)
        try say("stopped   \(server) \(status.map { "\($0)" } ?? "was killed")\n")
        if case .exited(let code)? = status, code != 0 { throw ExitCode(code) }
    }

    private func say(_ text: String) throws {
        try FileDescriptor.standardOutput.writeAll(text)
    }

    /// HOST:PORT with port 0 replaced by a port free right now (Unicorn
    /// cannot report the port it got): bound, read back, closed.
    static func concreteAddress(_ listen: String) throws -> String {
        let parsed = try IPv4Address(parsing: listen)
        guard parsed.port == 0 else { return listen }
        let socket = try Socket.open(.ipv4, flags: [.closeOnExec])
        defer { try? socket.close() }
        try socket.bind(to: .ipv4(parsed))
        return try socket.localAddress().description
    }
}

/// The files `forkscope host puma|unicorn` runs, found from this
/// executable or the working directory, like `ExampleFiles`.
struct RubyExampleFiles {
    let executable: String
    let library: String
    let example: String
    let extensionDirectory: String

    static func locate(server: String, extensionDirectory: String?) throws -> RubyExampleFiles {
        let executable = try ProcessControl.currentExecutablePath()
        var starts = [ExampleFiles.parent(executable)]
        if let cwd = try? FileSystem.readSymbolicLink("/proc/self/cwd") { starts.append(cwd) }
        for start in starts {
            var candidate = start
            while !candidate.isEmpty {
                if FileSystem.exists(candidate + "/examples/\(server)/config.ru"),
                   FileSystem.exists(candidate + "/bindings/ruby/lib/forkscope.rb") {
                    let directory = extensionDirectory ?? Environment.current["FORKSCOPE_RUBY_EXT"] ?? candidate + "/.build-ruby"
                    guard FileSystem.exists(directory + "/forkscope_native.so") else {
                        throw ValidationError("""
                            \(directory)/forkscope_native.so not found: build the extension with \
                            `mkdir -p .build-ruby && cd .build-ruby && ruby ../bindings/ruby/ext/forkscope_native/extconf.rb \
                            --with-forkscope-lib=../.build/debug && make`, or pass --ruby-ext DIR
                            """)
                    }
                    return RubyExampleFiles(executable: executable, library: candidate + "/bindings/ruby/lib",
                                            example: candidate + "/examples/\(server)", extensionDirectory: directory)
                }
                candidate = ExampleFiles.parent(candidate)
            }
        }
        throw ValidationError("examples/\(server) and bindings/ruby not found above \(starts[0]) or the working directory: run from the forkscope checkout")
    }
}

extension String {
    fileprivate func padding(toLength length: Int) -> String {
        count >= length ? self : self + String(repeating: " ", count: length - count)
    }
}
