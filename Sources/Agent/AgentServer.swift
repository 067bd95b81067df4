import EventRing
import Glibc
import Posix
import Wire

// The stop signal handler writes this eventfd. Set before the handler is
// installed, so the handler never runs a lazy initialiser.
nonisolated(unsafe) var agentStopDescriptor: CInt = -1

/// SIGTERM/SIGINT: wake the poll loop, which then stops cleanly. Only an
/// async-signal-safe write(2); `EventFD.signal` is not used because debug
/// builds route it through the mocking driver.
nonisolated func agentStopSignalHandler(_ signal: CInt) {
    var one: UInt64 = 1
    _ = withUnsafeBytes(of: &one) { raw in write(agentStopDescriptor, raw.baseAddress, raw.count) }
}

/// The mock trace agent: one thread, one `poll` loop over the listener, a
/// stop eventfd and every connection (all non-blocking). Each connection is
/// a small state machine (read → parked reply → write → linger/close) with
/// its own timers, so a held, delayed or trickled reply never blocks
/// another connection: control requests are served while traces replies
/// are held.
///
/// No Foundation, Dispatch or Swift concurrency: this is a process on the
/// fork path's rules (DESIGN.md), and its timing must be its own.
public final class AgentServer {
    public let configuration: AgentConfiguration
    /// The address actually bound (the real port when port 0 was asked for).
    public let boundAddress: AgentListenAddress
    let listener: Socket
    let wake: EventFD
    let ring: RingWriter?
    var connections: [UInt64: ServerConnection] = [:]
    var nextConnectionID: UInt64 = 1
    var acceptedConnections = 0
    var acceptPausedUntil: Deadline?
    var stopping = false

    // Settings changed at run time through /control.
    var delayMilliseconds: UInt64
    var holding: Bool
    var fault: AgentFault?
    var slowBodyIntervalMilliseconds: UInt64
    var nextHoldSequence: UInt64 = 1
    var statistics = AgentStatistics()
    /// Reused for every traces request: its buffers keep their capacity.
    var census = TraceCensus()
    /// `/info` body and its hash (the `Datadog-Agent-State` header), built once.
    let infoBody: [UInt8]
    let agentState: String
    /// The reply to an accepted traces payload, built once (not per payload).
    let acceptedTraces: HTTPResponse

    /// Binds and listens; opens the ring and publishes `process.start`.
    public init(configuration: AgentConfiguration) throws(AgentConfigurationError) {
        self.configuration = configuration
        delayMilliseconds = configuration.delayMilliseconds
        holding = configuration.hold
        fault = configuration.fault
        slowBodyIntervalMilliseconds = configuration.slowBodyIntervalMilliseconds
        let address = try configuration.listen.socketAddress
        let name = configuration.listen.description
        if case .unix(let path) = configuration.listen, FileSystem.exists(path) {
            // A socket file left by an agent that died: replace it. Anything else is not ours.
            guard let status = try? FileSystem.linkStatus(path), status.mode & S_IFMT == S_IFSOCK else {
                throw .unixPathInUse(path)
            }
            try? FileSystem.remove(path)
        }
        do throws(SystemError) {
            listener = try Socket.open(address.family, .stream, flags: [.closeOnExec, .nonBlocking])
            if case .tcp = configuration.listen { try listener.setOption(.reuseAddress, true) }
            try listener.bind(to: address)
            try listener.listen(backlog: 1024)
            wake = try EventFD.create()
        } catch {
            throw .cannotListen(name, error)
        }
        switch configuration.listen {
        case .tcp:
            if case .ipv4(let bound)? = try? listener.localAddress() { boundAddress = .tcp(bound) } else { boundAddress = configuration.listen }
        case .unix:
            boundAddress = configuration.listen
        }
        if let path = configuration.ringPath {
            do { ring = try Ring.open(at: path).writer } catch { throw .ring(path, reason: "\(error)") }
        } else {
            ring = nil
        }
        (infoBody, agentState) = AgentServer.makeInfo(boundAddress: boundAddress, limits: configuration.limits)
        acceptedTraces = HTTPResponse(status: 200, headers: ["Content-Type": "application/json", "Datadog-Agent-State": agentState],
                                      body: AgentSamplingRates.responseBody(["service:,env:": 1]))
        ring?.publish(.processStart, UInt64(getppid()), ProcessRole.agent.rawValue, ring?.intern("forkscope agent") ?? 0)
    }

