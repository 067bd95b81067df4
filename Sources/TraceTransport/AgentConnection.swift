import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import Wire

/// Deadlines for one exchange with the agent.
public struct Timeouts: Equatable, Sendable {
    public var connectMilliseconds: UInt64 = 1_000
    /// The longest wait for the next byte of the response.
    public var readMilliseconds: UInt64 = 5_000
    public var totalMilliseconds: UInt64 = 10_000

    public init(connectMilliseconds: UInt64 = 1_000, readMilliseconds: UInt64 = 5_000, totalMilliseconds: UInt64 = 10_000) {
        self.connectMilliseconds = connectMilliseconds
        self.readMilliseconds = readMilliseconds
        self.totalMilliseconds = totalMilliseconds
    }
}

/// One keep-alive HTTP/1.1 connection to the agent, on a non-blocking
/// socket polled together with the transport's cancellation eventfd, so a
/// cancel wakes a send blocked in connect, write or read within
/// microseconds.
///
/// Why not URLSession, AsyncHTTPClient or SwiftNIO: they run on Dispatch or
/// on NIO event loops, and this code runs in processes that fork. Measured
/// on this machine: after Dispatch has run in a parent, work queued in the
/// forked child never runs, and NIO's shutdown hangs in a forked child. A
/// socket, `poll(2)` and an eventfd carry no threads across fork().
public struct AgentConnection {
    public let endpoint: AgentEndpoint
    public var timeouts: Timeouts
    private var socket: Socket?
    private var parser = HTTPResponseParser()
    /// Where responses are read into: made once, not zeroed per exchange.
    private var receiveBuffer: [UInt8] = []

    public init(endpoint: AgentEndpoint, timeouts: Timeouts = Timeouts()) {
        self.endpoint = endpoint
        self.timeouts = timeouts
    }

    /// Whether a connection is open for reuse.
    public var isConnected: Bool { socket != nil }

    /// Sends `request` and reads the response. A kept-alive connection the
    /// agent closed while idle is retried once on a fresh one (nothing of
    /// the request can have been processed then).
    public mutating func exchange(_ request: HTTPRequest, token: CancellationToken) -> Result<HTTPResponse, TransportError> {
        let bytes: [UInt8]
        do { bytes = try request.serialized() } catch {
            return .failure(.malformedResponse("cannot serialise the request: \(error)"))
        }
        let total = Deadline.after(milliseconds: timeouts.totalMilliseconds)
        let reused = socket != nil
        let first = attempt(bytes, method: request.method, token: token, total: total)
        if reused, case .failure(.reset(let detail)) = first, detail.hasPrefix(Self.idleClose) {
            return attempt(bytes, method: request.method, token: token, total: total)
        }
        return first
    }

    /// Closes the connection (the next exchange opens a new one).
    public mutating func close() {
        try? socket?.close()
        socket = nil
        parser = HTTPResponseParser()
    }

    private static let idleClose = "closed before responding"

    private mutating func attempt(_ bytes: [UInt8], method: String, token: CancellationToken, total: Deadline) -> Result<HTTPResponse, TransportError> {
        let result = perform(bytes, method: method, token: token, total: total)
        switch result {
        case .success(let response) where response.keepAlive: break
        default: close()
        }
        return result
    }

    private mutating func perform(_ bytes: [UInt8], method: String, token: CancellationToken, total: Deadline) -> Result<HTTPResponse, TransportError> {
        do {
            let socket = try connectedSocket(token: token, total: total)
            try write(bytes, to: socket, token: token, total: total)
            return .success(try readResponse(from: socket, method: method, token: token, total: total))
        } catch {
            return .failure(error)
        }
    }

    private mutating func connectedSocket(token: CancellationToken, total: Deadline) throws(TransportError) -> Socket {
        if let socket { return socket }
        let address = endpoint.address
        let fresh = try system { () throws(SystemError) in try Socket.open(address.family, .stream, flags: [.closeOnExec, .nonBlocking]) }
        socket = fresh
        parser = HTTPResponseParser()
        if case .ipv4 = address { try? fresh.setOption(.noDelay, true) }
        if try system({ () throws(SystemError) in try fresh.connect(to: address) }) == .inProgress {
            let deadline = min(total, Deadline.after(milliseconds: timeouts.connectMilliseconds))
            try waitFor(fresh, POLLOUT, token: token, deadline: deadline, phase: deadline == total ? .total : .connect)
            if let errno = try system({ () throws(SystemError) in try fresh.pendingError() }) {
                throw classify(SystemError("connect", path: endpoint.description, errno))
            }
        }
        return fresh
    }

