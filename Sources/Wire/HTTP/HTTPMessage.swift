/// `HTTP/major.minor`. Only major version 1 is spoken here.
public struct HTTPVersion: Hashable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int

    public init(major: Int, minor: Int) {
        self.major = major
        self.minor = minor
    }

    public static let http1_0 = HTTPVersion(major: 1, minor: 0)
    public static let http1_1 = HTTPVersion(major: 1, minor: 1)

    public var description: String { "HTTP/\(major).\(minor)" }
}

/// Whether a connection stays open after a message with these headers:
/// HTTP/1.1 does unless `Connection: close`; HTTP/1.0 does only with
/// `Connection: keep-alive` (RFC 9112 §9.3).
func persistsConnection(version: HTTPVersion, headers: HTTPHeaders) -> Bool {
    if headers.hasToken("close", for: "Connection") { return false }
    if version.major > 1 || (version.major == 1 && version.minor >= 1) { return true }
    return headers.hasToken("keep-alive", for: "Connection")
}

public struct HTTPRequestHead: Equatable, Sendable {
    public var method: String
    /// The request-target as sent (`/v0.4/traces`, `/stats?x=1`).
    public var target: String
    public var version: HTTPVersion
    public var headers: HTTPHeaders

    public init(method: String, target: String, version: HTTPVersion = .http1_1, headers: HTTPHeaders = [:]) {
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers
    }

    /// What the headers and version say about the connection.
    public var keepAlive: Bool { persistsConnection(version: version, headers: headers) }
}

public struct HTTPResponseHead: Equatable, Sendable {
    public var version: HTTPVersion
    public var status: Int
    public var reason: String
    public var headers: HTTPHeaders

    public init(version: HTTPVersion = .http1_1, status: Int, reason: String? = nil, headers: HTTPHeaders = [:]) {
        self.version = version
        self.status = status
        self.reason = reason ?? HTTPResponseHead.standardReason(for: status)
        self.headers = headers
    }

    public var keepAlive: Bool { persistsConnection(version: version, headers: headers) }

    /// 1xx: an interim response; the final one follows.
    public var isInformational: Bool { (100...199).contains(status) }

    /// The usual reason phrase for the statuses this project sends.
    public static func standardReason(for status: Int) -> String {
        switch status {
        case 100: "Continue"
        case 101: "Switching Protocols"
        case 200: "OK"
        case 202: "Accepted"
        case 204: "No Content"
        case 304: "Not Modified"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 415: "Unsupported Media Type"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        default: ""
        }
    }
}

public struct HTTPRequest: Equatable, Sendable {
    public var head: HTTPRequestHead
    public var body: [UInt8]
    /// Fields after a chunked body's last chunk.
    public var trailers: HTTPHeaders
    /// Whether the connection may carry another request after this one
    /// (from the version and `Connection`, and false when framing was faulty).
    public var keepAlive: Bool

    public init(head: HTTPRequestHead, body: [UInt8] = [], trailers: HTTPHeaders = [:], keepAlive: Bool? = nil) {
        self.head = head
        self.body = body
        self.trailers = trailers
        self.keepAlive = keepAlive ?? head.keepAlive
    }

    public init(method: String, target: String, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.init(head: HTTPRequestHead(method: method, target: target, headers: headers), body: body)
    }

    public var method: String { head.method }
    public var target: String { head.target }
    public var headers: HTTPHeaders { head.headers }
}

public struct HTTPResponse: Equatable, Sendable {
    public var head: HTTPResponseHead
    public var body: [UInt8]
    public var trailers: HTTPHeaders
    /// Whether the connection may carry another response: false after
    /// `Connection: close`, HTTP/1.0 without keep-alive, or a body that
    /// ended at connection close.
    public var keepAlive: Bool

    public init(head: HTTPResponseHead, body: [UInt8] = [], trailers: HTTPHeaders = [:], keepAlive: Bool? = nil) {
        self.head = head
        self.body = body
        self.trailers = trailers
        self.keepAlive = keepAlive ?? head.keepAlive
    }

    public init(status: Int, reason: String? = nil, headers: HTTPHeaders = [:], body: [UInt8] = []) {
        self.init(head: HTTPResponseHead(status: status, reason: reason, headers: headers), body: body)
    }

