import TestSupport
import XCTest
@testable import Wire

/// Feeds `chunks` in order and collects every request the parser yields.
func parseRequests(_ chunks: [[UInt8]], limits: HTTPLimits = .default) throws -> [HTTPRequest] {
    var parser = HTTPRequestParser(limits: limits)
    var requests: [HTTPRequest] = []
    for chunk in chunks {
        parser.feed(chunk)
        while let request = try parser.nextRequest() { requests.append(request) }
    }
    try parser.endOfStream()
    return requests
}

/// Feeds `chunks` and collects responses to `methods` in order, including
/// one ended by the close.
func parseResponses(_ chunks: [[UInt8]], methods: [String] = [], limits: HTTPLimits = .default) throws -> [HTTPResponse] {
    var parser = HTTPResponseParser(limits: limits)
    var responses: [HTTPResponse] = []
    func method() -> String { responses.count < methods.count ? methods[responses.count] : "GET" }
    for chunk in chunks {
        parser.feed(chunk)
        while let response = try parser.nextResponse(to: method()) { responses.append(response) }
    }
    if let last = try parser.endOfStream() { responses.append(last) }
    return responses
}

func byteByByte(_ bytes: [UInt8]) -> [[UInt8]] { bytes.map { [$0] } }

final class HTTPParserTests: XCTestCase {
    let tracesRequest = [UInt8](ascii:
        "PUT /v0.4/traces HTTP/1.1\r\nHost: localhost:8126\r\nContent-Type: application/msgpack\r\n"
        + "X-Datadog-Trace-Count: 1\r\nContent-Length: 5\r\n\r\n") + [0x91, 0x91, 0x80, 0xc0, 0xc3]

    let chunkedRequest = [UInt8](ascii:
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + "5;name=value\r\nhello\r\n"
        + "0007 \r\n, world\r\n"
        + "0\r\nChecksum: abc\r\nX-Done: yes\r\n\r\n")

    /// Asserts `bytes` parse to the same requests fed whole, byte by byte,
    /// and in every 2-way split; returns them.
    @discardableResult
    func assertRequestsInEverySplit(_ bytes: [UInt8], count: Int, file: StaticString = #filePath, line: UInt = #line) throws -> [HTTPRequest] {
        let whole = try parseRequests([bytes])
        XCTAssertEqual(whole.count, count, file: file, line: line)
        XCTAssertEqual(try parseRequests(byteByByte(bytes)), whole, "byte by byte", file: file, line: line)
        for split in twoWaySplits(bytes) {
            XCTAssertEqual(try parseRequests(split), whole, "split at \(split[0].count)", file: file, line: line)
        }
        return whole
    }

    @discardableResult
    func assertResponsesInEverySplit(
        _ bytes: [UInt8], methods: [String] = [], count: Int, file: StaticString = #filePath, line: UInt = #line
    ) throws -> [HTTPResponse] {
        let whole = try parseResponses([bytes], methods: methods)
        XCTAssertEqual(whole.count, count, file: file, line: line)
        XCTAssertEqual(try parseResponses(byteByByte(bytes), methods: methods), whole, "byte by byte", file: file, line: line)
        for split in twoWaySplits(bytes) {
            XCTAssertEqual(try parseResponses(split, methods: methods), whole, "split at \(split[0].count)", file: file, line: line)
        }
        return whole
    }

    func assertRequestRejected(_ text: String, _ expected: HTTPParseError, limits: HTTPLimits = .default, file: StaticString = #filePath, line: UInt = #line) {
        assertRequestRejected([UInt8](ascii: text), expected, limits: limits, file: file, line: line)
    }

    func assertRequestRejected(_ bytes: [UInt8], _ expected: HTTPParseError, limits: HTTPLimits = .default, file: StaticString = #filePath, line: UInt = #line) {
        for chunks in [[bytes], byteByByte(bytes)] {
            XCTAssertThrowsError(try parseRequests(chunks, limits: limits), file: file, line: line) { error in
                XCTAssertEqual(error as? HTTPParseError, expected, file: file, line: line)
            }
        }
    }

