import TestSupport
import XCTest
@testable import Wire

final class MessagePackTests: XCTestCase {
    func encode(_ body: (inout MessagePackWriter) -> Void) -> [UInt8] {
        var writer = MessagePackWriter()
        body(&writer)
        return writer.bytes
    }

    func assertRoundTrip(_ value: MessagePackValue, encodesTo expected: [UInt8]? = nil, file: StaticString = #filePath, line: UInt = #line) {
        let bytes = value.encoded()
        if let expected {
            XCTAssertEqual(hex(bytes), hex(expected), file: file, line: line)
        }
        XCTAssertEqual(try MessagePackValue(decoding: bytes), value, file: file, line: line)
    }

    // MARK: encodings, each at its boundaries

    func testNilAndBoolEncodeAsSingleBytes() {
        XCTAssertEqual(encode { $0.writeNil() }, [0xc0])
        XCTAssertEqual(encode { $0.write(false) }, [0xc2])
        XCTAssertEqual(encode { $0.write(true) }, [0xc3])
        assertRoundTrip(.nil, encodesTo: [0xc0])
        assertRoundTrip(.bool(true), encodesTo: [0xc3])
        assertRoundTrip(.bool(false), encodesTo: [0xc2])
    }

    func testUnsignedIntegersUseTheSmallestEncoding() {
        let cases: [(UInt64, [UInt8])] = [
            (0, [0x00]), (127, [0x7f]),
            (128, [0xcc, 0x80]), (255, [0xcc, 0xff]),
            (256, [0xcd, 0x01, 0x00]), (65535, [0xcd, 0xff, 0xff]),
            (65536, [0xce, 0x00, 0x01, 0x00, 0x00]), (UInt64(UInt32.max), [0xce, 0xff, 0xff, 0xff, 0xff]),
            (UInt64(UInt32.max) + 1, [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]),
            (UInt64(Int64.max), [0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
            (UInt64(Int64.max) + 1, [0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            (UInt64.max, [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ]
        for (value, expected) in cases {
            XCTAssertEqual(hex(encode { $0.write(value) }), hex(expected), "\(value)")
            assertRoundTrip(.uint(value), encodesTo: expected)
            var reader = MessagePackReader(expected)
            XCTAssertEqual(try reader.readUInt64(), value)
            XCTAssertTrue(reader.isAtEnd)
        }
    }

    func testSignedIntegersUseTheSmallestEncoding() {
        let cases: [(Int64, [UInt8])] = [
            (0, [0x00]), (1, [0x01]), (127, [0x7f]), (128, [0xcc, 0x80]),
            (-1, [0xff]), (-32, [0xe0]),
            (-33, [0xd0, 0xdf]), (-128, [0xd0, 0x80]),
            (-129, [0xd1, 0xff, 0x7f]), (-32768, [0xd1, 0x80, 0x00]),
            (-32769, [0xd2, 0xff, 0xff, 0x7f, 0xff]), (Int64(Int32.min), [0xd2, 0x80, 0, 0, 0]),
            (Int64(Int32.min) - 1, [0xd3, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff]),
            (Int64.min, [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            (Int64.max, [0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        ]
        for (value, expected) in cases {
            XCTAssertEqual(hex(encode { $0.write(value) }), hex(expected), "\(value)")
            assertRoundTrip(.int(value), encodesTo: expected)
            var reader = MessagePackReader(expected)
            XCTAssertEqual(try reader.readInt64(), value)
        }
        XCTAssertEqual(encode { $0.write(Int32(-5)) }, [0xfb])
        XCTAssertEqual(encode { $0.write(UInt32(300)) }, [0xcd, 0x01, 0x2c])
        XCTAssertEqual(encode { $0.write(-200) }, [0xd1, 0xff, 0x38])
    }

    func testEveryIntegerWidthIsReadAsAnyTypeItFits() throws {
        // Wider-than-needed encodings that other encoders produce.
        let widened: [([UInt8], Int64)] = [
            ([0xd0, 0x05], 5), ([0xd1, 0x00, 0x05], 5), ([0xd2, 0, 0, 0, 5], 5), ([0xd3, 0, 0, 0, 0, 0, 0, 0, 5], 5),
            ([0xcc, 0x05], 5), ([0xcd, 0x00, 0x05], 5), ([0xce, 0, 0, 0, 5], 5), ([0xcf, 0, 0, 0, 0, 0, 0, 0, 5], 5),
            ([0xd1, 0xff, 0xfb], -5),
        ]
        for (bytes, value) in widened {
            var reader = MessagePackReader(bytes)
            XCTAssertEqual(try reader.readInt64(), value, hex(bytes))
            XCTAssertEqual(try MessagePackValue(decoding: bytes), .int(value))
        }
        var reader = MessagePackReader([0xcc, 0xff])
        XCTAssertThrowsError(try reader.readInteger(as: Int8.self)) { error in
            XCTAssertEqual(error as? MessagePackError, .integerOverflow(offset: 0))
        }
        XCTAssertEqual(reader.position, 0, "a failed read leaves the cursor in place")
        XCTAssertEqual(try reader.readInteger(as: UInt8.self), 255)
        reader = MessagePackReader([0xff])
        XCTAssertThrowsError(try reader.readUInt64())
        reader = MessagePackReader([0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try reader.readInt64())
        XCTAssertEqual(try reader.readUInt64(), .max)
    }

    func testFloatsKeepTheirWidthAndBits() throws {
        XCTAssertEqual(encode { $0.write(1.0) }, [0xcb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(encode { $0.write(Float(1.0)) }, [0xca, 0x3f, 0x80, 0, 0])
        for value in [0.0, -0.0, 1.5, -2.25, .pi, .infinity, -.infinity, .nan, .leastNonzeroMagnitude, .greatestFiniteMagnitude] {
            assertRoundTrip(.double(value))
        }
        for value: Float in [0, -0.0, 1.5, .infinity, .nan, .leastNonzeroMagnitude] {
            assertRoundTrip(.float(value))
        }
        var reader = MessagePackReader([0xca, 0x3f, 0xc0, 0, 0])
        XCTAssertEqual(try reader.readDouble(), 1.5, "float 32 widens to Double")
        reader = MessagePackReader([0x07])
        XCTAssertThrowsError(try reader.readDouble())
        XCTAssertEqual(try reader.readDouble(acceptingIntegers: true), 7)
        reader = MessagePackReader([0xcb, 0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertThrowsError(try reader.readFloat(), "a float 64 is never narrowed silently")
    }

    func testStringHeadersAtEveryBoundary() throws {
        let cases: [(Int, [UInt8])] = [
            (0, [0xa0]), (31, [0xbf]), (32, [0xd9, 0x20]), (255, [0xd9, 0xff]),
            (256, [0xda, 0x01, 0x00]), (65535, [0xda, 0xff, 0xff]), (65536, [0xdb, 0x00, 0x01, 0x00, 0x00]),
        ]
        for (count, header) in cases {
            let text = String(repeating: "x", count: count)
            let bytes = encode { $0.write(text) }
            XCTAssertEqual(Array(bytes.prefix(header.count)), header, "\(count)")
            XCTAssertEqual(bytes.count, header.count + count)
            assertRoundTrip(.string(text))
        }
        // 15 UTF-8 bytes: the header counts bytes, not characters.
        assertRoundTrip(.string("héllo ✓ 🎉"), encodesTo: [0xaf] + Array("héllo ✓ 🎉".utf8))
    }

    func testInvalidUTF8InAStringIsRepairedNotFatal() throws {
        var reader = MessagePackReader([0xa3, 0x61, 0xff, 0x62])
        XCTAssertEqual(try reader.readString(), "a\u{FFFD}b")
    }

    func testBinaryHeadersAtEveryBoundary() throws {
        let cases: [(Int, [UInt8])] = [
            (0, [0xc4, 0x00]), (255, [0xc4, 0xff]), (256, [0xc5, 0x01, 0x00]),
            (65535, [0xc5, 0xff, 0xff]), (65536, [0xc6, 0x00, 0x01, 0x00, 0x00]),
        ]
        for (count, header) in cases {
            let data = [UInt8](repeating: 0xab, count: count)
            let bytes = encode { $0.writeBinary(data) }
            XCTAssertEqual(Array(bytes.prefix(header.count)), header, "\(count)")
            assertRoundTrip(.binary(data))
        }
    }

    func testArrayHeadersAtEveryBoundary() throws {
        let cases: [(Int, [UInt8])] = [
            (0, [0x90]), (15, [0x9f]), (16, [0xdc, 0x00, 0x10]),
            (65535, [0xdc, 0xff, 0xff]), (65536, [0xdd, 0x00, 0x01, 0x00, 0x00]),
        ]
        for (count, header) in cases {
            let value = MessagePackValue.array(Array(repeating: .int(1), count: count))
            let bytes = value.encoded()
            XCTAssertEqual(Array(bytes.prefix(header.count)), header, "\(count)")
            XCTAssertEqual(bytes.count, header.count + count)
            assertRoundTrip(value)
        }
    }

    func testMapHeadersAtEveryBoundary() throws {
        let cases: [(Int, [UInt8])] = [
            (0, [0x80]), (15, [0x8f]), (16, [0xde, 0x00, 0x10]),
            (65535, [0xde, 0xff, 0xff]), (65536, [0xdf, 0x00, 0x01, 0x00, 0x00]),
        ]
        for (count, header) in cases {
            let value = MessagePackValue.map((0..<count).map { (key: .int(Int64($0)), value: .nil) })
            let bytes = value.encoded()
            XCTAssertEqual(Array(bytes.prefix(header.count)), header, "\(count)")
            assertRoundTrip(value)
        }
    }

    func testExtensionsUseFixextWhenTheSizeAllows() throws {
        let cases: [(Int, [UInt8])] = [
            (1, [0xd4, 0x05]), (2, [0xd5, 0x05]), (4, [0xd6, 0x05]), (8, [0xd7, 0x05]), (16, [0xd8, 0x05]),
            (0, [0xc7, 0x00, 0x05]), (3, [0xc7, 0x03, 0x05]), (255, [0xc7, 0xff, 0x05]),
            (256, [0xc8, 0x01, 0x00, 0x05]), (65536, [0xc9, 0x00, 0x01, 0x00, 0x00, 0x05]),
        ]
        for (count, header) in cases {
            let data = [UInt8](repeating: 0x11, count: count)
            let bytes = encode { $0.writeExtension(type: 5, data: data) }
            XCTAssertEqual(Array(bytes.prefix(header.count)), header, "\(count)")
            assertRoundTrip(.extension(type: 5, data: data))
        }
        assertRoundTrip(.extension(type: -1, data: [0, 0, 0, 1]), encodesTo: [0xd6, 0xff, 0, 0, 0, 1])
    }

    /// The writer keeps spare room past its bytes and stores through a
    /// pointer: a copy must still be a separate value, a writer emptied with
    /// its capacity kept must write afresh, and growth must lose nothing.
    func testWriterCopiesAreIndependentAndARefilledWriterWritesAfresh() {
        var first = MessagePackWriter()
        first.write("abc")
        var second = first
        second.write(UInt64(300))
        first.writeNil()
        XCTAssertEqual(first.bytes, [0xa3, 0x61, 0x62, 0x63, 0xc0])
        XCTAssertEqual(second.bytes, [0xa3, 0x61, 0x62, 0x63, 0xcd, 0x01, 0x2c])
        second.removeAll(keepingCapacity: true)
        second.write(true)
        XCTAssertEqual(second.bytes, [0xc3])
        XCTAssertEqual(first.takeBytes(), [0xa3, 0x61, 0x62, 0x63, 0xc0])
        XCTAssertEqual(first.count, 0)
        XCTAssertEqual(first.bytes, [])

        var grown = MessagePackWriter(reservingCapacity: 3)
        var expected: [UInt8] = []
        for value in stride(from: UInt64(0), to: 1 << 40, by: 1 << 24) {
            grown.write(value)
            expected += encode { $0.write(value) }
        }
        XCTAssertEqual(grown.bytes, expected)
        XCTAssertEqual(grown.withBytes { Array($0) }, expected)
    }

    func testNestedValuesRoundTrip() {
        let value: MessagePackValue = [
            "name": "fork", "pid": 4242, "ratio": 0.5, "tags": ["a", "b", nil, true],
            "nested": ["deep": [[["x": -7]]]], 1: .binary([1, 2, 3]),
        ]
        assertRoundTrip(value)
        XCTAssertEqual(value["pid"]?.int64Value, 4242)
        XCTAssertEqual(value["tags"]?.arrayValue?.count, 4)
        XCTAssertNil(value["missing"])
    }

    func testIntegerEqualityIsByValue() {
        XCTAssertEqual(MessagePackValue.uint(5), .int(5))
        XCTAssertNotEqual(MessagePackValue.uint(UInt64(Int64.max) + 1), .int(-1))
        XCTAssertNotEqual(MessagePackValue.int(1), .double(1))
    }

    // MARK: the reader on hostile input

    func testReservedByteIsATypedError() {
        XCTAssertThrowsError(try MessagePackValue(decoding: [0xc1])) { error in
            XCTAssertEqual(error as? MessagePackError, .reservedByte(offset: 0))
        }
        XCTAssertThrowsError(try MessagePackValue(decoding: [0x92, 0x01, 0xc1])) { error in
            XCTAssertEqual(error as? MessagePackError, .reservedByte(offset: 2))
        }
    }

    func testDeclaredLengthsBeyondTheInputFailBeforeAllocating() {
        let lies: [[UInt8]] = [
            [0xdb, 0xff, 0xff, 0xff, 0xff, 0x61],  // str 32 of 4 GiB
            [0xc6, 0xff, 0xff, 0xff, 0xff],  // bin 32 of 4 GiB
            [0xc9, 0xff, 0xff, 0xff, 0xff, 0x01],  // ext 32 of 4 GiB
            [0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0],  // array of 4 G elements
            [0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0],  // map of 4 G pairs
            [0xde, 0x00, 0x02, 0xc0, 0xc0, 0xc0],  // map of 2 pairs in 3 bytes
        ]
        for bytes in lies {
            XCTAssertThrowsError(try MessagePackValue(decoding: bytes), hex(bytes)) { error in
                guard case .truncated = error as? MessagePackError else { return XCTFail("\(error)") }
            }
            var reader = MessagePackReader(bytes)
            XCTAssertThrowsError(try reader.skipValue())
            XCTAssertEqual(reader.position, 0)
        }
    }

    func testNestingDeeperThanTheLimitIsATypedError() {
        let deep = [UInt8](repeating: 0x91, count: 100_000) + [0xc0]
        XCTAssertThrowsError(try MessagePackValue(decoding: deep)) { error in
            XCTAssertEqual(error as? MessagePackError, .depthLimitExceeded(limit: 64, offset: 64))
        }
        var reader = MessagePackReader(deep)
        XCTAssertThrowsError(try reader.skipValue())
        let justDeepEnough = [UInt8](repeating: 0x91, count: 64) + [0xc0]
        XCTAssertNoThrow(try MessagePackValue(decoding: justDeepEnough))
        // Each map's one key is nil and its value the next map.
        let deepMaps = [[UInt8]](repeating: [0x81, 0xc0], count: 65).joined() + [0xc0]
        XCTAssertThrowsError(try MessagePackValue(decoding: Array(deepMaps)))
    }

    func testTrailingBytesAreRejectedByWholeValueDecoding() {
        XCTAssertThrowsError(try MessagePackValue(decoding: [0xc0, 0xc0])) { error in
            XCTAssertEqual(error as? MessagePackError, .trailingBytes(offset: 1, count: 1))
        }
    }

    func testTypeMismatchNamesBothTypes() {
        var reader = MessagePackReader([0xa1, 0x61])
        XCTAssertThrowsError(try reader.readArrayHeader()) { error in
            XCTAssertEqual(error as? MessagePackError, .typeMismatch(expected: .array, found: .string, offset: 0))
            XCTAssertEqual("\(error)", "MessagePack type mismatch at offset 0: expected array, found string")
        }
    }

    func testReaderOverASubrangeReportsOffsetsFromItsStart() throws {
        let bytes: [UInt8] = [0xff, 0xff, 0x92, 0x01, 0xa5, 0x61]
        var reader = MessagePackReader(bytes, range: 2..<6)
        XCTAssertEqual(try reader.readArrayHeader(), 2)
        XCTAssertEqual(try reader.readInt64(), 1)
        XCTAssertThrowsError(try reader.readString()) { error in
            XCTAssertEqual(error as? MessagePackError, .truncated(offset: 2, needed: 4))
        }
        let clamped = MessagePackReader(bytes, range: 4..<100)
        XCTAssertEqual(clamped.remainingCount, 2)
    }

    func testEveryTruncationOfAValidValueIsATypedError() {
        let value: MessagePackValue = [
            "s": .string(String(repeating: "y", count: 40)), "b": .binary([1, 2, 3]), "f": 1.25, "f32": .float(2),
            "i": .int(Int64.min), "u": .uint(.max), "a": [1, [2, [3]]], "e": .extension(type: 3, data: [9, 9, 9]),
            "n": nil, "t": true, "big": .string(String(repeating: "z", count: 300)),
        ]
        let bytes = value.encoded()
        for length in 0..<bytes.count {
            let prefix = Array(bytes[..<length])
            XCTAssertThrowsError(try MessagePackValue(decoding: prefix), "length \(length)") { error in
                guard case .truncated = error as? MessagePackError else { return XCTFail("length \(length): \(error)") }
            }
            var reader = MessagePackReader(prefix)
            XCTAssertThrowsError(try reader.skipValue())
        }
    }

    func testRandomBytesNeverCrashTheReader() {
        var random = SeededGenerator(seed: 0x5EED_0001)
        var decoded = 0
        for _ in 0..<20_000 {
            let bytes = random.bytes(count: Int.random(in: 0...64, using: &random))
            if (try? MessagePackValue(decoding: bytes)) != nil { decoded += 1 }
            var reader = MessagePackReader(bytes)
            _ = try? reader.skipValue()
            reader = MessagePackReader(bytes)
            _ = try? reader.readString()
            _ = try? reader.readMapHeader()
            _ = try? reader.readExtension()
        }
        XCTAssertGreaterThan(decoded, 0, "some random inputs are valid values")
    }

    func testMutationsOfValidValuesNeverCrashTheReader() {
        var random = SeededGenerator(seed: 0x5EED_0002)
        let valid: MessagePackValue = [
            "op": "fork", "count": 3, "delay_ms": 250.5, "ids": [1, 2, 3, .uint(.max), .int(.min)],
            "blob": .binary(Array(repeating: 7, count: 40)), "x": .extension(type: 1, data: [1, 2]),
        ]
        let bytes = valid.encoded()
        for _ in 0..<20_000 {
            let mutated = random.mutate(bytes)
            if let value = try? MessagePackValue(decoding: mutated) {
                // Whatever decodes must re-encode and decode to itself.
                XCTAssertEqual(try? MessagePackValue(decoding: value.encoded()), value)
            }
        }
    }
}
