import ArgumentParser
import EventRing
import Glibc
import Posix
import Wire

/// `forkscope host SERVER`: runs a real server that embeds libforkscope
/// against a session's ring (and an agent), so `forkscope attach` or
/// `forkscope dump` shows it. This process only spawns (posix_spawn) and
/// watches: it is TUI-side and never forks.
struct Host: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a real preforking server that embeds libforkscope, against a session.",
        subcommands: [HostGunicorn.self, HostPuma.self, HostUnicorn.self]
    )
}

/// The options every `forkscope host SERVER` takes. `Help` words the few
/// whose meaning is the server's own (its preload, its at-fork mechanism).
struct HostOptions<Help: HostOptionsHelp>: ParsableArguments {
    @Flag(help: ArgumentHelp(Help.preload))
    var preload = false

    @Option(help: "Worker processes.")
    var workers = 2

    @Option(help: ArgumentHelp(Help.listen))
    var listen = "127.0.0.1:0"

    @Flag(name: .customLong("no-fork-hooks"), help: ArgumentHelp(Help.noForkHooks))
    var noForkHooks = false

    @Flag(name: .customLong("no-fork-detection"), help: "Also turn off fork-counter detection: with --no-fork-hooks, workers keep a flush thread that does not exist and their spans pile up unsent.")
    var noForkDetection = false

    @Option(help: "The trace agent to send to; when omitted, `forkscope agent` is started on a free port.")
    var agentURL: String?

    @Option(help: "What a fork does with a send in flight: drain, cancel or drain:T.")
    var policy = "drain"

    @Option(help: "Exporter flush interval in milliseconds.")
    var flushIntervalMs: UInt64 = 1_000

    @Option(help: ArgumentHelp(Help.gracefulTimeout))
    var gracefulTimeout = 10

    @Option(help: "Publish into this existing ring instead of a new session's (logs go beside it).")
    var ring: String?

    @Option(help: "Create the new session under this directory instead of the default root.")
    var sessionRoot: String?

    func validate() throws {
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1...64") }
        guard noForkHooks || !noForkDetection else {
            throw ValidationError("--no-fork-detection only matters with --no-fork-hooks (with hooks, every fork runs the stages)")
        }
        guard gracefulTimeout >= 0 else { throw ValidationError("--graceful-timeout must be ≥ 0") }
    }
}

/// The help of the `HostOptions` whose meaning depends on the server.
protocol HostOptionsHelp {
    static var preload: String { get }
    static var listen: String { get }
    static var noForkHooks: String { get }
    static var gracefulTimeout: String { get }
}

/// `forkscope host gunicorn`: the example WSGI app (examples/gunicorn)
/// under Debian's gunicorn, with the Python binding publishing the fork
/// stages and gunicorn's own hooks.
struct HostGunicorn: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gunicorn",
        abstract: "Run examples/gunicorn under real gunicorn against a new session's ring and an agent.",
        discussion: """
            Prints where everything is (session, ring, agent, gunicorn's address, logs), then runs \
            until SIGINT or SIGTERM: gunicorn gets SIGTERM (graceful stop: workers finish, flush \
            and exit), then the agent this command started is stopped, and every process left \
            below this one is killed. Logs go to the session directory, never to this terminal.
            """
    )

    @OptionGroup var options: HostOptions<GunicornOptionsHelp>

    @Option(help: "The gunicorn executable (Debian's runs /usr/bin/python3).")
    var gunicorn = "/usr/bin/gunicorn"

    func run() throws {
        let files = try ExampleFiles.locate()
        let run = HostedServerRun(server: "gunicorn", executable: gunicorn, installHint: "apt-get install gunicorn",
                                  forkscope: files.executable, options: options, stopSignal: SIGTERM, modeNote: nil)
        try run.run { session in
            let addressFile = session.path + "/gunicorn.address"
            _ = try? FileSystem.remove(addressFile)
            var arguments = ["--config", files.example + "/gunicorn.conf.py", "--chdir", files.example,
                             "--workers", String(options.workers), "--bind", options.listen, "--graceful-timeout", String(options.gracefulTimeout)]
            if options.preload { arguments.append("--preload") }
            arguments.append("app:application")
            return ServerLaunch(
                environment: [
                    "FORKSCOPE_LIB": files.library,
                    "FORKSCOPE_ADDRESS_FILE": addressFile,
                    "PYTHONPATH": ([files.bindings, files.example] + (Environment.current["PYTHONPATH"].map { [$0] } ?? [])).joined(separator: ":"),
                    "PYTHONUNBUFFERED": "1",
                    "PYTHONDONTWRITEBYTECODE": "1",  // no __pycache__ left in the checkout
                ],
                arguments: arguments,
                ready: { processes, log in try processes.waitForAddressFile(addressFile, log: log, within: 30) }
            )
        }
    }
}

