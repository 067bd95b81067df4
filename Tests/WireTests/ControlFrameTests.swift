import TestSupport
import XCTest
@testable import Wire

final class ControlFrameTests: XCTestCase {
    func decodeAll(_ chunks: [[UInt8]]) throws -> [ControlMessage] {
        var decoder = ControlFrameDecoder()
        var messages: [ControlMessage] = []
        for chunk in chunks {
            decoder.feed(chunk)
            while let message = try decoder.next() { messages.append(message) }
        }
        try decoder.endOfStream()
        return messages
    }

    func testFrameIsBigEndianLengthThenAMessagePackMap() throws {
        let frame = try ControlFrame.encode(["op": "fork", "count": 2])
        XCTAssertEqual(hex(frame), hex([0, 0, 0, 16, 0x82, 0xa2, 0x6f, 0x70, 0xa4, 0x66, 0x6f, 0x72, 0x6b, 0xa5, 0x63, 0x6f, 0x75, 0x6e, 0x74, 0x02]))
        XCTAssertEqual(try decodeAll([frame]), [["op": "fork", "count": 2]])
    }

    func testStreamsDecodeInEverySplit() throws {
        let messages: [ControlMessage] = [
            ["op": "fork", "count": 3], [:], ["op": "delay", "ms": 250.5, "tags": ["a", nil, true], "blob": .binary([1, 2])],
            ["op": "cancel", "nested": ["deep": [1, [2]]]],
        ]
        var stream: [UInt8] = []
        for message in messages { stream += try ControlFrame.encode(message) }
        XCTAssertEqual(try decodeAll([stream]), messages)
        XCTAssertEqual(try decodeAll(byteByByte(stream)), messages)
        for split in twoWaySplits(stream) { XCTAssertEqual(try decodeAll(split), messages, "split at \(split[0].count)") }
        XCTAssertEqual(messages[0]["op"], "fork")
    }

    func testMaximumFrameSize() throws {
        XCTAssertEqual(ControlFrame.maxPayloadBytes, 65_536)
        // A map holding one string sized so the payload is exactly 64 KiB.
        var filler = String(repeating: "x", count: 65_536 - 1 - 2 - 3)  // fixmap + fixstr("k") + str 16 header
        let exact = try ControlFrame.encode(["k": .string(filler)])
        XCTAssertEqual(exact.count, 4 + 65_536)
        XCTAssertEqual(try decodeAll([exact]).first?["k"]?.stringValue?.count, filler.count)
        filler += "x"
        XCTAssertThrowsError(try ControlFrame.encode(["k": .string(filler)])) { error in
            XCTAssertEqual(error as? ControlFrameError, .frameTooLarge(length: 65_537, limit: 65_536))
        }
    }

    func testTooLargeLengthFailsAtOnceAndForGood() {
        var decoder = ControlFrameDecoder()
        decoder.feed([0x00, 0x01, 0x00])
        XCTAssertNil(try decoder.next())
        decoder.feed([0x01])  // 65,537: known before any payload arrives
        XCTAssertThrowsError(try decoder.next()) { XCTAssertEqual($0 as? ControlFrameError, .frameTooLarge(length: 65_537, limit: 65_536)) }
        decoder.feed(try! ControlFrame.encode(["op": "x"]))
        XCTAssertThrowsError(try decoder.next(), "framing is lost: the error is final")
        var huge = ControlFrameDecoder()
        huge.feed([0xff, 0xff, 0xff, 0xff])
        XCTAssertThrowsError(try huge.next())
    }

    func testBadPayloadsAreTypedAndSkipped() throws {
        func frame(_ payload: [UInt8]) -> [UInt8] {
            let n = payload.count
            return [UInt8(n >> 24 & 0xff), UInt8(n >> 16 & 0xff), UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] + payload
        }
        let good = try ControlFrame.encode(["op": "ok"])
        let cases: [([UInt8], ControlFrameError)] = [
            ([0x92, 0x01, 0x02], .notAMap(.array)),
            ([0x81, 0x01, 0x02], .nonStringKey(.integer)),
            ([0x81, 0xa1, 0x61], .invalidPayload(.truncated(offset: 3, needed: 1))),
            ([0x80, 0xc0], .invalidPayload(.trailingBytes(offset: 1, count: 1))),
            ([], .invalidPayload(.truncated(offset: 0, needed: 1))),
            ([0xc1], .invalidPayload(.reservedByte(offset: 0))),
            ([0x81, 0xa1, 0x61] + [UInt8](repeating: 0x91, count: 40) + [0xc0], .invalidPayload(.depthLimitExceeded(limit: 16, offset: 19))),
        ]
        for (payload, expected) in cases {
            var decoder = ControlFrameDecoder()
            decoder.feed(frame(payload) + good)
            XCTAssertThrowsError(try decoder.next(), hex(payload)) { XCTAssertEqual($0 as? ControlFrameError, expected, hex(payload)) }
            XCTAssertEqual(try decoder.next(), ["op": "ok"], "the next frame is still found")
        }
    }

    func testCutOffFrameIsReportedAtClose() throws {
        let frame = try ControlFrame.encode(["op": "fork"])
        for length in 1..<frame.count {
            var decoder = ControlFrameDecoder()
            decoder.feed(frame[..<length])
            XCTAssertNil(try decoder.next())
            XCTAssertThrowsError(try decoder.endOfStream()) {
                XCTAssertEqual($0 as? ControlFrameError, .truncatedFrame(bufferedBytes: length))
            }
        }
    }

    func testRandomBytesAndMutationsNeverCrashTheDecoder() throws {
        var random = SeededGenerator(seed: 0x5EED_0401)
        let valid = try ControlFrame.encode(["op": "burst", "count": 100, "ratio": 0.5]) + ControlFrame.encode(["op": "kill", "pid": 4242])
        for _ in 0..<20_000 {
            for bytes in [random.bytes(count: Int.random(in: 0...40, using: &random)), random.mutate(valid)] {
                var decoder = ControlFrameDecoder()
                decoder.feed(bytes)
                // Each call consumes a frame or stops, so this ends.
                for _ in 0..<bytes.count + 1 {
                    do {
                        guard try decoder.next() != nil else { break }
                    } catch .frameTooLarge {
                        break
                    } catch {
                        continue
                    }
                }
                _ = try? decoder.endOfStream()
            }
        }
    }
}