    public var status: Int { head.status }
    public var headers: HTTPHeaders { head.headers }
}

/// Bounds on what a peer can make the parser hold.
public struct HTTPLimits: Equatable, Sendable {
    /// Start line plus header fields plus the blank line (also bounds a
    /// trailer section).
    public var maxHeaderSectionBytes: Int
    /// Header fields in one section (also bounds trailers).
    public var maxHeaderCount: Int
    /// Body bytes, however framed.
    public var maxBodyBytes: Int
    /// One chunk-size line including extensions.
    public var maxChunkLineBytes: Int

    public init(
        maxHeaderSectionBytes: Int = 16 * 1024, maxHeaderCount: Int = 100,
        maxBodyBytes: Int = 64 * 1024 * 1024, maxChunkLineBytes: Int = 4096
    ) {
        self.maxHeaderSectionBytes = maxHeaderSectionBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
        self.maxChunkLineBytes = maxChunkLineBytes
    }

    public static let `default` = HTTPLimits()
}

/// Which limit a message exceeded.
public enum HTTPLimit: String, Equatable, Sendable {
    case headerSectionBytes = "header section size"
    case headerCount = "header count"
    case bodyBytes = "body size"
    case chunkLineBytes = "chunk-size line length"
}

/// Why bytes are not an acceptable HTTP/1.1 message. After one of these
/// the connection's framing is lost: the parser keeps failing with it, and
/// the peer should get a 400 (431/413 for limits) and a close.
public enum HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case limitExceeded(HTTPLimit, limit: Int)
    case invalidRequestLine
    case invalidStatusLine
    /// Not three digits, or below 100.
    case invalidStatusCode
    case unsupportedVersion
    /// A line ended in LF without CR.
    case invalidLineEnding
    /// Empty, or a byte outside tchar (a control character, a space before the colon).
    case invalidHeaderName
    /// A control character in a field value.
    case invalidHeaderValue
    /// A field line starting with whitespace: obsolete line folding (RFC 9112 §5.2).
    case obsoleteLineFolding
    /// Not a plain decimal that fits (negative, signed, overflowing, empty).
    case invalidContentLength
    /// Two Content-Length values that differ.
    case conflictingContentLength
    /// Both Content-Length and Transfer-Encoding (a request-smuggling vector).
    case contentLengthWithTransferEncoding
    /// A transfer coding other than exactly `chunked`.
    case unsupportedTransferEncoding
    case invalidChunkSize
    case invalidChunkExtension
    /// Chunk data not followed by CRLF.
    case invalidChunkTerminator
    /// The stream ended inside a message.
    case incompleteMessage

    /// The status a server should answer with.
    public var responseStatus: Int {
        switch self {
        case .limitExceeded(.headerSectionBytes, _), .limitExceeded(.headerCount, _): 431
        case .limitExceeded(.bodyBytes, _): 413
        case .unsupportedVersion: 505
        case .unsupportedTransferEncoding: 501
        default: 400
        }
    }

    public var description: String {
        switch self {
        case let .limitExceeded(limit, value): "HTTP message exceeds the \(limit.rawValue) limit of \(value)"
        case .invalidRequestLine: "malformed HTTP request line"
        case .invalidStatusLine: "malformed HTTP status line"
        case .invalidStatusCode: "HTTP status code is not three digits from 100"
        case .unsupportedVersion: "unsupported HTTP version (only HTTP/1.x)"
        case .invalidLineEnding: "HTTP line ends in a bare LF (CRLF required)"
        case .invalidHeaderName: "invalid HTTP header field name"
        case .invalidHeaderValue: "control character in an HTTP header field value"
        case .obsoleteLineFolding: "obsolete line folding in HTTP header section"
        case .invalidContentLength: "invalid Content-Length"
        case .conflictingContentLength: "conflicting Content-Length values"
        case .contentLengthWithTransferEncoding: "both Content-Length and Transfer-Encoding"
        case .unsupportedTransferEncoding: "unsupported Transfer-Encoding (only chunked)"
        case .invalidChunkSize: "invalid chunk size"
        case .invalidChunkExtension: "invalid chunk extension"
        case .invalidChunkTerminator: "chunk data not followed by CRLF"
        case .incompleteMessage: "connection closed in the middle of an HTTP message"
        }
    }
}