    func assertResponseRejected(_ text: String, _ expected: HTTPParseError, file: StaticString = #filePath, line: UInt = #line) {
        let bytes = [UInt8](ascii: text)
        for chunks in [[bytes], byteByByte(bytes)] {
            XCTAssertThrowsError(try parseResponses(chunks), file: file, line: line) { error in
                XCTAssertEqual(error as? HTTPParseError, expected, file: file, line: line)
            }
        }
    }

    // MARK: requests

    func testTraceUploadParsesInEverySplit() throws {
        let request = try assertRequestsInEverySplit(tracesRequest, count: 1)[0]
        XCTAssertEqual(request.method, "PUT")
        XCTAssertEqual(request.target, "/v0.4/traces")
        XCTAssertEqual(request.head.version, .http1_1)
        XCTAssertEqual(request.body, [0x91, 0x91, 0x80, 0xc0, 0xc3])
        XCTAssertTrue(request.keepAlive)
        XCTAssertEqual(request.headers.map(\.name), ["Host", "Content-Type", "X-Datadog-Trace-Count", "Content-Length"], "wire order kept")
        XCTAssertEqual(request.headers["content-type"], "application/msgpack", "lookup ignores case")
        XCTAssertEqual(request.headers["X-DATADOG-TRACE-COUNT"], "1")
        XCTAssertNil(request.headers["Missing"])
    }

    func testChunkedBodyWithExtensionsAndTrailersParsesInEverySplit() throws {
        let request = try assertRequestsInEverySplit(chunkedRequest, count: 1)[0]
        XCTAssertEqual(String(decoding: request.body, as: UTF8.self), "hello, world")
        XCTAssertEqual(request.trailers, ["Checksum": "abc", "X-Done": "yes"])
        XCTAssertTrue(request.keepAlive)
    }

    func testPipelinedRequestsComeOutInOrder() throws {
        let bytes = [UInt8](ascii: "GET /a HTTP/1.1\r\nHost: x\r\n\r\n") + tracesRequest + chunkedRequest
            + [UInt8](ascii: "\r\nDELETE /c HTTP/1.1\r\nConnection: close\r\n\r\n")
        let requests = try assertRequestsInEverySplit(bytes, count: 4)
        XCTAssertEqual(requests.map(\.target), ["/a", "/v0.4/traces", "/upload", "/c"])
        XCTAssertEqual(requests.map(\.keepAlive), [true, true, true, false])
        XCTAssertEqual(requests[0].body, [])
    }

    func testLeadingEmptyLinesBeforeARequestAreIgnored() throws {
        let requests = try assertRequestsInEverySplit([UInt8](ascii: "\r\n\r\nGET / HTTP/1.1\r\n\r\n"), count: 1)
        XCTAssertEqual(requests[0].target, "/")
    }

