import Glibc
import Posix
import Wire

/// What a traces request is answered with, decided when it was read and
/// written when its hold or delay ends.
enum ReplyShape {
    case response(HTTPResponse)
    /// The head at once, then the body a byte per interval.
    case slowBody(HTTPResponse)
    /// RST instead of a reply.
    case reset
    /// Bytes that are not HTTP, then a close.
    case garbage
    /// The head (with its Content-Length), then a close.
    case closeAfterHeaders(HTTPResponse)

    var status: Int {
        switch self {
        case .response(let response), .slowBody(let response), .closeAfterHeaders(let response): response.status
        case .reset, .garbage: 0
        }
    }
}

/// A traces reply waiting for its delay to pass or for a release.
struct PendingTracesReply {
    var shape: ReplyShape
    var keepAlive: Bool
    var spans: Int
    var bytes: Int
    var path: String
    /// When the request was read (monotonic ns): the ring's `delay_ms` is measured from here.
    var readAt: UInt64
    /// When a delayed reply goes out; nil while held.
    var releaseAt: Deadline?
    /// Order among held replies (release takes the oldest first); nil when not held.
    var holdSequence: UInt64?
}

/// A request parked until something happens on other connections.
enum PendingReply {
    case traces(PendingTracesReply)
    /// `GET /control/wait-held`: answered once `count` replies are held, or with 408 at `deadline`.
    case waitHeld(count: Int, deadline: Deadline, keepAlive: Bool)
}

/// What happens once the output buffer has been written.
enum AfterWrite {
    case keepOpen
    /// Shut down writing, drain what the peer still sends, then close
    /// (closing with unread input would send RST and could destroy the reply).
    case close
}

/// One accepted connection: its parser, its output, and at most one parked
/// reply. Requests on a connection are answered in order, so while a reply
/// is parked, further (pipelined) requests wait in the parser.
final class ServerConnection {
    let id: UInt64
    let socket: Socket
    var parser: HTTPRequestParser
    var output: [UInt8] = []
    var outputOffset = 0
    var pending: PendingReply?
    /// Body bytes of a slow-body reply still to trickle, and when the next goes.
    var trickle: (bytes: ArraySlice<UInt8>, next: Deadline, keepAlive: Bool)?
    var afterWrite: AfterWrite = .keepOpen
    /// Set once writing is shut down: input is drained until end of file or this deadline.
    var lingerDeadline: Deadline?
    var lingerDrained = 0
    private(set) var isClosed = false
    /// The peer shut down its sending side.
    var inputEnded = false
    /// Bytes of the request being received, up to its head, to answer `Expect: 100-continue`.
    var headProbe: [UInt8] = []
    var headProbeDone = false
    /// Set while `AgentServer.takeRequests` runs for this connection.
    var isTakingRequests = false

    /// Input buffered while a reply is parked beyond which the connection stops reading.
    static let parkedInputLimit = 1 << 20
    static let lingerLimitBytes = 16 << 20
    static let lingerMilliseconds: UInt64 = 2000

    init(id: UInt64, socket: Socket, limits: HTTPLimits) {
        self.id = id
        self.socket = socket
        parser = HTTPRequestParser(limits: limits)
    }

    var hasOutput: Bool { outputOffset < output.count }

    /// Whether a new request may be taken from the parser now.
    var isReadyForRequest: Bool {
        !isClosed && pending == nil && trickle == nil && afterWrite == .keepOpen && lingerDeadline == nil
    }

    var heldSequence: UInt64? {
        if case .traces(let reply)? = pending { return reply.holdSequence }
        return nil
    }

    /// The poll events this connection waits for (0 when closed).
    var pollEvents: Int16 {
        if isClosed { return 0 }
        if lingerDeadline != nil { return Int16(POLLIN) }
        var events: Int16 = 0
        // Keep reading while parked, to notice a client that gives up; but
        // stop once a client that does not read its replies has sent a lot.
        if !inputEnded && (isReadyForRequest || parser.bufferedByteCount < Self.parkedInputLimit) { events |= Int16(POLLIN) }
        if hasOutput { events |= Int16(POLLOUT) }
        return events
    }

    /// The earliest time this connection needs attention without I/O.
    var nextDeadline: Deadline? {
        if isClosed { return nil }
        var earliest = lingerDeadline
        func consider(_ deadline: Deadline?) {
            guard let deadline else { return }
            earliest = earliest.map { min($0, deadline) } ?? deadline
        }
        switch pending {
        case .traces(let reply)?: consider(reply.releaseAt)
        case .waitHeld(_, let deadline, _)?: consider(deadline)
        case nil: break
        }
        if !hasOutput { consider(trickle?.next) }
        return earliest
    }

    // MARK: I/O

    enum ReadOutcome {
        /// What was read, in the caller's buffer (not copied out: a payload's bytes are copied enough on the way in).
        case bytes(ArraySlice<UInt8>)
        case wouldBlock
        case endOfFile
        case failed(Errno)
    }

    func read(into buffer: inout [UInt8]) -> ReadOutcome {
        let count = buffer.count
        let result = buffer.withUnsafeMutableBytes { raw in
            Result { () throws(SystemError) in try socket.receive(into: raw) }
        }
        switch result {
        case .success(0): return .endOfFile
        case .success(let n): return .bytes(buffer[0..<min(n, count)])
        case .failure(let error) where error.errno == .wouldBlock: return .wouldBlock
        case .failure(let error): return .failed(error.errno)
        }
    }

    /// Writes what it can of the output; returns false when the peer is gone.
    func flush() -> Bool {
        while hasOutput {
            let result = output.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try socket.send(UnsafeRawBufferPointer(rebasing: raw[outputOffset...])) }
            }
            switch result {
            case .success(let n): outputOffset += n
            case .failure(let error) where error.errno == .wouldBlock: return true
            case .failure: return false
            }
        }
        output.removeAll(keepingCapacity: output.capacity <= 1 << 20)
        outputOffset = 0
        return true
    }

    func append(_ bytes: [UInt8]) {
        if output.isEmpty { output = bytes } else { output += bytes }
    }

    /// Shuts down writing and starts draining input (see `AfterWrite.close`).
    func beginLingeringClose() {
        guard !isClosed, lingerDeadline == nil else { return }
        if (try? socket.shutdown(.write)) == nil {
            close()
            return
        }
        lingerDeadline = .after(milliseconds: Self.lingerMilliseconds)
    }

    /// Resets the connection: `SO_LINGER` with a zero timeout makes close()
    /// send RST and drop unsent data, so the peer's next read fails with
    /// ECONNRESET instead of seeing an orderly end of file.
    func reset() {
        guard !isClosed else { return }
        var option = linger(l_onoff: 1, l_linger: 0)
        // Posix.Socket.Option covers on/off options only; SO_LINGER takes a struct.
        _ = setsockopt(socket.rawValue, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        close()
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        try? socket.close()
    }
}
