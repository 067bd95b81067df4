import ArgumentParser
import EventRing
import Glibc
import Posix

/// The options `forkscope host puma` and `forkscope host unicorn` share.
struct RubyHostOptions: ParsableArguments {
    @OptionGroup var host: HostOptions<RubyOptionsHelp>

    @Option(help: "The directory holding the built extension forkscope_native.so (default: $FORKSCOPE_RUBY_EXT, else .build-ruby in the checkout).")
    var rubyExt: String?

    func validate() throws {
        // Unicorn cannot report the port it got: `concreteAddress` picks it.
        guard (try? IPv4Address(parsing: host.listen)) != nil else { throw ValidationError("--listen \(host.listen) is not HOST:PORT (IPv4)") }
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

enum RubyOptionsHelp: HostOptionsHelp {
    static let preload = "Load the app in the master before forking the workers (Puma preload_app!, Unicorn preload_app true): the exporter and its flush thread exist before fork()."
    static let listen = "Where the server listens: HOST:PORT (port 0 picks a free one; the address is printed)."
    static let noForkHooks = "Do not install the binding's at_fork patch (Process._fork): the failure of the Sqreen post, then fork-counter recovery."
    static let gracefulTimeout = "Seconds a worker gets to finish and flush on stop."
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

/// One run of a Ruby server that embeds the binding: `HostedServerRun`
/// with the Ruby example's files and environment.
struct RubyHost {
    let server: String
    let executable: String
    let options: RubyHostOptions
    let stopSignal: CInt
    let arguments: (String) -> [String]
    let extraEnvironment: [String: String]
    let modeNote: String?

    func run() throws {
        let files = try RubyExampleFiles.locate(server: server, extensionDirectory: options.rubyExt)
        let host = options.host
        let run = HostedServerRun(server: server, executable: executable, installHint: "apt-get install ruby ruby-dev \(server)",
                                  forkscope: files.executable, options: host, stopSignal: stopSignal, modeNote: modeNote)
        try run.run { _ in
            let address = try Self.concreteAddress(host.listen)
            var environment = [
                "FORKSCOPE_WORKERS": String(host.workers),
                "FORKSCOPE_PRELOAD": host.preload ? "1" : "0",
                "FORKSCOPE_LISTEN": address,
                "FORKSCOPE_GRACEFUL_TIMEOUT": String(host.gracefulTimeout),
                "FORKSCOPE_SERVER": server,
                "RUBYLIB": ([files.library, files.extensionDirectory] + (Environment.current["RUBYLIB"].map { [$0] } ?? [])).joined(separator: ":"),
            ]
            for (key, value) in extraEnvironment { environment[key] = value }
            return ServerLaunch(environment: environment, arguments: arguments(files.example),
                                ready: { processes, log in
                                    try processes.waitForListener(address, log: log, within: 30)
                                    return address
                                })
        }
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
