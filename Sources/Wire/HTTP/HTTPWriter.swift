/// Why a message cannot be written: a field that would break the framing
/// (a CR or LF in a value is header injection), or a start line the parser
/// here would reject.
public enum HTTPSerializationError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidMethod(String)
    case invalidTarget(String)
    case invalidVersion(HTTPVersion)
    case invalidStatus(Int)
    case invalidReasonPhrase(String)
    case invalidHeaderName(String)
    case invalidHeaderValue(name: String)

    public var description: String {
        switch self {
        case .invalidMethod(let method): "cannot write HTTP method \(method.debugDescription)"
        case .invalidTarget(let target): "cannot write HTTP request target \(target.debugDescription)"
        case .invalidVersion(let version): "cannot write \(version)"
        case .invalidStatus(let status): "cannot write HTTP status \(status) (100...999)"
        case .invalidReasonPhrase(let reason): "cannot write HTTP reason phrase \(reason.debugDescription)"
        case .invalidHeaderName(let name): "cannot write HTTP header name \(name.debugDescription)"
        case .invalidHeaderValue(let name): "the value of HTTP header \(name) holds a control character"
        }
    }
}

extension HTTPRequest {
    /// Methods whose requests carry a Content-Length even when the body is empty.
    static let methodsWithBody: Set<String> = ["POST", "PUT", "PATCH"]

    /// The request line and header section. `Content-Length` is set from
    /// `body` (any Content-Length or Transfer-Encoding in `headers` is
    /// replaced), when the body is not empty or the method is POST/PUT/PATCH.
    public func serializedHead() throws(HTTPSerializationError) -> [UInt8] {
        guard ASCII.isToken(head.method) else { throw .invalidMethod(head.method) }
        guard !head.target.utf8.isEmpty, head.target.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
            throw .invalidTarget(head.target)
        }
        var out: [UInt8] = []
        out.reserveCapacity(128 + head.headers.count * 48)
        out.append(contentsOf: head.method.utf8)
        out.append(ASCII.space)
        out.append(contentsOf: head.target.utf8)
        out.append(ASCII.space)
        try appendVersion(head.version, to: &out)
        out.append(contentsOf: [ASCII.cr, ASCII.lf])
        let length = body.isEmpty && !Self.methodsWithBody.contains(head.method) ? nil : body.count
        try appendFields(head.headers, contentLength: length, to: &out)
        return out
    }

    /// The whole message: head then body.
    public func serialized() throws(HTTPSerializationError) -> [UInt8] {
        var out = try serializedHead()
        out.append(contentsOf: body)
        return out
    }
}

extension HTTPResponse {
    /// The status line and header section. `Content-Length` is set from
    /// `body` (replacing any Content-Length or Transfer-Encoding in
    /// `headers`), except for 1xx and 204, which have none, and 304. For a
    /// response to HEAD it is the length of the body that is not sent.
    public func serializedHead() throws(HTTPSerializationError) -> [UInt8] {
        guard (100...999).contains(head.status) else { throw .invalidStatus(head.status) }
        guard head.reason.utf8.allSatisfy(ASCII.isFieldContentByte) else { throw .invalidReasonPhrase(head.reason) }
        var out: [UInt8] = []
        out.reserveCapacity(128 + head.headers.count * 48)
        try appendVersion(head.version, to: &out)
        out.append(ASCII.space)
        out.append(contentsOf: ASCII.decimal(head.status))
        out.append(ASCII.space)
        out.append(contentsOf: head.reason.utf8)
        out.append(contentsOf: [ASCII.cr, ASCII.lf])
        try appendFields(head.headers, contentLength: hasBody ? body.count : nil, to: &out)
        return out
    }

    /// The whole message; the body is left out for 1xx, 204, 304 and HEAD.
    public func serialized(requestMethod: String = "GET") throws(HTTPSerializationError) -> [UInt8] {
        var out = try serializedHead()
        if hasBody && requestMethod != "HEAD" { out.append(contentsOf: body) }
        return out
    }

    var hasBody: Bool { !(head.isInformational || head.status == 204 || head.status == 304) }
}

func appendVersion(_ version: HTTPVersion, to out: inout [UInt8]) throws(HTTPSerializationError) {
    guard version.major == 1, (0...9).contains(version.minor) else { throw .invalidVersion(version) }
    out.append(contentsOf: "HTTP/1.".utf8)
    out.append(UInt8(ascii: "0") + UInt8(version.minor))
}

/// Every field but framing ones, then `Content-Length` when given, then the blank line.
func appendFields(_ headers: HTTPHeaders, contentLength: Int?, to out: inout [UInt8]) throws(HTTPSerializationError) {
    for field in headers {
        guard ASCII.isToken(field.name) else { throw .invalidHeaderName(field.name) }
        if ASCII.caseInsensitiveEqual(field.name, "Content-Length") || ASCII.caseInsensitiveEqual(field.name, "Transfer-Encoding") {
            continue
        }
        guard field.value.utf8.allSatisfy(ASCII.isFieldContentByte) else { throw .invalidHeaderValue(name: field.name) }
        out.append(contentsOf: field.name.utf8)
        out.append(contentsOf: ": ".utf8)
        out.append(contentsOf: field.value.utf8)
        out.append(contentsOf: [ASCII.cr, ASCII.lf])
    }
    if let contentLength {
        out.append(contentsOf: "Content-Length: ".utf8)
        out.append(contentsOf: ASCII.decimal(contentLength))
        out.append(contentsOf: [ASCII.cr, ASCII.lf])
    }
    out.append(contentsOf: [ASCII.cr, ASCII.lf])
}
