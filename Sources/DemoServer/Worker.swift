import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import Wire

/// One worker process: serves HTTP on the listening socket it inherited
/// from the master, with one poll loop over every connection (keep-alive,
/// any number of clients), and traces every request through the exporter.
///
/// Signals: TERM/INT stop at once, QUIT stops gracefully (finish the
/// requests in progress, flush the exporter), SIGRTMIN+2 cancels the exporter's
/// in-flight send (see `CancelSignal`).
final class Worker {
    let index: Int
    let configuration: ServerConfiguration
    let listener: Socket
    /// Commands from the master, one per line ("refork", "policy drain").
    let commands: FileDescriptor
    /// Where refork reports a new worker's pid to the master.
    let reports: FileDescriptor
    var application: DemoApplication?
    private var connections: [CInt: Connection] = [:]
    private var signals: SignalPipe?
    private var stopping = false
    private var requestsServed = 0
    private var molded: [pid_t] = []
    /// One receive buffer for every connection (the loop reads one at a
    /// time): not an allocation per read on the request path.
    private var readBuffer = [UInt8](repeating: 0, count: 16 * 1024)

    struct Connection {
        let socket: Socket
        var parser = HTTPRequestParser()
        var output: [UInt8] = []
        var written = 0
        var closeAfterWrite = false
        /// A `/slow` response waits until this monotonic time.
        var dueAt: UInt64 = 0
        var pending: [UInt8] = []
        /// When the last byte arrived (monotonic ns).
        var lastActivity: UInt64 = Clock.monotonicNanoseconds()
    }

    /// While stopping gracefully, a keep-alive connection gets its next
    /// response with `Connection: close`; one idle this long is closed
    /// (closing an idle one at once races with a request already on its
    /// way, which the client would see as a failure).
    static let gracefulIdleNanoseconds: UInt64 = 300_000_000

    /// The signal mask to restore once this worker's handlers are in place.
    let signalMask: SignalSet
    static let handledSignals: [CInt] = [SIGTERM, SIGINT, SIGQUIT, SIGCHLD]

    init(index: Int, configuration: ServerConfiguration, listener: Socket, commands: FileDescriptor, reports: FileDescriptor,
         application: DemoApplication?, signalMask: SignalSet) {
        self.signalMask = signalMask
        self.index = index
        self.configuration = configuration
        self.listener = listener
        self.commands = commands
        self.reports = reports
        self.application = application
    }

    /// Boots (hooks, app loading) and serves until stopped; returns the exit status.
    func run() -> Int32 {
        do {
            signals = try SignalPipe.install(Self.handledSignals)
        } catch {
            log("worker \(index): cannot install signal handlers: \(error)")
            return 70
        }
        // Signals sent while we were being forked were held back: now they
        // reach our own handlers.
        _ = try? Signals.setMask(signalMask)
        Telemetry.publish(.processStart, UInt64(pid: getppid()), ProcessRole.worker.rawValue,
                          Telemetry.intern("\(configuration.profile.rawValue) worker \(index)"), ProcessControl.startTime(of: getpid()) ?? 0)
        let bootHooks = configuration.profile.workerBootHooks
        for (position, hook) in bootHooks.enumerated() {
            ServerHooks.run(hook, profile: configuration.profile, workerIndex: index)
            if position == bootHooks.count - 1 && application == nil && configuration.exporter {
                // Without preload, the app (and its exporter) loads here, after the fork.
                do { application = try DemoApplication(configuration: configuration) } catch {
                    log("worker \(index): cannot load the app: \(error)")
                    return 70
                }
            }
        }
        if let application { CancelSignal.target(application.writer) }
        serve()
        ServerHooks.run(configuration.profile.workerExitHook, profile: configuration.profile, workerIndex: index)
        application?.writer.stop(deadlineMilliseconds: 10_000)
        Telemetry.publish(.processExit, 0, 0)
        return 0
    }

