import Posix
import Wire

/// Where the mock agent listens: `127.0.0.1:PORT` (port 0 lets the kernel
/// pick a free one; the `listening on` line names it) or `unix:/path`.
public enum AgentListenAddress: Equatable, Sendable, CustomStringConvertible {
    case tcp(IPv4Address)
    case unix(path: String)

    /// The default of a real Datadog agent: loopback, port 8126.
    public static let standard = AgentListenAddress.tcp(.loopback(port: 8126))

    public init(parsing text: String) throws(AgentConfigurationError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            do { _ = try UnixAddress(path: path) } catch { throw .invalidListenAddress(text, reason: error.description) }
            self = .unix(path: path)
        } else {
            do { self = .tcp(try IPv4Address(parsing: text)) } catch {
                throw .invalidListenAddress(text, reason: "expected 127.0.0.1:PORT (0 for a free port) or unix:/path")
            }
        }
    }

    var socketAddress: SocketAddress {
        get throws(AgentConfigurationError) {
            switch self {
            case .tcp(let address): return .ipv4(address)
            case .unix(let path):
                do { return try .unix(path: path) } catch { throw .invalidListenAddress(description, reason: error.description) }
            }
        }
    }

    /// `127.0.0.1:8126` or `unix:/path`: the form `init(parsing:)` reads.
    public var description: String {
        switch self {
        case .tcp(let address): address.description
        case .unix(let path): "unix:" + path
        }
    }
}

/// A fault the agent injects into its replies to traces requests.
///
/// Whether the agent *counts* the spans of a payload it answers with a fault
/// follows what the fault stands for:
/// - `500`, `413`, `429`: the agent refused the payload, so its spans are
///   not counted (they show up as `rejected_spans`). A client retries 500
///   and 429 (the spans arrive later, once) and drops on 413 (the spans are
///   its counted drops).
/// - `slow-body`, `reset`, `garbage`, `close-after-headers`: the agent read
///   and took the payload, and only the reply is slow or damaged, so the
///   spans are counted. A client that then re-sends them (at-least-once
///   delivery) makes them show up as `duplicate_spans`: that is the point.
/// Either way "unique spans at the agent + spans the client dropped =
/// spans the client accepted" holds.
public enum AgentFaultKind: String, CaseIterable, Sendable {
    /// `500 Internal Server Error`.
    case internalError = "500"
    /// `413 Content Too Large`.
    case payloadTooLarge = "413"
    /// `429 Too Many Requests`.
    case tooManyRequests = "429"
    /// A `200` whose headers come at once and whose body is trickled a byte
    /// per interval.
    case slowBody = "slow-body"
    /// The connection is reset (RST: `SO_LINGER` 0, then close) after the
    /// request was read; the client's read fails with `ECONNRESET`.
    case reset
    /// Bytes that are not HTTP, then a close.
    case garbage
    /// A `200` head announcing a `Content-Length`, then a close without the body.
    case closeAfterHeaders = "close-after-headers"

    /// Whether a payload answered with this fault is counted (see the type's comment).
    public var countsSpans: Bool {
        switch self {
        case .internalError, .payloadTooLarge, .tooManyRequests: false
        case .slowBody, .reset, .garbage, .closeAfterHeaders: true
        }
    }

    /// The status of the reply the client can see, 0 when there is none (reset, garbage).
    var replyStatus: Int {
        switch self {
        case .internalError: 500
        case .payloadTooLarge: 413
        case .tooManyRequests: 429
        case .slowBody, .closeAfterHeaders: 200
        case .reset, .garbage: 0
        }
    }

    static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }
}

/// A fault and how many more traces requests receive it.
public struct AgentFault: Equatable, Sendable, CustomStringConvertible {
    public var kind: AgentFaultKind
    /// Traces requests still to receive the fault; nil for every one.
    public var remaining: Int?

    public init(kind: AgentFaultKind, remaining: Int? = nil) {
        self.kind = kind
        self.remaining = remaining
    }

    /// `KIND` or `KIND:N`, e.g. `500`, `reset:2`, `slow-body:1`.
    public init(parsing text: String) throws(AgentConfigurationError) {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
        guard let kind = AgentFaultKind(rawValue: String(parts[0])) else {
            throw .invalidFault(text, reason: "unknown kind; one of \(AgentFaultKind.names)")
        }
        var remaining: Int?
        if parts.count == 2 {
            guard let count = Int(parts[1]), count > 0 else {
                throw .invalidFault(text, reason: "N must be a positive number of requests")
            }
            remaining = count
        }
        self.init(kind: kind, remaining: remaining)
    }

    public var description: String { kind.rawValue + (remaining.map { ":\($0)" } ?? "") }
}

/// How `forkscope agent` runs.
public struct AgentConfiguration: Sendable {
    public var listen: AgentListenAddress
    /// A fixed delay before each traces reply, in milliseconds.
    public var delayMilliseconds: UInt64
    /// Hold every traces reply until released through `/control/release`.
    public var hold: Bool
    public var fault: AgentFault?
    /// A ring to publish `process.start` and `agent.request` events into.
    public var ringPath: String?
    /// Log every request on stderr (off by default: a parent that never
    /// reads the agent's stderr pipe must not make it block).
    public var verbose: Bool
    /// The pause between two body bytes of a `slow-body` reply.
    public var slowBodyIntervalMilliseconds: UInt64
    public var limits: HTTPLimits

    public init(
        listen: AgentListenAddress = .standard, delayMilliseconds: UInt64 = 0, hold: Bool = false,
        fault: AgentFault? = nil, ringPath: String? = nil, verbose: Bool = false,
        slowBodyIntervalMilliseconds: UInt64 = 50, limits: HTTPLimits = .default
    ) {
        self.listen = listen
        self.delayMilliseconds = delayMilliseconds
        self.hold = hold
        self.fault = fault
        self.ringPath = ringPath
        self.verbose = verbose
        self.slowBodyIntervalMilliseconds = slowBodyIntervalMilliseconds
        self.limits = limits
    }
}

/// Why the agent cannot start: each a message a user can act on.
public enum AgentConfigurationError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidListenAddress(String, reason: String)
    case invalidFault(String, reason: String)
    case cannotListen(String, SystemError)
    case unixPathInUse(String)
    case ring(String, reason: String)

    public var description: String {
        switch self {
        case let .invalidListenAddress(text, reason): "invalid listen address \"\(text)\": \(reason)"
        case let .invalidFault(text, reason): "invalid fault \"\(text)\": \(reason)"
        case let .cannotListen(address, error):
            error.errno == .addressInUse
                ? "cannot listen on \(address): the address is in use; pick another port (127.0.0.1:0 picks a free one)"
                : "cannot listen on \(address): \(error)"
        case .unixPathInUse(let path): "cannot listen on unix:\(path): the path exists and is not a socket; remove it or pick another path"
        case let .ring(path, reason): "cannot publish into the ring \(path): \(reason)"
        }
    }
}
