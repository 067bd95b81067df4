import TestSupport
import XCTest
@testable import Wire

final class JSONTests: XCTestCase {
    func parse(_ text: String, limits: JSONLimits = .default) throws -> JSONValue {
        try JSONValue(parsing: text, limits: limits)
    }

    func assertRejected(_ text: String, _ expected: JSONError? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let shown = text.count > 80 ? "\(text.prefix(80))… (\(text.utf8.count) bytes)" : text.debugDescription
        XCTAssertThrowsError(try parse(text), shown, file: file, line: line) { error in
            if let expected { XCTAssertEqual(error as? JSONError, expected, shown, file: file, line: line) }
        }
    }

    func testEveryValueKind() throws {
        let value = try parse(#" {"s": "x", "n": -12.5e1, "t": true, "f": false, "z": null, "a": [1, [], {}], "o": {"k": 0}} "#)
        XCTAssertEqual(value, ["s": "x", "n": -125, "t": true, "f": false, "z": nil, "a": [1, [], [:]], "o": ["k": 0]])
        XCTAssertEqual(value.objectValue?.keys, ["s", "n", "t", "f", "z", "a", "o"], "document order kept")
        XCTAssertEqual(value["n"]?.numberValue, -125)
        XCTAssertEqual(try parse("\"\""), "")
        XCTAssertEqual(try parse(" 0 "), 0)
        XCTAssertEqual(try parse("[-0, 0.5, 1E3, 1e-3, 123456789012]"), [0, 0.5, 1000, 0.001, 123_456_789_012])
    }

    func testEscapesIncludingSurrogatePairs() throws {
        XCTAssertEqual(try parse(#""\" \\ \/ \b \f \n \r \t""#), "\" \\ / \u{08} \u{0c} \n \r \t")
        XCTAssertEqual(try parse(#""\u0041\u00e9\u2713""#), "Aé✓")
        XCTAssertEqual(try parse(#""\ud83c\udf89 party""#), "🎉 party")
        XCTAssertEqual(try parse(#""\uD83D\uDE00""#), "😀")
        XCTAssertEqual(try parse(#""\u0000""#), "\u{0}")
        XCTAssertEqual(try parse("\"raw é ✓ 🎉\""), "raw é ✓ 🎉")
    }

    func testBadStringsAreRejected() {
        assertRejected(#""\ud83c""#, .unpairedSurrogate(offset: 1))
        assertRejected(#""\ud83c\u0041""#, .unpairedSurrogate(offset: 1))
        assertRejected(#""\udf89""#, .unpairedSurrogate(offset: 1))
        assertRejected(#""\ud83cx""#, .unpairedSurrogate(offset: 1))
        assertRejected(#""\x""#, .invalidEscape(offset: 1))
        assertRejected(#""\u12g4""#, .invalidEscape(offset: 1))
        assertRejected(#""\u12"#, .unexpectedEnd)
        assertRejected("\"a\u{01}b\"", .controlCharacterInString(offset: 2))
        assertRejected("\"a\nb\"", .controlCharacterInString(offset: 2))
        assertRejected("\"open", .unexpectedEnd)
        XCTAssertThrowsError(try JSONValue(parsing: [0x22, 0xff, 0x22])) { XCTAssertEqual($0 as? JSONError, .invalidUTF8(offset: 1)) }
        XCTAssertThrowsError(try JSONValue(parsing: [0x22, 0x5c, 0x6e, 0xc3, 0x22])) { XCTAssertEqual($0 as? JSONError, .invalidUTF8(offset: 1)) }
    }

    func testNumberGrammarIsStrict() {
        for text in ["01", "+1", ".5", "1.", "1e", "1e+", "-", "--1", "0x10", "1.5.5", "NaN", "Infinity", "-Infinity", "inf", "1_000"] {
            XCTAssertThrowsError(try parse(text), text)
        }
        assertRejected("1e999", .numberOutOfRange(offset: 0))
        assertRejected("-1e400", .numberOutOfRange(offset: 0))
    }

    func testStructuralErrorsAreTyped() {
        assertRejected("", .unexpectedEnd)
        assertRejected("   ", .unexpectedEnd)
        assertRejected("[1,]", .unexpectedByte(UInt8(ascii: "]"), offset: 3))
        assertRejected("[1 2]", .unexpectedByte(UInt8(ascii: "2"), offset: 3))
        assertRejected(#"{"a" 1}"#, .unexpectedByte(UInt8(ascii: "1"), offset: 5))
        assertRejected(#"{1: 2}"#, .unexpectedByte(UInt8(ascii: "1"), offset: 1))
        assertRejected(#"{"a": 1,}"#)
        assertRejected("tru", .unexpectedEnd)
        assertRejected("trux", .unexpectedByte(UInt8(ascii: "t"), offset: 0))
        assertRejected("{} {}", .trailingCharacters(offset: 3))
        assertRejected("[", .unexpectedEnd)
    }

    func testDepthAndSizeLimits() throws {
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        assertRejected(deep, .depthLimitExceeded(limit: 64, offset: 64))
        XCTAssertNoThrow(try parse(String(repeating: "[", count: 64) + String(repeating: "]", count: 64)))
        assertRejected(String(repeating: "[", count: (1 << 20) + 1), .inputTooLarge(limit: 1 << 20))
        assertRejected(String(repeating: "{\"a\":", count: 100_000))
        XCTAssertThrowsError(try parse("[1, 2, 3]", limits: JSONLimits(maxInputBytes: 8)))
        XCTAssertThrowsError(try parse("[[1]]", limits: JSONLimits(maxDepth: 1)))
    }

    func testRepeatedKeysKeepTheLastValueInTheFirstPosition() throws {
        XCTAssertEqual(try parse(#"{"a": 1, "b": 2, "a": 3}"#).objectValue, ["a": 3, "b": 2])
        // Many distinct keys stay linear (the map indexes itself past a handful).
        let many = "{" + (0..<20_000).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + "}"
        XCTAssertEqual(try parse(many).objectValue?.count, 20_000)
    }

    func testWriterOutput() throws {
        let stats: JSONValue = [
            "payloads": 12, "spans": 340, "bytes": 1.5e6, "delay_ms": 0.25, "healthy": true, "last_error": nil,
            "services": ["web", "worker"], "note": "quote \" backslash \\ newline \n tab \t bell \u{07} é 🎉",
        ]
        XCTAssertEqual(stats.jsonText,
            #"{"payloads":12,"spans":340,"bytes":1500000,"delay_ms":0.25,"healthy":true,"last_error":null,"#
            + #""services":["web","worker"],"note":"quote \" backslash \\ newline \n tab \t bell \u0007 é 🎉"}"#)
        XCTAssertEqual(try JSONValue(parsing: stats.serialized()), stats)
        XCTAssertEqual(JSONValue.number(.nan).jsonText, "null")
        XCTAssertEqual(JSONValue.number(-.infinity).jsonText, "null")
        XCTAssertEqual(JSONValue.number(-3).jsonText, "-3")
        XCTAssertEqual(JSONValue.number(1e300).jsonText, "1e+300")
        XCTAssertEqual(JSONValue.number(0.1).jsonText, "0.1")
        XCTAssertEqual(JSONValue.number(9_007_199_254_740_992).jsonText, "9007199254740992", "2^53: still written as an integer")
        XCTAssertEqual(JSONValue.number(9_007_199_254_740_994).jsonText, "9.007199254740994e+15", "past 2^53 integers are not exact")
        XCTAssertEqual(JSONValue.object([:]).jsonText, "{}")
        XCTAssertEqual(JSONValue.array([]).jsonText, "[]")
        for value in [1e300, .leastNonzeroMagnitude, 0.1, -2.5e-8, 123_456.789] {
            XCTAssertEqual(try JSONValue(parsing: JSONValue.number(value).serialized()), .number(value))
        }
    }

    func testRandomBytesAndMutationsNeverCrashTheReader() {
        var random = SeededGenerator(seed: 0x5EED_0301)
        let valid = Array(#"{"rate_by_service":{"service:,env:":1.0,"service:web,env:prod":0.25},"x":[true,false,null,"\ud83c\udf89\n",-1.5e3]}"#.utf8)
        let alphabet = Array(#"{}[]",:\u0123456789eE+-.truefalsnl "#.utf8)
        var accepted = 0
        for round in 0..<20_000 {
            let count = Int.random(in: 0...40, using: &random)
            let noise: [UInt8] = round % 2 == 0
                ? random.bytes(count: count)
                : (0..<count).map { _ in alphabet.randomElement(using: &random)! }
            _ = try? JSONValue(parsing: noise)
            if let value = try? JSONValue(parsing: random.mutate(valid)) {
                accepted += 1
                XCTAssertEqual(try? JSONValue(parsing: value.serialized()), value)
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }
}