    /// Serves until SIGTERM or SIGINT (or `stop()`), then closes every
    /// connection and the listener.
    public func run() throws(SystemError) {
        agentStopDescriptor = wake.rawValue
        try Signals.install(agentStopSignalHandler, for: SIGTERM, flags: [])
        try Signals.install(agentStopSignalHandler, for: SIGINT, flags: [])
        defer { shutDown() }
        var scratch = [UInt8](repeating: 0, count: 64 * 1024)
        while !stopping {
            var fds = [pollfd(fd: wake.rawValue, events: Int16(POLLIN), revents: 0)]
            if let paused = acceptPausedUntil, paused.hasPassed { acceptPausedUntil = nil }
            let listening = acceptPausedUntil == nil
            if listening { fds.append(pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0)) }
            let polled = connections.values.filter { $0.pollEvents != 0 }
            for connection in polled {
                fds.append(pollfd(fd: connection.socket.rawValue, events: connection.pollEvents, revents: 0))
            }
            _ = try poll(&fds, deadline: nextDeadline())
            if fds[0].revents != 0 {
                _ = try? wake.drain()
                stopping = true
                break
            }
            if listening && fds[1].revents != 0 { acceptConnections() }
            let first = listening ? 2 : 1
            for (index, connection) in polled.enumerated() where fds[first + index].revents != 0 {
                service(connection, events: fds[first + index].revents, scratch: &scratch)
            }
            runTimers()
            answerWaitHeld()
            for (id, connection) in connections where connection.isClosed { connections.removeValue(forKey: id) }
        }
    }

    /// Stops the loop at its next wake-up (for an embedding process).
    public func stop() { try? wake.signal() }

    func shutDown() {
        for connection in connections.values {
            if case .traces(let reply)? = connection.pending { abandon(reply) }
            connection.close()
        }
        connections.removeAll()
        try? listener.close()
        if case .unix(let path) = boundAddress { try? FileSystem.remove(path) }
        ring?.publish(.processExit, 0, 0)
        try? wake.close()
    }

    // MARK: the loop's parts

    func nextDeadline() -> Deadline {
        var earliest = acceptPausedUntil ?? .never
        for connection in connections.values {
            if let deadline = connection.nextDeadline, deadline < earliest { earliest = deadline }
        }
        return earliest
    }

    func acceptConnections() {
        // Bounded per wake-up, so a connection storm cannot starve the rest.
        for _ in 0..<256 {
            let socket: Socket
            do {
                socket = try listener.accept(flags: [.closeOnExec, .nonBlocking])
            } catch {
                switch error.errno {
                case .wouldBlock: return
                case .tooManyOpenFiles, Errno(rawValue: ENFILE), .noMemory:
                    // The pending connection stays queued; polling the
                    // listener now would spin. Try again shortly.
                    log("accept: \(error); pausing accepts for 100 ms")
                    acceptPausedUntil = .after(milliseconds: 100)
                    return
                default:
                    return  // ECONNABORTED and the like: that one connection is gone
                }
            }
            if case .tcp = configuration.listen { try? socket.setOption(.noDelay, true) }
            let connection = ServerConnection(id: nextConnectionID, socket: socket, limits: configuration.limits)
            nextConnectionID += 1
            acceptedConnections += 1
            connections[connection.id] = connection
        }
    }

    func service(_ connection: ServerConnection, events: Int16, scratch: inout [UInt8]) {
        if events & Int16(POLLOUT) != 0 || connection.hasOutput {
            guard connection.flush() else { return drop(connection) }
            if !connection.hasOutput { wroteEverything(connection) }
        }
        guard events & Int16(POLLIN | POLLHUP | POLLERR) != 0, !connection.isClosed else { return }
        // Bounded per wake-up: one fast sender must not starve the others.
        for _ in 0..<16 {
            switch connection.read(into: &scratch) {
            case .wouldBlock:
                return
            case .endOfFile:
                return inputEnded(connection)
            case .failed:
                return drop(connection)
            case .bytes(let bytes):
                if connection.lingerDeadline != nil {
                    connection.lingerDrained += bytes.count
                    if connection.lingerDrained > ServerConnection.lingerLimitBytes { connection.close() }
                    continue
                }
                connection.parser.feed(bytes)
                probeForExpectContinue(connection, bytes)
                takeRequests(connection)
                if connection.isClosed { return }
            }
        }
    }

    /// Answers every complete request the connection may take now.
    func takeRequests(_ connection: ServerConnection) {
        // Answering may lead back here (a reply written at once frees the
        // connection for the next request): the outer call's loop goes on,
        // so pipelined requests never deepen the stack.
        guard !connection.isTakingRequests else { return }
        connection.isTakingRequests = true
        defer { connection.isTakingRequests = false }
        while connection.isReadyForRequest {
            let request: HTTPRequest?
            do {
                request = try connection.parser.nextRequest()
            } catch {
                statistics.recordEndpoint("malformed")
                if configuration.verbose { log("malformed request on connection \(connection.id): \(error)") }
                respond(connection, status: error.responseStatus, text: "\(error)\n", keepAlive: false)
                return
            }
            guard let request else { break }
            if connection.parser.isIdle {
                connection.headProbe.removeAll()
                connection.headProbeDone = false
            } else {
                // Pipelined bytes follow: the probe cannot tell where their head starts.
                connection.headProbeDone = true
            }
            route(request, on: connection)
        }
        if connection.inputEnded && !connection.isClosed && connection.pending == nil && connection.trickle == nil
            && !connection.hasOutput && connection.lingerDeadline == nil
        {
            connection.close()
        }
    }

    /// curl sends `Expect: 100-continue` before a body over 1 KiB and
    /// waits a second for `100 Continue`: send it once the head is in.
    func probeForExpectContinue(_ connection: ServerConnection, _ bytes: ArraySlice<UInt8>) {
        guard !connection.headProbeDone, !connection.parser.isIdle else { return }
        // Only what can hold the head: the rest of a read is body (a trace
        // payload's first 64 KiB), and copying it cost more than the search.
        let limit = connection.parser.limits.maxHeaderSectionBytes + 4
        connection.headProbe += bytes.prefix(max(0, limit - connection.headProbe.count))
        let probe = connection.headProbe
        guard let end = Self.headEnd(probe) else {
            if probe.count > connection.parser.limits.maxHeaderSectionBytes { connection.headProbeDone = true }
            return
        }
        connection.headProbeDone = true
        let head = probe[..<end].map { $0 >= 65 && $0 <= 90 ? $0 | 0x20 : $0 }  // ASCII lowercase
        guard Self.contains(head, "\r\nexpect: 100-continue") || Self.contains(head, "\r\nexpect:100-continue") else { return }
        connection.append(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        if !connection.flush() { drop(connection) }
    }

    /// Whether `needle` occurs in `bytes`: a byte search, not a `String`
    /// search through the generic string-processing library (per request).
    static func contains(_ bytes: [UInt8], _ needle: StaticString) -> Bool {
        needle.withUTF8Buffer { needle in
            guard bytes.count >= needle.count else { return false }
            return (0...(bytes.count - needle.count)).contains { start in
                for offset in 0..<needle.count where bytes[start + offset] != needle[offset] { return false }
                return true
            }
        }
    }

    static func headEnd(_ bytes: [UInt8]) -> Int? {
        guard bytes.count >= 4 else { return nil }
        for index in 0...(bytes.count - 4)
        where bytes[index] == 13 && bytes[index + 1] == 10 && bytes[index + 2] == 13 && bytes[index + 3] == 10 {
            return index
        }
        return nil
    }

    /// The peer shut down its side. A parked reply has no one left to read
    /// it: the client gave up (a cancelled send), so it is abandoned.
    func inputEnded(_ connection: ServerConnection) {
        connection.inputEnded = true
        if connection.lingerDeadline != nil { return connection.close() }
        do { try connection.parser.endOfStream() } catch {
            // A request cut off mid-way: nothing to answer.
            return drop(connection)
        }
        if case .traces? = connection.pending { return drop(connection) }
        if case .waitHeld? = connection.pending { return drop(connection) }
        if connection.trickle != nil { return drop(connection) }
        if !connection.hasOutput { connection.close() }
    }

    /// Closes a connection whose peer is gone, abandoning its parked reply.
    func drop(_ connection: ServerConnection) {
        if case .traces(let reply)? = connection.pending { abandon(reply) }
        connection.pending = nil
        connection.trickle = nil
        connection.close()
    }

    func abandon(_ reply: PendingTracesReply) {
        statistics.abandonedReplies += 1
        publishRequest(reply, status: 0)
        if configuration.verbose {
            log("\(reply.path): client closed while the reply was \(reply.holdSequence != nil ? "held" : "delayed") (spans stay counted)")
        }
    }

    /// The output buffer is empty: continue the slow body, close, or take the next request.
    func wroteEverything(_ connection: ServerConnection) {
        if connection.trickle != nil { return }
        switch connection.afterWrite {
        case .close: connection.beginLingeringClose()
        case .keepOpen: takeRequests(connection)
        }
    }

    func runTimers() {
        let now = Clock.monotonicNanoseconds()
        for connection in connections.values where !connection.isClosed {
            if let linger = connection.lingerDeadline, linger.monotonicNanoseconds <= now {
                connection.close()
                continue
            }
            if case .traces(let reply)? = connection.pending, let release = reply.releaseAt, release.monotonicNanoseconds <= now {
                deliver(reply, on: connection)
            }
            if let trickle = connection.trickle, !connection.hasOutput, trickle.next.monotonicNanoseconds <= now {
                trickleNextByte(connection)
            }
        }
    }

    /// Sends one more byte of a slow body; ends the reply after the last.
    func trickleNextByte(_ connection: ServerConnection) {
        guard var trickle = connection.trickle else { return }
        if let byte = trickle.bytes.first {
            connection.append([byte])
            trickle.bytes = trickle.bytes.dropFirst()
            trickle.next = .after(milliseconds: slowBodyIntervalMilliseconds)
        }
        if trickle.bytes.isEmpty {
            connection.trickle = nil
            connection.afterWrite = trickle.keepAlive ? .keepOpen : .close
        } else {
            connection.trickle = trickle
        }
        guard connection.flush() else { return drop(connection) }
        if !connection.hasOutput { wroteEverything(connection) }
    }

    // MARK: replies

    /// Writes a parked traces reply in its shape.
    func deliver(_ reply: PendingTracesReply, on connection: ServerConnection) {
        connection.pending = nil
        let status = reply.shape.status
        statistics.recordStatus(status)
        publishRequest(reply, status: status)
        if configuration.verbose {
            log("\(reply.path): \(status == 0 ? "\(reply.shape)" : String(status)) (\(reply.spans) spans, \(reply.bytes) bytes)")
        }
        switch reply.shape {
        case .response(var response):
            if !reply.keepAlive { response.head.headers.set(name: "Connection", value: "close") }
            connection.append(Self.bytes(response))
            connection.afterWrite = reply.keepAlive ? .keepOpen : .close
        case .slowBody(var response):
            if !reply.keepAlive { response.head.headers.set(name: "Connection", value: "close") }
            connection.append(Self.head(response))
            connection.trickle = (response.body[...], .after(milliseconds: slowBodyIntervalMilliseconds), reply.keepAlive)
        case .reset:
            connection.reset()
            return
        case .garbage:
            connection.append(Self.garbage)
            connection.afterWrite = .close
        case .closeAfterHeaders(let response):
            connection.append(Self.head(response))
            connection.afterWrite = .close
        }
        guard connection.flush() else { return drop(connection) }
        if !connection.hasOutput { wroteEverything(connection) }
    }

    /// Queues a plain reply (everything but traces replies) and writes what it can.
    func respond(_ connection: ServerConnection, _ response: HTTPResponse, keepAlive: Bool) {
        var response = response
        if !keepAlive { response.head.headers.set(name: "Connection", value: "close") }
        statistics.recordStatus(response.status)
        connection.append(Self.bytes(response))
        connection.afterWrite = keepAlive ? .keepOpen : .close
        guard connection.flush() else { return drop(connection) }
        if !connection.hasOutput { wroteEverything(connection) }
    }

    func respond(_ connection: ServerConnection, status: Int, text: String, keepAlive: Bool, headers: HTTPHeaders = [:]) {
        var headers = headers
        headers.add(name: "Content-Type", value: "text/plain; charset=utf-8")
        respond(connection, HTTPResponse(status: status, headers: headers, body: Array(text.utf8)), keepAlive: keepAlive)
    }

    func respond(_ connection: ServerConnection, status: Int = 200, json: JSONValue, keepAlive: Bool) {
        let headers: HTTPHeaders = ["Content-Type": "application/json"]
        respond(connection, HTTPResponse(status: status, headers: headers, body: json.serialized() + [10]), keepAlive: keepAlive)
    }

    static func bytes(_ response: HTTPResponse) -> [UInt8] {
        // Our own responses are always valid; the fallback only keeps this total.
        (try? response.serialized()) ?? Array("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".utf8)
    }

    static func head(_ response: HTTPResponse) -> [UInt8] {
        (try? response.serializedHead()) ?? Array("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n".utf8)
    }

    /// A `garbage` fault's reply: binary, no status line, nothing a parser can take for HTTP.
    static let garbage: [UInt8] = [0x00, 0xff, 0xfe, 0x7f] + Array("forkscope agent fault: this is not HTTP\r\n\r\n".utf8) + [0x00, 0x01]

    // MARK: hold and wait-held

    var heldConnections: [ServerConnection] {
        connections.values.filter { !$0.isClosed && $0.heldSequence != nil }.sorted { $0.heldSequence! < $1.heldSequence! }
    }

    var delayedCount: Int {
        connections.values.reduce(0) { count, connection in
            if case .traces(let reply)? = connection.pending, reply.holdSequence == nil { return count + 1 }
            return count
        }
    }

    /// Releases the `count` oldest held replies (all when nil); returns how many.
    func release(count: Int?) -> Int {
        let held = heldConnections
        let chosen = held.prefix(count ?? held.count)
        for connection in chosen {
            guard case .traces(let reply)? = connection.pending else { continue }
            deliver(reply, on: connection)
        }
        return chosen.count
    }

    func answerWaitHeld() {
        var held: Int?
        for connection in connections.values where !connection.isClosed {
            guard case .waitHeld(let count, let deadline, let keepAlive)? = connection.pending else { continue }
            let current = held ?? heldConnections.count
            held = current
            if current >= count {
                connection.pending = nil
                respond(connection, json: ["held": .number(Double(current)), "reached": true], keepAlive: keepAlive)
            } else if deadline.hasPassed {
                connection.pending = nil
                respond(connection, status: 408, json: ["held": .number(Double(current)), "reached": false], keepAlive: keepAlive)
            }
        }
    }

    var liveState: LiveState {
        LiveState(held: heldConnections.count, delayed: delayedCount, holding: holding, delayMilliseconds: delayMilliseconds,
                  fault: fault, openConnections: connections.values.filter { !$0.isClosed }.count,
                  acceptedConnections: acceptedConnections)
    }

    // MARK: ring and log

    func publishRequest(_ reply: PendingTracesReply, status: Int) {
        guard let ring else { return }
        let delayed = (Clock.monotonicNanoseconds() &- reply.readAt) / 1_000_000
        ring.publish(.agentRequest, UInt64(reply.spans), UInt64(reply.bytes), UInt64(status), delayed)
    }

    func log(_ message: String) {
        try? FileDescriptor.standardError.writeAll("forkscope agent: \(message)\n")
    }
}
