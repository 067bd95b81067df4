/// Parses HTTP/1.1 requests (server side) from bytes fed in any split.
///
///     parser.feed(bytesJustRead)
///     while let request = try parser.nextRequest() { … }
///     // on end of file: try parser.endOfStream()
///
/// Pipelined requests come out in order. An error is final: the framing of
/// the connection is lost, so every later call throws the same error.
public struct HTTPRequestParser: Sendable {
    var core: HTTPMessageParser

    public init(limits: HTTPLimits = .default) {
        core = HTTPMessageParser(role: .requests, limits: limits)
    }

    public var limits: HTTPLimits { core.limits }

    /// Bytes received and not yet part of a returned message.
    public var bufferedByteCount: Int { core.bufferedByteCount }

    /// True between messages with nothing buffered: a close now loses nothing.
    public var isIdle: Bool { core.isIdle }

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        core.feed(bytes)
    }

    /// The next complete request, or nil until more bytes arrive.
    public mutating func nextRequest() throws(HTTPParseError) -> HTTPRequest? {
        guard let message = try core.next(requestMethod: nil) else { return nil }
        guard case .request(let head) = message.head else { return nil }
        return HTTPRequest(head: head, body: message.body, trailers: message.trailers, keepAlive: message.keepAlive)
    }

    /// The peer closed its side: throws `incompleteMessage` if a request was
    /// cut off (whole requests must already have been taken with `nextRequest`).
    public mutating func endOfStream() throws(HTTPParseError) {
        _ = try core.endOfStream()
    }
}

/// Parses HTTP/1.1 responses (client side) from bytes fed in any split.
///
/// Whether a response has a body depends on the request it answers (a
/// response to HEAD never has one), so `nextResponse` takes that request's
/// method. A response with neither Content-Length nor chunking ends when
/// the connection closes: `endOfStream` returns it.
public struct HTTPResponseParser: Sendable {
    var core: HTTPMessageParser

    public init(limits: HTTPLimits = .default) {
        core = HTTPMessageParser(role: .responses, limits: limits)
    }

    public var limits: HTTPLimits { core.limits }
    public var bufferedByteCount: Int { core.bufferedByteCount }
    public var isIdle: Bool { core.isIdle }

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        core.feed(bytes)
    }

    /// The next complete response to a request made with `requestMethod`,
    /// or nil until more bytes arrive. Interim (1xx) responses are returned
    /// like any other; the caller reads on for the final one.
    public mutating func nextResponse(to requestMethod: String = "GET") throws(HTTPParseError) -> HTTPResponse? {
        guard let message = try core.next(requestMethod: requestMethod) else { return nil }
        return Self.response(message)
    }

    /// The server closed the connection: returns the response that was
    /// delimited by the close, nil if nothing was pending, and throws
    /// `incompleteMessage` if a response was cut off.
    public mutating func endOfStream() throws(HTTPParseError) -> HTTPResponse? {
        guard let message = try core.endOfStream() else { return nil }
        return Self.response(message)
    }

    static func response(_ message: HTTPMessageParser.Message) -> HTTPResponse? {
        guard case .response(let head) = message.head else { return nil }
        return HTTPResponse(head: head, body: message.body, trailers: message.trailers, keepAlive: message.keepAlive)
    }
}

/// The one HTTP/1.1 message parser (RFC 9112) behind both roles: a state
/// machine over a byte buffer that resumes wherever the last call stopped,
/// so feeding a message one byte at a time costs linear time.
struct HTTPMessageParser: Sendable {
    enum Role: Sendable { case requests, responses }

    enum Head: Sendable {
        case request(HTTPRequestHead)
        case response(HTTPResponseHead)
    }

    struct Message: Sendable {
        var head: Head
        var body: [UInt8] = []
        var trailers: HTTPHeaders = [:]
        var keepAlive: Bool
    }

    enum Stage: Sendable {
        case head
        case fixedBody(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd
        case trailers
        case untilClose
    }

    enum Framing {
        case absent
        case length(Int)
        case chunked
    }

