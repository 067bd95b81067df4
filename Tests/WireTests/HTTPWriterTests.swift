import XCTest
@testable import Wire

final class HTTPWriterTests: XCTestCase {
    func text(_ bytes: [UInt8]) -> String { String(decoding: bytes, as: UTF8.self) }

    func testRequestGetsContentLengthFromItsBody() throws {
        let request = HTTPRequest(
            method: "PUT", target: "/v0.4/traces",
            headers: ["Host": "127.0.0.1:8126", "Content-Length": "999", "Content-Type": "application/msgpack"],
            body: [0x91, 0x90])
        XCTAssertEqual(
            text(try request.serializedHead()),
            "PUT /v0.4/traces HTTP/1.1\r\nHost: 127.0.0.1:8126\r\nContent-Type: application/msgpack\r\nContent-Length: 2\r\n\r\n")
        XCTAssertEqual(try request.serialized(), try request.serializedHead() + [0x91, 0x90])
    }

    func testBodylessGetHasNoContentLengthButEmptyPutDoes() throws {
        XCTAssertEqual(text(try HTTPRequest(method: "GET", target: "/info").serialized()), "GET /info HTTP/1.1\r\n\r\n")
        XCTAssertEqual(text(try HTTPRequest(method: "PUT", target: "/x").serialized()), "PUT /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        let chunked = HTTPRequest(method: "POST", target: "/x", headers: ["Transfer-Encoding": "chunked"], body: [UInt8](ascii: "abc"))
        XCTAssertEqual(text(try chunked.serialized()), "POST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", "the writer never chunks")
    }

    func testResponsesAndTheirBodylessCases() throws {
        let ok = HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: [UInt8](ascii: "{}"))
        XCTAssertEqual(text(try ok.serialized()), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        XCTAssertEqual(text(try ok.serialized(requestMethod: "HEAD")), "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        XCTAssertEqual(text(try HTTPResponse(status: 204, body: [1]).serialized()), "HTTP/1.1 204 No Content\r\n\r\n")
        XCTAssertEqual(text(try HTTPResponse(status: 100).serialized()), "HTTP/1.1 100 Continue\r\n\r\n")
        XCTAssertEqual(text(try HTTPResponse(status: 304).serialized()), "HTTP/1.1 304 Not Modified\r\n\r\n")
        XCTAssertEqual(text(try HTTPResponse(status: 418, reason: "I'm a teapot").serialized()), "HTTP/1.1 418 I'm a teapot\r\nContent-Length: 0\r\n\r\n")
        let old = HTTPResponse(head: HTTPResponseHead(version: .http1_0, status: 200, headers: ["Connection": "close"]))
        XCTAssertEqual(text(try old.serialized()), "HTTP/1.0 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    }

    func testHeaderInjectionAndBadStartLinesAreRefused() {
        XCTAssertThrowsError(try HTTPRequest(method: "GET", target: "/", headers: ["X": "a\r\nInjected: 1"]).serialized()) {
            XCTAssertEqual($0 as? HTTPSerializationError, .invalidHeaderValue(name: "X"))
        }
        XCTAssertThrowsError(try HTTPRequest(method: "GET", target: "/", headers: ["X Y": "a"]).serialized()) {
            XCTAssertEqual($0 as? HTTPSerializationError, .invalidHeaderName("X Y"))
        }
        XCTAssertThrowsError(try HTTPRequest(method: "GET", target: "/", headers: ["": "a"]).serialized())
        XCTAssertThrowsError(try HTTPRequest(method: "G T", target: "/").serialized())
        XCTAssertThrowsError(try HTTPRequest(method: "GET", target: "/a b").serialized())
        XCTAssertThrowsError(try HTTPRequest(method: "GET", target: "").serialized())
        XCTAssertThrowsError(try HTTPResponse(status: 99).serialized())
        XCTAssertThrowsError(try HTTPResponse(status: 200, reason: "OK\r\nX: y").serialized())
        XCTAssertThrowsError(try HTTPResponse(head: HTTPResponseHead(version: HTTPVersion(major: 2, minor: 0), status: 200)).serialized())
    }

    func testWrittenMessagesParseBackIdentically() throws {
        let requests = [
            HTTPRequest(method: "PUT", target: "/v0.5/traces", headers: ["Host": "agent", "X-Datadog-Trace-Count": "3"], body: Array(0...255)),
            HTTPRequest(method: "GET", target: "/stats?pid=1", headers: ["Accept": "application/json"]),
            HTTPRequest(method: "POST", target: "/control", headers: ["Connection": "close"], body: [UInt8](ascii: "x")),
        ]
        var wire: [UInt8] = []
        for request in requests { wire += try request.serialized() }
        let parsed = try parseRequests([wire])
        XCTAssertEqual(parsed.map(\.method), requests.map(\.method))
        XCTAssertEqual(parsed.map(\.target), requests.map(\.target))
        XCTAssertEqual(parsed.map(\.body), requests.map(\.body))
        XCTAssertEqual(parsed.map(\.keepAlive), [true, true, false])
        XCTAssertEqual(parsed[0].headers["content-length"], "256")

        let response = HTTPResponse(status: 200, headers: ["Content-Type": "application/json"], body: [UInt8](ascii: "{\"ok\":true}"))
        let parsedResponse = try parseResponses([try response.serialized()])[0]
        XCTAssertEqual(parsedResponse.body, response.body)
        XCTAssertEqual(parsedResponse.head.reason, "OK")
    }
}