enum GunicornOptionsHelp: HostOptionsHelp {
    static let preload = "Load the app in the master before forking the workers (gunicorn --preload): the exporter and its flush thread exist before fork()."
    static let listen = "Where gunicorn listens: HOST:PORT (port 0 picks a free one; the address is printed)."
    static let noForkHooks = "Do not register the binding's at-fork stages (os.register_at_fork): the failure of the Sqreen post, then fork-counter recovery."
    static let gracefulTimeout = "Seconds gunicorn gives workers to finish on stop (gunicorn --graceful-timeout)."
}

/// How one server is started: what `HostedServerRun` adds to the
/// environment and passes after the executable, and how it learns the
/// server is ready (and its address).
struct ServerLaunch {
    var environment: [String: String]
    var arguments: [String]
    var ready: (inout HostedProcesses, _ log: String) throws -> String
}

/// One run of `forkscope host SERVER`: session and ring, agent, the server
/// spawned with the binding's environment, the printed summary, the
/// graceful stop. This process only spawns (posix_spawn) and watches.
struct HostedServerRun<Help: HostOptionsHelp> {
    let server: String
    let executable: String
    /// The Debian packages' install command, for the message when the executable is missing.
    let installHint: String
    /// This forkscope, which runs `forkscope agent` when no agent is given.
    let forkscope: String
    let options: HostOptions<Help>
    let stopSignal: CInt
    let modeNote: String?

    func run(_ launch: (SessionDirectory) throws -> ServerLaunch) throws {
        try ProcessControl.becomeChildSubreaper()
        // Taken with sigtimedwait in runUntilStopped, never by a handler;
        // spawned children start with an empty mask (Spawn resets it).
        try Signals.block([SIGINT, SIGTERM, SIGCHLD])

        guard FileSystem.exists(executable) else {
            throw ValidationError("\(executable) not found: install Debian's \(server) (\(installHint))")
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
            let agent = try HostedServerRun.startAgent(executable: forkscope, ring: ringPath, log: session.logPath("agent"))
            processes.agent = agent.pid
            agentURL = "http://\(agent.address)"
        }

        let started = try launch(session)
        var environment = Environment.current
        environment["FORKSCOPE_RING"] = ringPath
        environment["FORKSCOPE_AGENT_URL"] = agentURL
        environment["FORKSCOPE_POLICY"] = options.policy
        environment["FORKSCOPE_FLUSH_INTERVAL_MS"] = String(options.flushIntervalMs)
        environment["FORKSCOPE_FORK_HOOKS"] = options.noForkHooks ? "0" : "1"
        environment["FORKSCOPE_DETECT_FORKS"] = options.noForkDetection ? "0" : "1"
        for (key, value) in started.environment { environment[key] = value }
        let log = session.logPath(server)
        processes.server = try Spawn.run(
            executable, arguments: [executable] + started.arguments,
            environment: environment.map { "\($0.key)=\($0.value)" }.sorted(),
            fileActions: [.nullDevice(as: .standardInput), .appendingLog(log, as: .standardOutput),
                          .duplicate(.standardOutput, as: .standardError)],
            // Its own group: a Ctrl-C on this terminal reaches this process
            // only, which then stops the server gracefully.
            newProcessGroup: true
        )

        let address = try started.ready(&processes, log)
        let mode = [options.preload ? "preload" : "no preload", options.noForkHooks ? "fork hooks off" : "fork hooks on",
                    options.noForkHooks ? (options.noForkDetection ? "fork detection off" : "fork detection on") : nil,
                    modeNote].compactMap { $0 }
        let label = server.count >= 9 ? server : server + String(repeating: " ", count: 9 - server.count)
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
        // Straight to the descriptor: a parent reading a pipe sees it at once.
        try FileDescriptor.standardOutput.writeAll(text)
    }