    let role: Role
    let limits: HTTPLimits
    var buffer: [UInt8] = []
    /// First byte not yet consumed.
    var start = 0
    /// Where a line scan resumes (a section or line is found once, not re-scanned per feed).
    var scan = 0
    /// Start of the line being scanned in a header or trailer section.
    var lineStart = 0
    var stage: Stage = .head
    var message: Message?
    var failure: HTTPParseError?

    init(role: Role, limits: HTTPLimits) {
        self.role = role
        self.limits = limits
    }

    var bufferedByteCount: Int { buffer.count - start }

    var isIdle: Bool {
        if case .head = stage { return buffer.count == start && failure == nil }
        return false
    }

    mutating func feed(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    mutating func next(requestMethod: String?) throws(HTTPParseError) -> Message? {
        if let failure { throw failure }
        do {
            let message = try advance(requestMethod: requestMethod)
            compact()
            return message
        } catch {
            failure = error
            throw error
        }
    }

    mutating func endOfStream() throws(HTTPParseError) -> Message? {
        if let failure { throw failure }
        switch stage {
        case .untilClose:
            return finishMessage()
        case .head where buffer.count == start:
            return nil
        default:
            failure = .incompleteMessage
            throw .incompleteMessage
        }
    }

    // MARK: the state machine

    mutating func advance(requestMethod: String?) throws(HTTPParseError) -> Message? {
        while true {
            switch stage {
            case .head:
                guard skipLeadingEmptyLines(), let end = try scanSection() else { return nil }
                if let complete = try beginMessage(headEnd: end, requestMethod: requestMethod) { return complete }

            case .fixedBody(let remaining):
                let taken = takeBody(upTo: remaining)
                if taken == remaining { return finishMessage() }
                stage = .fixedBody(remaining: remaining - taken)
                return nil

            case .chunkSize:
                guard let lineEnd = try scanLine() else { return nil }
                let size = try parseChunkSize(start..<lineEnd)
                consume(upTo: lineEnd + 2)
                if size == 0 {
                    stage = .trailers
                } else {
                    guard size <= limits.maxBodyBytes - message!.body.count else {
                        throw .limitExceeded(.bodyBytes, limit: limits.maxBodyBytes)
                    }
                    stage = .chunkData(remaining: size)
                }

            case .chunkData(let remaining):
                let taken = takeBody(upTo: remaining)
                guard taken == remaining else {
                    stage = .chunkData(remaining: remaining - taken)
                    return nil
                }
                stage = .chunkDataEnd

            case .chunkDataEnd:
                let available = buffer.count - start
                if available >= 1 && buffer[start] != ASCII.cr { throw .invalidChunkTerminator }
                guard available >= 2 else { return nil }
                guard buffer[start + 1] == ASCII.lf else { throw .invalidChunkTerminator }
                consume(upTo: start + 2)
                stage = .chunkSize

            case .trailers:
                guard let end = try scanSection() else { return nil }
                message!.trailers = try parseFields(lines(in: start..<end))
                consume(upTo: end)
                return finishMessage()

            case .untilClose:
                let available = buffer.count - start
                guard available <= limits.maxBodyBytes - message!.body.count else {
                    throw .limitExceeded(.bodyBytes, limit: limits.maxBodyBytes)
                }
                _ = takeBody(upTo: available)
                return nil
            }
        }
    }

    /// Parses the head in `start..<headEnd` and sets up the body; returns
    /// the message when it has no body.
    mutating func beginMessage(headEnd: Int, requestMethod: String?) throws(HTTPParseError) -> Message? {
        let lines = lines(in: start..<headEnd)
        // Leading empty lines were skipped, so a section always has a start line; stay total anyway.
        guard let firstLine = lines.first else { throw role == .requests ? .invalidRequestLine : .invalidStatusLine }
        var requestLine: (method: String, target: String, version: HTTPVersion)?
        var statusLine: (version: HTTPVersion, status: Int, reason: String)?
        switch role {
        case .requests: requestLine = try parseRequestLine(firstLine)
        case .responses: statusLine = try parseStatusLine(firstLine)
        }
        let headers = try parseFields(lines.dropFirst())
        let framing = try bodyFraming(headers)
        consume(upTo: headEnd)

        var hasBody = true
        if let requestLine {
            let head = HTTPRequestHead(method: requestLine.method, target: requestLine.target, version: requestLine.version, headers: headers)
            message = Message(head: .request(head), keepAlive: head.keepAlive)
        } else if let statusLine {
            let head = HTTPResponseHead(version: statusLine.version, status: statusLine.status, reason: statusLine.reason, headers: headers)
            message = Message(head: .response(head), keepAlive: head.keepAlive)
            // RFC 9112 §6.3: these responses end at the header section, whatever their headers say.
            hasBody = !(requestMethod == "HEAD" || head.isInformational || head.status == 204 || head.status == 304)
        }
        guard hasBody else { return finishMessage() }

        switch framing {
        case .absent where role == .requests:
            return finishMessage()
        case .absent:
            message!.keepAlive = false
            stage = .untilClose
        case .length(let length):
            guard length <= limits.maxBodyBytes else { throw .limitExceeded(.bodyBytes, limit: limits.maxBodyBytes) }
            if length == 0 { return finishMessage() }
            stage = .fixedBody(remaining: length)
        case .chunked:
            // Transfer-Encoding in an HTTP/1.0 message is faulty framing: close after it (RFC 9112 §6.1).
            if requestLine?.version == .http1_0 || statusLine?.version == .http1_0 { message!.keepAlive = false }
            stage = .chunkSize
        }
        return nil
    }

    mutating func finishMessage() -> Message? {
        let complete = message
        message = nil
        stage = .head
        return complete
    }

    /// Moves up to `limit` buffered bytes into the body; returns how many.
    mutating func takeBody(upTo limit: Int) -> Int {
        let count = min(limit, buffer.count - start)
        message!.body.append(contentsOf: buffer[start..<(start + count)])
        consume(upTo: start + count)
        return count
    }

    mutating func consume(upTo index: Int) {
        start = index
        scan = index
        lineStart = index
    }

    /// Drops the consumed prefix when that is cheap relative to what it
    /// frees, so a long-lived connection's buffer does not grow forever.
    mutating func compact() {
        guard start > 0 else { return }
        if start == buffer.count {
            if buffer.capacity > 1 << 20 { buffer = [] } else { buffer.removeAll(keepingCapacity: true) }
        } else if start >= 4096 && start * 2 >= buffer.count {
            buffer.removeSubrange(0..<start)
        } else {
            return
        }
        scan -= start
        lineStart -= start
        start = 0
    }

    // MARK: scanning

    /// RFC 9112 §2.2: empty lines before a request line are ignored. Returns
    /// false while a lone CR might still become one.
    mutating func skipLeadingEmptyLines() -> Bool {
        guard scan == start else { return true }
        var index = start
        while buffer.count - index >= 2 && buffer[index] == ASCII.cr && buffer[index + 1] == ASCII.lf { index += 2 }
        if index != start { consume(upTo: index) }
        return !(buffer.count - start == 1 && buffer[start] == ASCII.cr)
    }

    /// Finds the blank line ending a header or trailer section; returns the
    /// index after it, or nil until it arrives.
    mutating func scanSection() throws(HTTPParseError) -> Int? {
        let limit = limits.maxHeaderSectionBytes
        while scan < buffer.count {
            if scan - start >= limit { throw .limitExceeded(.headerSectionBytes, limit: limit) }
            if buffer[scan] == ASCII.lf {
                guard scan > lineStart, buffer[scan - 1] == ASCII.cr else { throw .invalidLineEnding }
                scan += 1
                if scan - 2 == lineStart { return scan }
                lineStart = scan
            } else {
                scan += 1
            }
        }
        return nil
    }

    /// Finds the end of one line (a chunk-size line); returns the index of its CR.
    mutating func scanLine() throws(HTTPParseError) -> Int? {
        let limit = limits.maxChunkLineBytes
        while scan < buffer.count {
            if scan - start >= limit { throw .limitExceeded(.chunkLineBytes, limit: limit) }
            if buffer[scan] == ASCII.lf {
                guard scan > start, buffer[scan - 1] == ASCII.cr else { throw .invalidLineEnding }
                scan += 1
                return scan - 2
            }
            scan += 1
        }
        return nil
    }

    /// The lines of a section (each without its CRLF), without the blank line ending it.
    func lines(in section: Range<Int>) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var lineBegin = section.lowerBound
        var index = section.lowerBound
        while index < section.upperBound - 2 {
            if buffer[index] == ASCII.lf {
                result.append(lineBegin..<(index - 1))
                lineBegin = index + 1
            }
            index += 1
        }
        return result
    }

