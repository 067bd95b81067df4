import Agent
import ArgumentParser
import EventRing
import Posix

/// `forkscope agent`: the mock trace agent, in its own process.
struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run a mock Datadog trace agent that counts spans, duplicates and senders, with delays, holds and faults.",
        discussion: """
            Prints one line, "listening on ADDR", once it accepts connections (with the real port when \
            port 0 was asked for). Logs to stderr. SIGTERM or SIGINT stop it. Counters: GET /stats. \
            Run-time control: POST /control/delay?ms=N, /control/hold, /control/release[?count=N], \
            /control/fault?kind=K[&count=N], /control/reset; GET /control/wait-held?count=N&timeout_ms=T.
            """
    )

    @Option(help: "Where to listen: 127.0.0.1:PORT (0 picks a free port) or unix:/path.")
    var listen = AgentListenAddress.standard.description

    @Option(help: "Wait this many milliseconds before each traces reply.")
    var delay: UInt64 = 0

    @Flag(help: "Hold every traces reply until POST /control/release.")
    var hold = false

    @Option(help: "Inject a fault into the next N traces replies (every one without :N): 500, 413, 429, slow-body, reset, garbage, close-after-headers.")
    var fault: String?

    @Option(help: "Publish process.start and agent.request events into this ring (default: $FORKSCOPE_RING when set).")
    var ring: String?

    @Flag(help: "Log every request on stderr.")
    var verbose = false

    func run() throws {
        var configuration = AgentConfiguration(delayMilliseconds: delay, hold: hold, verbose: verbose)
        do {
            configuration.listen = try AgentListenAddress(parsing: listen)
            configuration.fault = try fault.map { text throws(AgentConfigurationError) in try AgentFault(parsing: text) }
        } catch {
            throw ValidationError(error.description)
        }
        configuration.ringPath = ring ?? Environment.current["FORKSCOPE_RING"].flatMap { $0.isEmpty ? nil : $0 }

        let server: AgentServer
        do { server = try AgentServer(configuration: configuration) } catch { Failure.exit(error.description, code: 1) }
        // Written straight to the descriptor, so a parent reading the pipe
        // sees the line at once (stdout is block-buffered on a pipe).
        try FileDescriptor.standardOutput.writeAll("listening on \(server.boundAddress)\n")
        do { try server.run() } catch { Failure.exit("agent stopped: \(error)", code: 1) }
    }
}