    /// Starts `forkscope agent` on a free port; returns its pid and address.
    static func startAgent(executable: String, ring: String, log: String) throws -> (pid: pid_t, address: String) {
        let pipe = try FileDescriptor.pipe()
        let pid = try Spawn.run(
            executable, arguments: ["forkscope", "agent", "--listen", "127.0.0.1:0", "--ring", ring],
            fileActions: [.nullDevice(as: .standardInput), .duplicate(pipe.write, as: .standardOutput),
                          .appendingLog(log, as: .standardError)],
            newProcessGroup: true
        )
        try pipe.write.close()
        defer { try? pipe.read.close() }
        var line: [UInt8] = []
        let deadline = Deadline(seconds: 10)
        while !line.contains(10), !deadline.hasPassed {
            guard try pipe.read.poll(for: Int16(POLLIN), deadline: deadline) != 0 else { break }
            var chunk = [UInt8](repeating: 0, count: 256)
            let n = try chunk.withUnsafeMutableBytes { raw in try pipe.read.read(into: raw) }
            if n == 0 { break }
            line += chunk[..<n]
        }
        let text = String(decoding: line.prefix { $0 != 10 }, as: UTF8.self)
        guard text.hasPrefix("listening on ") else {
            try? ProcessControl.send(SIGKILL, to: pid)
            _ = try? ProcessControl.wait(for: pid)
            throw ValidationError("forkscope agent did not start (it printed \"\(text)\"); see \(log)")
        }
        return (pid, String(text.dropFirst("listening on ".count)))
    }
}

/// The files `forkscope host gunicorn` runs: found from this executable
/// (`.build/<config>/forkscope` in a checkout) or the working directory.
struct ExampleFiles {
    let executable: String
    let library: String
    let bindings: String
    let example: String

    static func locate() throws -> ExampleFiles {
        let executable = try ProcessControl.currentExecutablePath()
        let directory = parent(executable)
        let library = directory + "/libforkscope-c.so"
        guard FileSystem.exists(library) else {
            throw ValidationError("\(library) not found: build it with `swift build` (product forkscope-c) next to this forkscope")
        }
        var starts = [directory]
        if let cwd = try? FileSystem.readSymbolicLink("/proc/self/cwd") { starts.append(cwd) }
        for start in starts {
            var candidate = start
            while !candidate.isEmpty {
                if FileSystem.exists(candidate + "/examples/gunicorn/gunicorn.conf.py"),
                   FileSystem.exists(candidate + "/bindings/python/forkscope/__init__.py") {
                    return ExampleFiles(executable: executable, library: library, bindings: candidate + "/bindings/python",
                                        example: candidate + "/examples/gunicorn")
                }
                candidate = parent(candidate)
            }
        }
        throw ValidationError("examples/gunicorn and bindings/python not found above \(directory) or the working directory: run from the forkscope checkout")
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }
}

/// The processes this command started, and how they end. Every wait has a
/// deadline; whatever is left below this process (a subreaper: orphaned
/// workers come to us) is killed at the end.
struct HostedProcesses {
    /// The server's master (gunicorn, puma, unicorn).
    var server: pid_t?
    var agent: pid_t?
    /// What stops the server gracefully: SIGTERM for gunicorn and Puma,
    /// SIGQUIT for Unicorn (whose SIGTERM is an immediate shutdown).
    var stopSignal: CInt = SIGTERM
    /// The server's name in messages.
    var serverName = "gunicorn"
    private var serverStatus: WaitStatus?