    /// Runs a system call, turning its error into a transport error.
    private func system<T>(_ body: () throws(SystemError) -> T) throws(TransportError) -> T {
        do { return try body() } catch { throw classify(error) }
    }

    private func write(_ bytes: [UInt8], to socket: Socket, token: CancellationToken, total: Deadline) throws(TransportError) {
        var sent = 0
        while sent < bytes.count {
            if let reason = token.cancelReason { throw .cancelled(reason) }
            let result = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try socket.send(UnsafeRawBufferPointer(rebasing: raw[sent...])) }
            }
            switch result {
            case .success(let n):
                sent += n
            case .failure(let error) where error.errno == .wouldBlock:
                try waitFor(socket, POLLOUT, token: token, deadline: total, phase: .write)
            case .failure(let error):
                throw sent == 0 && (error.errno == .brokenPipe || error.errno == .connectionReset)
                    ? .reset(Self.idleClose + " (\(error.errno.name) on write)") : classify(error)
            }
        }
    }

    private mutating func readResponse(from socket: Socket, method: String, token: CancellationToken, total: Deadline) throws(TransportError) -> HTTPResponse {
        if receiveBuffer.isEmpty { receiveBuffer = [UInt8](repeating: 0, count: 64 * 1024) }
        var received = 0
        while true {
            do {
                while let response = try parser.nextResponse(to: method) {
                    if response.head.isInformational { continue }
                    return response
                }
            } catch {
                throw .malformedResponse("\(error)")
            }
            let result = receiveBuffer.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try socket.receive(into: raw) } }
            let n: Int
            switch result {
            case .success(let count):
                n = count
            case .failure(let error) where error.errno == .wouldBlock:
                let deadline = min(total, Deadline.after(milliseconds: timeouts.readMilliseconds))
                try waitFor(socket, POLLIN, token: token, deadline: deadline, phase: deadline == total ? .total : .read)
                continue
            case .failure(let error):
                throw received == 0 && error.errno == .connectionReset
                    ? .reset(Self.idleClose + " (ECONNRESET)") : classify(error)
            }
            if n == 0 {
                // End of stream: a response delimited by close is complete;
                // anything else is the agent hanging up on us.
                do {
                    if let response = try parser.endOfStream() { return response }
                } catch {
                    throw .reset("the agent closed the connection mid-response (\(error))")
                }
                throw .reset(received == 0 ? Self.idleClose : "the agent closed the connection mid-response")
            }
            received += n
            parser.feed(receiveBuffer[..<n])
        }
    }

    /// Waits for `events` on the socket, or cancellation, or the deadline.
    private func waitFor(_ socket: Socket, _ events: CInt, token: CancellationToken, deadline: Deadline, phase: TransportError.Phase) throws(TransportError) {
        let outcome = try system { () throws(SystemError) in
            try token.wait(for: socket.fileDescriptor, events: Int16(events), before: deadline)
        }
        switch outcome {
        case .ready: return
        case .cancelled: throw .cancelled(token.cancelReason ?? .operatorRequest)
        case .timedOut: throw .timedOut(phase)
        }
    }

    private func classify(_ error: SystemError) -> TransportError {
        switch error.errno {
        case .connectionRefused, .noSuchFileOrDirectory: .refused(endpoint.description)
        case .connectionReset, .brokenPipe: .reset("\(error.errno.name) from \(endpoint)")
        case .timedOut: .timedOut(.total)
        default: .system(error)
        }
    }
}

extension AgentConnection {
    /// One request on a fresh connection, closed afterwards: control and
    /// stats requests to an agent or server (the demo's agent control,
    /// benchmarks, tests). Not for trace sends: those go through a
    /// `Transport`, whose connection is kept alive and cancellable.
    public static func request(
        _ method: String, _ target: String, to endpoint: AgentEndpoint, timeouts: Timeouts = Timeouts()
    ) -> Result<HTTPResponse, TransportError> {
        let source: CancellationSource
        do { source = try CancellationSource() } catch { return .failure(.system(error)) }
        var connection = AgentConnection(endpoint: endpoint, timeouts: timeouts)
        let token = source.begin()
        defer {
            source.end(token)
            connection.close()
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: endpoint.host)
        return connection.exchange(HTTPRequest(method: method, target: target, headers: headers), token: token)
    }
}