    private func serve() {
        while !(stopping && connections.isEmpty) {
            var fds: [pollfd] = []
            if !stopping { fds.append(pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0)) }
            fds.append(pollfd(fd: commands.rawValue, events: Int16(POLLIN), revents: 0))
            if let signals { fds.append(pollfd(fd: signals.readEnd.rawValue, events: Int16(POLLIN), revents: 0)) }
            let now = Clock.monotonicNanoseconds()
            var timeout: Int32 = stopping ? 50 : 1000
            for (fd, connection) in connections {
                var events = Int16(POLLIN)
                if connection.written < connection.output.count { events |= Int16(POLLOUT) }
                if connection.dueAt > 0 {
                    timeout = min(timeout, Int32(clamping: connection.dueAt > now ? (connection.dueAt - now) / 1_000_000 + 1 : 0))
                    events = 0
                }
                fds.append(pollfd(fd: fd, events: events, revents: 0))
            }
            guard (try? poll(&fds, timeoutMilliseconds: timeout)) != nil else { continue }
            for entry in fds {
                if entry.fd == listener.rawValue, entry.revents != 0 { acceptOne() }
                else if entry.fd == commands.rawValue, entry.revents != 0 { readCommands() }
                else if entry.fd == signals?.readEnd.rawValue, entry.revents != 0 { handleSignals() }
                else if connections[entry.fd] != nil, entry.revents != 0 || stopping { service(entry.fd, entry.revents) }
            }
        }
    }

    /// One connection per wake-up, as Unicorn's and gunicorn's workers
    /// take them: every worker polling the shared socket wakes, and they
    /// take turns. Accepting all that wait let whichever woke first take a
    /// whole burst (wrk's 32 connections at once), leaving its peers idle
    /// for the run; more waiting connections keep the socket readable, so
    /// the next poll returns at once.
    private func acceptOne() {
        guard connections.count < 512, let socket = try? listener.accept(flags: [.closeOnExec, .nonBlocking]) else { return }
        connections[socket.rawValue] = Connection(socket: socket)
    }

    private func service(_ fd: CInt, _ revents: Int16) {
        guard var connection = connections[fd] else { return }
        defer { if connections[fd] != nil { connections[fd] = connection } }
        if connection.dueAt > 0 {
            guard Clock.monotonicNanoseconds() >= connection.dueAt else { return }
            connection.dueAt = 0
            connection.output += connection.pending
            connection.pending = []
        }
        if revents & Int16(POLLIN) != 0 || revents & Int16(POLLHUP) != 0 {
            let n = readBuffer.withUnsafeMutableBytes { raw in (try? connection.socket.receive(into: raw)) ?? -1 }
            if n <= 0 && !(n < 0 && Errno.current == .wouldBlock) { return close(fd) }
            if n > 0 {
                connection.parser.feed(readBuffer[..<n])
                connection.lastActivity = Clock.monotonicNanoseconds()
            }
        }
        while connection.dueAt == 0 {
            let request: HTTPRequest?
            do { request = try connection.parser.nextRequest() } catch {
                connection.output += response(status: 400, body: "{\"error\":\"\(error)\"}", close: true)
                connection.closeAfterWrite = true
                break
            }
            guard let request else { break }
            respond(to: request, on: &connection)
        }
        if connection.written < connection.output.count {
            let n = connection.output.withUnsafeBytes { raw in
                (try? connection.socket.send(UnsafeRawBufferPointer(rebasing: raw[connection.written...]))) ?? -1
            }
            if n < 0 && Errno.current != .wouldBlock { return close(fd) }
            if n > 0 { connection.written += n }
            if connection.written == connection.output.count {
                connection.output = []
                connection.written = 0
                if connection.closeAfterWrite { return close(fd) }
            }
        }
        if stopping && connection.output.isEmpty && connection.dueAt == 0 && connection.parser.isIdle
            && Clock.monotonicNanoseconds() - connection.lastActivity >= Self.gracefulIdleNanoseconds {
            close(fd)
        }
    }

    private func respond(to request: HTTPRequest, on connection: inout Connection) {
        let started = Clock.monotonicNanoseconds()
        requestsServed += 1
        let path = String(request.target.prefix { $0 != "?" })
        var delayMilliseconds: UInt64 = 0
        var status = 200
        switch (request.method, path) {
        case ("GET", "/"), ("HEAD", "/"): break
        case ("GET", "/slow"):
            delayMilliseconds = min(10_000, UInt64(queryValue("ms", in: request.target) ?? "100") ?? 100)
        case ("GET", "/health"): break
        default: status = 404
        }
        let spans = application?.trace(method: request.method, target: request.target,
                                       durationNanoseconds: Int64(Clock.monotonicNanoseconds() - started) + Int64(delayMilliseconds) * 1_000_000,
                                       status: status) ?? 0
        let body = "{\"worker\":\(index),\"pid\":\(getpid()),\"spans\":\(spans),\"served\":\(requestsServed)}"
        let close = !request.keepAlive || stopping
        let bytes = response(status: status, body: body, close: close)
        if delayMilliseconds > 0 {
            connection.dueAt = Clock.monotonicNanoseconds() + delayMilliseconds * 1_000_000
            connection.pending = bytes
        } else {
            connection.output += bytes
        }
        connection.closeAfterWrite = connection.closeAfterWrite || close
    }

    private func response(status: Int, body: String, close: Bool) -> [UInt8] {
        var headers: HTTPHeaders = ["Content-Type": "application/json"]
        if close { headers.add(name: "Connection", value: "close") }
        return (try? HTTPResponse(head: HTTPResponseHead(status: status, headers: headers), body: Array(body.utf8)).serialized()) ?? []
    }

    private func close(_ fd: CInt) {
        if let connection = connections.removeValue(forKey: fd) { try? connection.socket.close() }
    }

    private func handleSignals() {
        for signal in signals?.drain() ?? [] {
            switch signal {
            case SIGQUIT: stopping = true
            case SIGTERM, SIGINT:
                stopping = true
                for fd in Array(connections.keys) { close(fd) }
            case SIGCHLD: reapMolded()
            default: break
            }
        }
    }

    private func readCommands() {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { raw in (try? commands.read(into: raw)) ?? 0 }
        if n <= 0 {
            // The master is gone: stop gracefully rather than linger.
            stopping = true
            return
        }
        for line in String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            switch words.first {
            case "refork": refork(newIndex: Int(words.dropFirst().first ?? "") ?? 0)
            case "policy":
                if let text = words.dropFirst().first, let policy = SendPolicy(parsing: text) {
                    application?.writer.transport.participant.policy = policy
                }
            default: log("worker \(index): unknown command \(line)")
            }
        }
    }

    /// Puma's `fork_worker` / Pitchfork's mold: this worker (0) forks a new
    /// worker through the hooks; it stays this worker's child, so this
    /// worker reaps it and reports both ends to the master.
    private func refork(newIndex: Int) {
        let previousMask = (try? Signals.block(SignalSet(Self.handledSignals))) ?? SignalSet()
        defer { _ = try? Signals.setMask(previousMask) }
        let outcome: ForkOutcome
        do { outcome = try Fork.fork() } catch {
            log("worker \(index): refork failed: \(error)")
            return
        }
        switch outcome {
        case .child:
            for (fd, connection) in connections { _ = fd; try? connection.socket.close() }
            connections = [:]
            molded = []
            let worker = Worker(index: newIndex, configuration: configuration, listener: listener, commands: commands,
                                reports: reports, application: application, signalMask: previousMask)
            signals?.close()
            ServerLogs.redirectToOwnFile(configuration)
            _exit(worker.run())
        case .parent(let child):
            molded.append(child)
            Telemetry.publish(.workerSpawned, UInt64(pid: child), UInt64(newIndex))
            try? reports.writeAll("molded \(child) \(newIndex)\n")
        }
    }

    private func reapMolded() {
        while let (pid, status) = (try? ProcessControl.wait(for: -1, options: WNOHANG)) ?? nil {
            molded.removeAll { $0 == pid }
            Telemetry.publish(.workerExited, UInt64(pid: pid), status.exitArgument, status.signalArgument)
            try? reports.writeAll("exited \(pid)\n")
        }
    }
}

func queryValue(_ name: String, in target: String) -> String? {
    guard let question = target.firstIndex(of: "?") else { return nil }
    for pair in target[target.index(after: question)...].split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1)
        if parts.first.map(String.init) == name { return parts.count > 1 ? String(parts[1]) : "" }
    }
    return nil
}

func log(_ text: String) { try? FileDescriptor.standardError.writeAll(text + "\n") }

extension WaitStatus {
    /// The exit status as an event argument (0 unless it exited).
    public var exitArgument: UInt64 {
        if case .exited(let code) = self { return UInt64(code) }
        return 0
    }

    /// The terminating signal as an event argument (0 unless signalled).
    public var signalArgument: UInt64 {
        if case .signaled(let signal) = self { return UInt64(signal) }
        return 0
    }
}

/// Server hook points, published by their real names.
enum ServerHooks {
    static func run(_ name: String, profile: ServerProfile, workerIndex: Int) {
        Telemetry.publish(.serverHook, Telemetry.intern(name), Telemetry.intern(profile.rawValue), UInt64(workerIndex))
    }
}