    // MARK: lines

    func parseRequestLine(_ line: Range<Int>) throws(HTTPParseError) -> (String, String, HTTPVersion) {
        guard let firstSpace = buffer[line].firstIndex(of: ASCII.space),
            let secondSpace = buffer[(firstSpace + 1)..<line.upperBound].firstIndex(of: ASCII.space)
        else { throw .invalidRequestLine }
        let method = line.lowerBound..<firstSpace
        let target = (firstSpace + 1)..<secondSpace
        guard !method.isEmpty, buffer[method].allSatisfy(ASCII.isTokenByte),
            !target.isEmpty, buffer[target].allSatisfy({ $0 > 0x20 && $0 < 0x7f })
        else { throw .invalidRequestLine }
        guard let version = try parseVersion((secondSpace + 1)..<line.upperBound) else { throw .invalidRequestLine }
        return (text(method), text(target), version)
    }

    func parseStatusLine(_ line: Range<Int>) throws(HTTPParseError) -> (HTTPVersion, Int, String) {
        guard line.count >= 9, let version = try parseVersion(line.lowerBound..<(line.lowerBound + 8)),
            buffer[line.lowerBound + 8] == ASCII.space
        else { throw .invalidStatusLine }
        let codeStart = line.lowerBound + 9
        let codeEnd = buffer[codeStart..<line.upperBound].firstIndex(of: ASCII.space) ?? line.upperBound
        guard codeEnd - codeStart == 3, buffer[codeStart..<codeEnd].allSatisfy(Self.isDigit) else { throw .invalidStatusCode }
        let status = buffer[codeStart..<codeEnd].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        guard status >= 100 else { throw .invalidStatusCode }
        let reason = min(codeEnd + 1, line.upperBound)..<line.upperBound
        guard buffer[reason].allSatisfy(ASCII.isFieldContentByte) else { throw .invalidStatusLine }
        return (version, status, text(reason))
    }

