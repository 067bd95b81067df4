import EventRing
import Posix

/// Where the trace agent listens: `http://HOST:PORT` (IPv4 or `localhost`)
/// or `unix:///path/to/socket`, as in `DD_TRACE_AGENT_URL`.
public struct AgentEndpoint: Hashable, Sendable, CustomStringConvertible {
    public let address: SocketAddress
    /// The `Host` header value.
    public let host: String

    public init(address: SocketAddress, host: String? = nil) {
        self.address = address
        switch address {
        case .ipv4(let ipv4): self.host = host ?? "\(ipv4)"
        case .unix: self.host = host ?? "localhost"
        }
    }

    /// Parses an agent URL; the error says what form is expected.
    public init(parsing url: String) throws(TransportError) {
        func invalid(_ why: String) -> TransportError {
            .invalidEndpoint("\(url): \(why) (expected http://127.0.0.1:8126 or unix:///path/to/apm.socket)")
        }
        do {
            if url.hasPrefix("unix://") {
                self.init(address: try .unix(path: String(url.dropFirst(7))))
            } else if url.hasPrefix("unix:") {
                self.init(address: try .unix(path: String(url.dropFirst(5))))
            } else {
                var rest = Substring(url)
                if rest.hasPrefix("http://") { rest = rest.dropFirst(7) }
                else if rest.contains("://") { throw invalid("only http and unix URLs are supported") }
                if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
                guard let colon = rest.lastIndex(of: ":") else { throw invalid("no port") }
                var hostPart = String(rest[..<colon])
                if hostPart == "localhost" { hostPart = "127.0.0.1" }
                let address = try SocketAddress.ipv4(parsing: hostPart + ":" + rest[rest.index(after: colon)...])
                self.init(address: address, host: String(rest))
            }
        } catch let error as SocketAddressError {
            throw invalid("\(error)")
        } catch let error as TransportError {
            throw error
        } catch {
            throw invalid("\(error)")
        }
    }

    public var description: String {
        switch address {
        case .ipv4(let ipv4): "http://\(ipv4)"
        case .unix(let unix): "unix://\(unix.path)"
        }
    }
}

/// Why a send did not get a response, in terms a user can act on.
public enum TransportError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Phase: String, Sendable { case connect, write, read, total }

    case invalidEndpoint(String)
    /// Nothing listens at the agent address.
    case refused(String)
    /// The agent closed or reset the connection mid-exchange.
    case reset(String)
    case timedOut(Phase)
    /// The agent's reply is not HTTP we can read.
    case malformedResponse(String)
    case cancelled(CancelReason)
    /// The transport was closed: a programming error in the caller.
    case closed
    case system(SystemError)

    public var description: String {
        switch self {
        case .invalidEndpoint(let why): "invalid agent URL \(why)"
        case .refused(let endpoint): "connection refused by \(endpoint): is the agent running?"
        case .reset(let detail): "connection reset: \(detail)"
        case .timedOut(let phase): "timed out during \(phase.rawValue)"
        case .malformedResponse(let why): "malformed agent response: \(why)"
        case .cancelled(let reason): "cancelled (\(reason.name))"
        case .closed: "send after close: the transport is closed"
        case .system(let error): "\(error)"
        }
    }

    /// Whether sending the same payload again may succeed.
    public var isRetryable: Bool {
        switch self {
        // A garbled reply may hide a payload the agent did take: sending
        // again is at-least-once delivery, and the agent counts duplicates.
        case .refused, .reset, .timedOut, .system, .malformedResponse: true
        case .invalidEndpoint, .cancelled, .closed: false
        }
    }
}