    /// Polls for gunicorn's `when_ready` note (its real address and pid).
    mutating func waitForAddressFile(_ path: String, log: String, within seconds: Double) throws -> String {
        let deadline = Deadline(seconds: seconds)
        while !deadline.hasPassed {
            if let bytes = try? FileSystem.readFile(path, limit: 4096), let line = String(validating: bytes, as: UTF8.self) {
                return String(line.prefix { $0 != " " && $0 != "\n" })
            }
            reapAvailable()
            if let serverStatus {
                throw ValidationError("\(serverName) exited (\(serverStatus)) before it was ready; see \(log)")
            }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 20)
        }
        throw ValidationError("\(serverName) was not ready within \(Int(seconds)) s; see \(log)")
    }

    /// Polls until `address` accepts a TCP connection (the server's
    /// listener exists), failing early if the server exited.
    mutating func waitForListener(_ address: String, log: String, within seconds: Double) throws {
        let target = try SocketAddress.ipv4(parsing: address)
        let deadline = Deadline(seconds: seconds)
        while !deadline.hasPassed {
            if let socket = try? Socket.open(.ipv4, flags: [.closeOnExec]) {
                let connected = (try? socket.connect(to: target)) == .connected
                try? socket.close()
                if connected { return }
            }
            reapAvailable()
            if let serverStatus {
                throw ValidationError("\(serverName) exited (\(serverStatus)) before it listened on \(address); see \(log)")
            }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 20)
        }
        throw ValidationError("\(serverName) did not listen on \(address) within \(Int(seconds)) s; see \(log)")
    }

    /// Waits for SIGINT/SIGTERM (or gunicorn ending by itself), then stops
    /// gunicorn gracefully; returns how its master ended.
    mutating func runUntilStopped() -> WaitStatus? {
        // The set sigtimedwait takes (blocked in `run`, so they stay pending).
        var signals = sigset_t()
        sigemptyset(&signals)
        for signal in [SIGINT, SIGTERM, SIGCHLD] { sigaddset(&signals, signal) }
        while serverStatus == nil {
            var timeout = timespec(tv_sec: 0, tv_nsec: 250_000_000)
            let signal = sigtimedwait(&signals, nil, &timeout)
            reapAvailable()
            if signal == SIGINT || signal == SIGTERM { break }
        }
        if let master = server, serverStatus == nil {
            // The graceful stop (gunicorn, Puma: SIGTERM; Unicorn: SIGQUIT):
            // workers finish their request, flush in their exit hook, and exit.
            try? ProcessControl.send(stopSignal, to: master)
            let deadline = Deadline(seconds: 60)
            while serverStatus == nil, !deadline.hasPassed {
                var timeout = timespec(tv_sec: 0, tv_nsec: 50_000_000)
                _ = sigtimedwait(&signals, nil, &timeout)
                reapAvailable()
            }
            if serverStatus == nil { stop(master, signal: SIGKILL, within: 5) }
        }
        return serverStatus
    }

    /// Reaps every child that has ended (ours, or orphans reparented to us).
    mutating func reapAvailable() {
        while let (pid, status) = try? ProcessControl.wait(for: -1, options: WNOHANG) {
            if pid == server { serverStatus = status }
            if pid == agent { agent = nil }
        }
    }

    /// Sends `signal` to `pid`, waits up to `seconds`, then SIGKILLs its tree.
    mutating func stop(_ pid: pid_t, signal: CInt, within seconds: Double) {
        try? ProcessControl.send(signal, to: pid)
        if let status = try? ProcessControl.wait(for: pid, deadline: Deadline(seconds: seconds)) {
            if pid == server { serverStatus = status }
            return
        }
        _ = try? ProcessControl.killTree(root: pid, signal: SIGKILL)
        if let status = try? ProcessControl.wait(for: pid, deadline: Deadline(seconds: 5)), pid == server { serverStatus = status }
    }

    /// Ends everything still running below this process.
    mutating func endAll() {
        if let agent { stop(agent, signal: SIGTERM, within: 3) }
        agent = nil
        for _ in 0..<20 {
            guard let left = try? ProcessControl.descendants(of: getpid()), !left.isEmpty else { break }
            _ = try? ProcessControl.killTree(root: getpid(), signal: SIGKILL, includingRoot: false)
            _ = try? ProcessControl.wait(for: -1, deadline: Deadline(seconds: 0.2))
            reapAvailable()
        }
        reapAvailable()
    }
}

/// The agent's `GET /stats` totals, one line.
struct AgentStats: CustomStringConvertible {
    let spans: Int
    let unique: Int
    let processes: Int

    var description: String { "\(spans) spans (\(unique) unique) from \(processes) process(es)" }

    static func fetch(_ url: String) -> AgentStats? {
        guard url.hasPrefix("http://"), let address = try? SocketAddress.ipv4(parsing: String(url.dropFirst(7).prefix { $0 != "/" })),
              let body = try? httpGet(address, path: "/stats"),
              let document = try? JSONValue(parsing: body) else { return nil }
        return AgentStats(spans: Int(document["spans"]?.numberValue ?? 0), unique: Int(document["unique_spans"]?.numberValue ?? 0),
                          processes: document["per_process"]?.objectValue?.keys.count ?? 0)
    }

    /// A one-shot HTTP/1.1 GET (Connection: close), at most 3 s.
    static func httpGet(_ address: SocketAddress, path: String) throws -> [UInt8] {
        let deadline = Deadline(seconds: 3)
        let socket = try Socket.open(.ipv4, flags: [.closeOnExec, .nonBlocking])
        defer { try? socket.close() }
        if try socket.connect(to: address) == .inProgress {
            guard try socket.fileDescriptor.poll(for: Int16(POLLOUT), deadline: deadline) != 0, try socket.pendingError() == nil else { return [] }
        }
        try socket.sendAll("GET \(path) HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n")
        var response: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while try socket.fileDescriptor.poll(for: Int16(POLLIN), deadline: deadline) != 0 {
            let n = try chunk.withUnsafeMutableBytes { raw in try socket.receive(into: raw) }
            if n == 0 { break }
            response += chunk[..<n]
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let end = (0..<max(0, response.count - 3)).first(where: { Array(response[$0..<$0 + 4]) == separator }) else { return [] }
        return Array(response[(end + 4)...])
    }
}