    /// `HTTP/1.x`; nil when the text is not an HTTP version at all.
    func parseVersion(_ range: Range<Int>) throws(HTTPParseError) -> HTTPVersion? {
        let b = range.lowerBound
        guard range.count == 8, buffer[b..<(b + 5)].elementsEqual("HTTP/".utf8),
            Self.isDigit(buffer[b + 5]), buffer[b + 6] == UInt8(ascii: "."), Self.isDigit(buffer[b + 7])
        else { return nil }
        let version = HTTPVersion(major: Int(buffer[b + 5] - UInt8(ascii: "0")), minor: Int(buffer[b + 7] - UInt8(ascii: "0")))
        guard version.major == 1 else { throw .unsupportedVersion }
        return version
    }

    func parseFields(_ lines: some Collection<Range<Int>>) throws(HTTPParseError) -> HTTPHeaders {
        guard lines.count <= limits.maxHeaderCount else {
            throw .limitExceeded(.headerCount, limit: limits.maxHeaderCount)
        }
        var fields: [HTTPField] = []
        fields.reserveCapacity(lines.count)
        for line in lines {
            // The blank line ends a section, so field lines are never empty; stay total anyway.
            guard !line.isEmpty else { throw .invalidHeaderName }
            // A line starting with whitespace continues the previous one (obs-fold): rejected, RFC 9112 §5.2.
            if ASCII.isWhitespace(buffer[line.lowerBound]) { throw .obsoleteLineFolding }
            guard let colon = buffer[line].firstIndex(of: ASCII.colon), colon > line.lowerBound,
                buffer[line.lowerBound..<colon].allSatisfy(ASCII.isTokenByte)
            else { throw .invalidHeaderName }
            var valueStart = colon + 1
            var valueEnd = line.upperBound
            while valueStart < valueEnd && ASCII.isWhitespace(buffer[valueStart]) { valueStart += 1 }
            while valueEnd > valueStart && ASCII.isWhitespace(buffer[valueEnd - 1]) { valueEnd -= 1 }
            guard buffer[valueStart..<valueEnd].allSatisfy(ASCII.isFieldContentByte) else { throw .invalidHeaderValue }
            fields.append(HTTPField(name: text(line.lowerBound..<colon), value: text(valueStart..<valueEnd)))
        }
        return HTTPHeaders(fields)
    }