    func testKeepAliveFollowsVersionAndConnection() throws {
        let cases: [(String, Bool)] = [
            ("GET / HTTP/1.1\r\n\r\n", true),
            ("GET / HTTP/1.1\r\nConnection: close\r\n\r\n", false),
            ("GET / HTTP/1.1\r\nConnection: Upgrade, CLOSE\r\n\r\n", false),
            ("GET / HTTP/1.0\r\n\r\n", false),
            ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
            ("GET / HTTP/1.0\r\nConnection: Keep-Alive, close\r\n\r\n", false),
            // Chunked framing in HTTP/1.0 is faulty: the connection closes after it.
            ("POST / HTTP/1.0\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false),
        ]
        for (text, keepAlive) in cases {
            XCTAssertEqual(try parseRequests([[UInt8](ascii: text)]).first?.keepAlive, keepAlive, text)
        }
    }

    func testRepeatedIdenticalContentLengthIsAccepted() throws {
        let requests = try parseRequests([[UInt8](ascii: "POST / HTTP/1.1\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok")])
        XCTAssertEqual(requests.first?.body, [UInt8](ascii: "ok"))
    }

    func testHeaderValuesAreTrimmedAndMayBeEmpty() throws {
        let request = try parseRequests([[UInt8](ascii: "GET / HTTP/1.1\r\nA:\t spaced value \t\r\nB:\r\nC: x\u{80}y\r\n\r\n")])[0]
        XCTAssertEqual(request.headers["A"], "spaced value")
        XCTAssertEqual(request.headers["B"], "")
        XCTAssertEqual(request.headers.values(for: "c").count, 1, "obs-text bytes are allowed in values")
    }

    // MARK: rejections

    func testConflictingContentLengthIsRejected() {
        assertRequestRejected("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", .conflictingContentLength)
        assertRequestRejected("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!", .conflictingContentLength)
    }

    func testContentLengthWithChunkedIsRejected() {
        assertRequestRejected(
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", .contentLengthWithTransferEncoding)
        assertRequestRejected(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n0\r\n\r\n", .contentLengthWithTransferEncoding)
    }

    func testNegativeSignedEmptyAndOverflowingLengthsAreRejected() {
        for value in ["-1", "+5", "", "5 5", "0x10", "1.0", "99999999999999999999", "9223372036854775808", "5,"] {
            assertRequestRejected("POST / HTTP/1.1\r\nContent-Length: \(value)\r\n\r\n", .invalidContentLength)
        }
    }

    func testBadChunkSizesAreRejected() {
        for size in ["", "x", "-1", "+1", " 1", "1 x", "1;\u{7f}", "fffffffffffffffff", "10000000000000000"] {
            let expected: HTTPParseError = size == "1;\u{7f}" ? .invalidChunkExtension : .invalidChunkSize
            assertRequestRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\(size)\r\nx\r\n0\r\n\r\n", expected)
        }
        assertRequestRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n", .invalidChunkTerminator)
        assertRequestRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX0\r\n\r\n", .invalidChunkTerminator)
    }

    func testUnsupportedTransferCodingsAreRejected() {
        for coding in ["gzip", "gzip, chunked", "chunked, chunked", "chunked, gzip", ""] {
            assertRequestRejected("POST / HTTP/1.1\r\nTransfer-Encoding: \(coding)\r\n\r\n0\r\n\r\n", .unsupportedTransferEncoding)
        }
        XCTAssertNoThrow(try parseRequests([[UInt8](ascii: "POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n0\r\n\r\n")]))
    }

    func testObsoleteLineFoldingIsRejected() {
        assertRequestRejected("GET / HTTP/1.1\r\nX-Long: part one\r\n part two\r\n\r\n", .obsoleteLineFolding)
        assertRequestRejected("GET / HTTP/1.1\r\nX-Long: part one\r\n\tpart two\r\n\r\n", .obsoleteLineFolding)
    }

    func testControlCharactersAndSpacesInHeaderNamesAreRejected() {
        for name in ["X\u{01}Y", "X\u{00}", "Bad Name", "Name ", "X\u{7f}", "\u{0b}X", "Nämé", "(x)"] {
            assertRequestRejected("GET / HTTP/1.1\r\n\(name): v\r\n\r\n", .invalidHeaderName)
        }
        assertRequestRejected("GET / HTTP/1.1\r\n: no name\r\n\r\n", .invalidHeaderName)
        assertRequestRejected("GET / HTTP/1.1\r\nNoColon\r\n\r\n", .invalidHeaderName)
        assertRequestRejected("GET / HTTP/1.1\r\nA\rB: v\r\n\r\n", .invalidHeaderName)
    }

    func testControlCharactersInHeaderValuesAreRejected() {
        for value in ["a\u{00}b", "a\rb", "a\u{1b}b", "a\u{7f}"] {
            assertRequestRejected("GET / HTTP/1.1\r\nX: \(value)\r\n\r\n", .invalidHeaderValue)
        }
    }

    func testBareLineFeedsAreRejected() {
        assertRequestRejected("GET / HTTP/1.1\nHost: x\r\n\r\n", .invalidLineEnding)
        assertRequestRejected("GET / HTTP/1.1\r\nHost: x\n\n", .invalidLineEnding)
        assertRequestRejected("\n", .invalidLineEnding)
        assertRequestRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n1\nx\r\n0\r\n\r\n", .invalidLineEnding)
    }

    func testMalformedRequestLinesAreRejected() {
        for line in ["GET /", "GET  / HTTP/1.1", "GET / HTTP/1.1 ", "GET /a b HTTP/1.1", "G\u{01}T / HTTP/1.1", "GET / http/1.1",
                     "GET / HTTP/1.10", "GET / HTTP/1", " GET / HTTP/1.1", "\rGET / HTTP/1.1", "GET /\u{80} HTTP/1.1"] {
            assertRequestRejected("\(line)\r\n\r\n", .invalidRequestLine)
        }
        assertRequestRejected("GET / HTTP/2.0\r\n\r\n", .unsupportedVersion)
        assertRequestRejected("GET / HTTP/0.9\r\n\r\n", .unsupportedVersion)
    }

    func testAnErrorIsFinalForTheConnection() {
        var parser = HTTPRequestParser()
        parser.feed([UInt8](ascii: "GET / HTTP/1.1\r\nBad Name: v\r\n\r\n"))
        XCTAssertThrowsError(try parser.nextRequest())
        parser.feed([UInt8](ascii: "GET / HTTP/1.1\r\n\r\n"))
        XCTAssertThrowsError(try parser.nextRequest()) { XCTAssertEqual($0 as? HTTPParseError, .invalidHeaderName) }
        XCTAssertThrowsError(try parser.endOfStream())
    }

    // MARK: limits

    func testHeaderSectionLimitNamesTheLimit() throws {
        let limit = HTTPLimits.default.maxHeaderSectionBytes
        XCTAssertEqual(limit, 16 * 1024)
        func request(sectionSize: Int) -> [UInt8] {
            let fixed = "GET / HTTP/1.1\r\nX: \r\n\r\n".utf8.count
            return [UInt8](ascii: "GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: sectionSize - fixed) + "\r\n\r\n")
        }
        XCTAssertEqual(try parseRequests([request(sectionSize: limit)]).count, 1, "exactly at the limit is fine")
        assertRequestRejected(request(sectionSize: limit + 1), .limitExceeded(.headerSectionBytes, limit: limit))
        XCTAssertEqual("\(HTTPParseError.limitExceeded(.headerSectionBytes, limit: limit))",
                       "HTTP message exceeds the header section size limit of 16384")
        // A peer that never ends its header section is cut off at the limit, not buffered forever.
        var parser = HTTPRequestParser()
        parser.feed([UInt8](ascii: "GET / HTTP/1.1\r\n"))
        XCTAssertThrowsError(try {
            for _ in 0..<10_000 {
                parser.feed([UInt8](ascii: "X: y\r\n"))
                _ = try parser.nextRequest()
            }
        }()) { XCTAssertEqual($0 as? HTTPParseError, .limitExceeded(.headerSectionBytes, limit: limit)) }
    }

    func testHeaderCountLimit() throws {
        func request(fields: Int) -> [UInt8] {
            [UInt8](ascii: "GET / HTTP/1.1\r\n" + (0..<fields).map { "H\($0): v\r\n" }.joined() + "\r\n")
        }
        XCTAssertEqual(try parseRequests([request(fields: 100)]).first?.headers.count, 100)
        assertRequestRejected(request(fields: 101), .limitExceeded(.headerCount, limit: 100))
        assertRequestRejected(request(fields: 6), .limitExceeded(.headerCount, limit: 5), limits: HTTPLimits(maxHeaderCount: 5))
    }

    func testBodyLimitAppliesToEveryFraming() throws {
        let limits = HTTPLimits(maxBodyBytes: 10)
        XCTAssertEqual(HTTPLimits.default.maxBodyBytes, 64 * 1024 * 1024)
        let exceeded = HTTPParseError.limitExceeded(.bodyBytes, limit: 10)
        XCTAssertEqual(try parseRequests([[UInt8](ascii: "PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789")], limits: limits).count, 1)
        assertRequestRejected("PUT / HTTP/1.1\r\nContent-Length: 11\r\n\r\n", exceeded, limits: limits)
        assertRequestRejected("PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n", exceeded, limits: limits)
        var parser = HTTPResponseParser(limits: limits)
        parser.feed([UInt8](ascii: "HTTP/1.1 200 OK\r\n\r\n0123456789"))
        XCTAssertNil(try parser.nextResponse())
        parser.feed([0x41])
        XCTAssertThrowsError(try parser.nextResponse()) { XCTAssertEqual($0 as? HTTPParseError, exceeded) }
        // A declared length far beyond the limit fails at the head, before any body is held.
        assertRequestRejected("PUT / HTTP/1.1\r\nContent-Length: 9000000000000000000\r\n\r\n", .limitExceeded(.bodyBytes, limit: 64 << 20))
    }

    func testChunkLineLimit() {
        let line = String(repeating: "0", count: 5000) + "1"
        assertRequestRejected("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\(line)\r\nx\r\n0\r\n\r\n",
                              .limitExceeded(.chunkLineBytes, limit: 4096))
    }

    func testErrorsSuggestTheStatusToAnswer() {
        XCTAssertEqual(HTTPParseError.limitExceeded(.headerCount, limit: 1).responseStatus, 431)
        XCTAssertEqual(HTTPParseError.limitExceeded(.bodyBytes, limit: 1).responseStatus, 413)
        XCTAssertEqual(HTTPParseError.obsoleteLineFolding.responseStatus, 400)
    }

    // MARK: responses

    func testResponseWithContentLengthParsesInEverySplit() throws {
        let body = "{\"rate_by_service\":{\"service:,env:\":1}}"
        let bytes = [UInt8](ascii: "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n" + body)
        let response = try assertResponsesInEverySplit(bytes, count: 1)[0]
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.head.reason, "OK")
        XCTAssertEqual(response.body, [UInt8](ascii: body))
        XCTAssertTrue(response.keepAlive)
    }

    func testBodylessResponsesEndAtTheirHeaders() throws {
        let bytes = [UInt8](ascii:
            "HTTP/1.1 100 Continue\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
            + "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  // to HEAD
            + "HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
            + "HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"
            + "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n")
        let responses = try assertResponsesInEverySplit(bytes, methods: ["PUT", "PUT", "HEAD", "GET", "GET", "GET"], count: 6)
        XCTAssertEqual(responses.map(\.status), [100, 200, 200, 204, 304, 200])
        XCTAssertEqual(responses.map(\.body.count), [0, 3, 0, 0, 0, 3])
        XCTAssertTrue(responses[0].head.isInformational)
        XCTAssertEqual(responses[2].headers["Content-Length"], "1000", "a HEAD response keeps its length header")
    }

    func testResponseWithoutLengthEndsAtClose() throws {
        let bytes = [UInt8](ascii: "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until the close")
        let response = try assertResponsesInEverySplit(bytes, count: 1)[0]
        XCTAssertEqual(String(decoding: response.body, as: UTF8.self), "all of this until the close")
        XCTAssertFalse(response.keepAlive)
        var parser = HTTPResponseParser()
        parser.feed(bytes)
        XCTAssertNil(try parser.nextResponse(), "not complete before the close")
    }

    func testResponseKeepAlive() throws {
        XCTAssertFalse(try parseResponses([[UInt8](ascii: "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n")])[0].keepAlive)
        XCTAssertTrue(try parseResponses([[UInt8](ascii: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n")])[0].keepAlive)
        XCTAssertFalse(try parseResponses([[UInt8](ascii: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")])[0].keepAlive)
    }

    func testStatusLineVariants() throws {
        XCTAssertEqual(try parseResponses([[UInt8](ascii: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n")])[0].head.reason, "")
        XCTAssertEqual(try parseResponses([[UInt8](ascii: "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n")])[0].status, 404)
        XCTAssertEqual(try parseResponses([[UInt8](ascii: "HTTP/1.1 599 Odd  Reason\r\nContent-Length: 0\r\n\r\n")])[0].head.reason, "Odd  Reason")
    }

    func testNonDigitStatusIsRejected() {
        for line in ["HTTP/1.1 2x0 OK", "HTTP/1.1 OK", "HTTP/1.1 20 OK", "HTTP/1.1 2000 OK", "HTTP/1.1 -20 OK", "HTTP/1.1 099 Low",
                     "HTTP/1.1 +20 OK", "HTTP/1.1 ", "HTTP/1.1  200 OK"] {
            assertResponseRejected("\(line)\r\nContent-Length: 0\r\n\r\n", .invalidStatusCode)
        }
        for line in ["HTTP/1.1", "HTTX/1.1 200 OK", "HTTP/1.1\t200 OK", "HTTP/1.1 200 O\u{01}K"] {
            assertResponseRejected("\(line)\r\nContent-Length: 0\r\n\r\n", .invalidStatusLine)
        }
        assertResponseRejected("HTTP/3.0 200 OK\r\n\r\n", .unsupportedVersion)
    }

    func testCutOffMessagesAreIncompleteAtClose() throws {
        for bytes in [tracesRequest, chunkedRequest] {
            for length in 1..<bytes.count {
                var parser = HTTPRequestParser()
                parser.feed(bytes[..<length])
                XCTAssertNil(try parser.nextRequest(), "a prefix is never a request (length \(length))")
                XCTAssertFalse(parser.isIdle)
                XCTAssertThrowsError(try parser.endOfStream()) { XCTAssertEqual($0 as? HTTPParseError, .incompleteMessage) }
            }
        }
        let response = [UInt8](ascii: "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nbody")
        for length in 1..<response.count {
            var parser = HTTPResponseParser()
            parser.feed(response[..<length])
            XCTAssertNil(try parser.nextResponse())
            XCTAssertThrowsError(try parser.endOfStream())
        }
        var idle = HTTPRequestParser()
        XCTAssertTrue(idle.isIdle)
        XCTAssertNoThrow(try idle.endOfStream())
    }

    // MARK: hostile input

    func testRandomBytesNeverCrashOrHangTheParsers() {
        var random = SeededGenerator(seed: 0x5EED_0101)
        let alphabet = [UInt8](ascii: "GET HTTP/1.1 200\r\n:;, \tchunked0123456789abcdefContent-Length") + [0, 0x7f, 0x80, 0xff]
        for round in 0..<20_000 {
            let count = Int.random(in: 0...80, using: &random)
            let bytes: [UInt8] = round % 2 == 0
                ? random.bytes(count: count)
                : (0..<count).map { _ in alphabet.randomElement(using: &random)! }
            var requests = HTTPRequestParser(limits: HTTPLimits(maxHeaderSectionBytes: 64, maxBodyBytes: 64))
            var responses = HTTPResponseParser(limits: HTTPLimits(maxHeaderSectionBytes: 64, maxBodyBytes: 64))
            for chunk in [bytes[..<(count / 2)], bytes[(count / 2)...]] {
                requests.feed(chunk)
                responses.feed(chunk)
                while (try? requests.nextRequest()) ?? nil != nil {}
                while (try? responses.nextResponse()) ?? nil != nil {}
            }
            _ = try? requests.endOfStream()
            _ = try? responses.endOfStream()
        }
    }

    func testMutationsOfValidMessagesNeverCrashOrHangTheParsers() throws {
        var random = SeededGenerator(seed: 0x5EED_0102)
        let requests = tracesRequest + chunkedRequest
        let responses = [UInt8](ascii: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n")
        var parsed = 0
        for _ in 0..<20_000 {
            let mutatedRequests = random.mutate(requests)
            if let result = try? parseRequests([mutatedRequests]) {
                parsed += result.count
                // What parses whole parses the same in pieces.
                let cut = Int.random(in: 0...mutatedRequests.count, using: &random)
                XCTAssertEqual(try? parseRequests([Array(mutatedRequests[..<cut]), Array(mutatedRequests[cut...])]), result)
            }
            _ = try? parseResponses([random.mutate(responses)], methods: ["GET", "GET"])
        }
        XCTAssertGreaterThan(parsed, 0)
    }
}
