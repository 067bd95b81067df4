import ArgumentParser
import DemoServer
import EventRing
import ForkSafety
import Glibc
import Posix

extension ServerProfile: ExpressibleByArgument {}

/// `forkscope serve`: the preforking demo server. It forks, so it runs
/// synchronously from main and never starts Dispatch or Swift concurrency.
struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the preforking demo server (master + workers) that embeds the exporter."
    )

    @Option(help: "Startup order to reproduce: unicorn, puma or gunicorn.")
    var profile: ServerProfile = .unicorn

    @Flag(inversion: .prefixedNo, help: "Load the app (create the exporter) in the master before forking.")
    var preload = true

    @Flag(inversion: .prefixedNo, help: "Fork workers through the at-fork hooks (off: a raw fork()).")
    var forkHooks = true

    @Flag(inversion: .prefixedNo, help: "Let the exporter detect forks that bypassed the hooks.")
    var detectForks = true

    @Option(help: "Number of workers.")
    var workers = 2

    @Option(help: "Listen address, 127.0.0.1:PORT (0: any free port).")
    var listen = "127.0.0.1:0"

    @Option(help: "Trace agent URL.")
    var agentURL = "http://127.0.0.1:8126"

    @Option(help: "What a fork does with a send in flight: drain, cancel or drain:MS.")
    var policy = "drain"

    @Option(help: "The session's ring (default: $FORKSCOPE_RING, else no ring).")
    var ring: String?

    @Option(help: "The session directory (control socket, logs).")
    var session: String?

    @Option(help: "Requests per second from a spawned load generator (0: only bursts).")
    var load = 0

    @Option(help: "Flush interval of each process's exporter, in milliseconds.")
    var flushInterval: UInt64 = 200

    @Flag(inversion: .prefixedNo, help: "Trace requests (off: the same server without an exporter, for comparison).")
    var exporter = true

    @Option(help: .hidden)
    var inheritFd: Int32?

    func validate() throws {
        guard SendPolicy(parsing: policy) != nil else { throw ValidationError("--policy must be drain, cancel or drain:MS (got \(policy))") }
        guard (1...64).contains(workers) else { throw ValidationError("--workers must be 1...64") }
        guard (try? SocketAddress.ipv4(parsing: listen)) != nil else { throw ValidationError("--listen must be IPv4 HOST:PORT (got \(listen))") }
    }

    func run() throws {
        var configuration = ServerConfiguration()
        configuration.profile = profile
        configuration.preload = preload
        configuration.forkHooks = forkHooks
        configuration.detectForks = detectForks
        configuration.workers = workers
        configuration.listen = try SocketAddress.ipv4(parsing: listen)
        configuration.agentURL = agentURL
        configuration.policy = SendPolicy(parsing: policy) ?? .drain
        configuration.ringPath = ring ?? Environment.current["FORKSCOPE_RING"]
        configuration.sessionPath = session
        configuration.loadRPS = load
        configuration.flushIntervalMilliseconds = flushInterval
        configuration.inheritedListener = inheritFd
        configuration.exporter = exporter
        if let path = configuration.ringPath {
            do { Telemetry.install(try Ring.open(at: path).writer) } catch { Failure.exit("\(error)", code: 2) }
        }
        let master: Master
        do { master = try Master(configuration: configuration) } catch { Failure.exit("cannot start the server: \(error)", code: 2) }
        Glibc.exit(try master.run())
    }
}