    /// How the body is delimited (RFC 9112 §6.3), rejecting every ambiguous
    /// case a request-smuggling attack relies on.
    func bodyFraming(_ headers: HTTPHeaders) throws(HTTPParseError) -> Framing {
        var length: Int?
        var codings: [String] = []
        var hasTransferEncoding = false
        for field in headers.fields {
            if ASCII.caseInsensitiveEqual(field.name, "Content-Length") {
                // `5, 5` (repeated identical values) is accepted, as RFC 9110 §8.6 allows.
                for element in field.value.split(separator: ",", omittingEmptySubsequences: false) {
                    guard let value = Self.decimal(ASCII.trimmingWhitespace(element)) else { throw .invalidContentLength }
                    if let length, length != value { throw .conflictingContentLength }
                    length = value
                }
            } else if ASCII.caseInsensitiveEqual(field.name, "Transfer-Encoding") {
                hasTransferEncoding = true
                codings += field.value.split(separator: ",").map { ASCII.trimmingWhitespace($0) }.filter { !$0.isEmpty }
            }
        }
        if hasTransferEncoding {
            guard length == nil else { throw .contentLengthWithTransferEncoding }
            guard codings.count == 1, ASCII.caseInsensitiveEqual(codings[0], "chunked") else { throw .unsupportedTransferEncoding }
            return .chunked
        }
        if let length { return .length(length) }
        return .absent
    }

    /// chunk-size [ BWS ; chunk-ext ]: the size, hexadecimal.
    func parseChunkSize(_ line: Range<Int>) throws(HTTPParseError) -> Int {
        var index = line.lowerBound
        var size = 0
        while index < line.upperBound, let digit = Self.hexValue(buffer[index]) {
            let (shifted, overflow) = size.multipliedReportingOverflow(by: 16)
            guard !overflow else { throw .invalidChunkSize }
            size = shifted + digit
            index += 1
        }
        guard index > line.lowerBound else { throw .invalidChunkSize }
        while index < line.upperBound && ASCII.isWhitespace(buffer[index]) { index += 1 }
        guard index < line.upperBound else { return size }
        guard buffer[index] == UInt8(ascii: ";") else { throw .invalidChunkSize }
        // Extensions carry nothing this project uses; they only must not smuggle control bytes.
        guard buffer[(index + 1)..<line.upperBound].allSatisfy(ASCII.isFieldContentByte) else { throw .invalidChunkExtension }
        return size
    }

    // MARK: bytes

    func text(_ range: Range<Int>) -> String {
        String(decoding: buffer[range], as: UTF8.self)
    }

    static func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }

    static func hexValue(_ byte: UInt8) -> Int? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): Int(byte - UInt8(ascii: "0"))
        case UInt8(ascii: "a")...UInt8(ascii: "f"): Int(byte - UInt8(ascii: "a")) + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): Int(byte - UInt8(ascii: "A")) + 10
        default: nil
        }
    }

    /// 1*DIGIT that fits `Int`; nil for anything else (signs, spaces, empty).
    static func decimal(_ text: String) -> Int? {
        guard !text.utf8.isEmpty else { return nil }
        var value = 0
        for byte in text.utf8 {
            guard isDigit(byte) else { return nil }
            let (shifted, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (sum, overflow2) = shifted.addingReportingOverflow(Int(byte - UInt8(ascii: "0")))
            guard !overflow1, !overflow2 else { return nil }
            value = sum
        }
        return value
    }
}
