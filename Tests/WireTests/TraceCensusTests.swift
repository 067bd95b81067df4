import TestSupport
import XCTest
@testable import Wire

/// The agent counts from `TraceCensus`, not from decoded spans: the census
/// must accept exactly what decoding accepts and see the same ids, chunks
/// and `process_id`s.
extension TracePayloadTests {
    /// What decoding says the census should find.
    func expectedCensus(_ traces: [[Span]]) -> (ids: [[UInt64]], processIDs: [Double?]) {
        (traces.map { $0.flatMap { [$0.traceID, $0.spanID] } }, traces.map { $0.lazy.compactMap { $0.metrics["process_id"] }.first })
    }

    func observed(_ census: TraceCensus) -> (ids: [[UInt64]], processIDs: [Double?]) {
        var ids: [[UInt64]] = [], start = 0
        for end in census.chunkEnds {
            ids.append(census.keys[start..<end].flatMap { [$0.traceID, $0.spanID] })
            start = end
        }
        return (ids, census.chunkProcessIDs)
    }

    func assertAgree(_ bytes: [UInt8], _ version: TraceAPIVersion, _ census: inout TraceCensus, _ context: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        let decoded = Result { try version.decode(bytes) }
        let counted = Result { try census.read(bytes, version: version) }
        switch (decoded, counted) {
        case (.success(let traces), .success):
            let expected = expectedCensus(traces), found = observed(census)
            XCTAssertEqual(found.ids, expected.ids, context, file: file, line: line)
            XCTAssertEqual(found.processIDs, expected.processIDs, context, file: file, line: line)
        case (.failure(let error), .failure(let censusError)):
            XCTAssertEqual(censusError as? TracePayloadError, error as? TracePayloadError, context, file: file, line: line)
        default:
            XCTFail("\(context): decode \(decoded), census \(counted)", file: file, line: line)
        }
    }

    func testCensusSeesWhatDecodingSeesInValidPayloads() {
        var random = SeededGenerator(seed: 0x5EED_0C01)
        var census = TraceCensus()
        for round in 0..<300 {
            var traces = randomTraces(&random)
            // process_id in some spans, not always the first, sometimes repeated.
            for chunk in traces.indices {
                for index in traces[chunk].indices where Bool.random(using: &random) {
                    traces[chunk][index].metrics["process_id"] = Double(Int.random(in: 1...99_999, using: &random))
                }
            }
            for version in TraceAPIVersion.allCases { assertAgree(version.encode(traces), version, &census, "\(version) round \(round)") }
        }
    }

    func testCensusFollowsTheDecoderOnV04Leniency() {
        // Repeated keys: the last trace_id and the last metrics map win.
        let span: MessagePackValue = .map([
            (key: "trace_id", value: 1), (key: "metrics", value: ["process_id": 5]), (key: "trace_id", value: .int(-1)),
            (key: "span_id", value: .nil), (key: "metrics", value: ["other": 1, "process_id": .float(7)]), (key: "meta", value: .nil),
            (key: .binary(Array("name".utf8)), value: .binary([0xff])), (key: .nil, value: ["skipped": [1, 2]]),
        ])
        var census = TraceCensus()
        assertAgree(MessagePackValue.array([[span, span], []]).encoded(), .v04, &census, "lenient v0.4")
    }

    func testCensusRejectsWhatDecodingRejects() {
        var random = SeededGenerator(seed: 0x5EED_0C02)
        var census = TraceCensus()
        for version in TraceAPIVersion.allCases {
            let valid = version.encode(randomTraces(&random) + [[fixtureSpan]])
            for length in stride(from: 0, to: valid.count, by: 7) { assertAgree(Array(valid[..<length]), version, &census, "\(version) cut \(length)") }
            assertAgree(valid + [0xc0], version, &census, "\(version) trailing")
            for round in 0..<5_000 { assertAgree(random.mutate(valid), version, &census, "\(version) mutation \(round)") }
        }
        let many = [UInt8]([0x91, 0xdd, 0x00, 0x01, 0x86, 0xa0]) + [UInt8](repeating: 0x80, count: 100_000)
        XCTAssertThrowsError(try census.read(many, version: .v04, limits: TraceDecodingLimits(maxSpans: 99_999))) { error in
            XCTAssertEqual(error as? TracePayloadError, .tooManySpans(limit: 99_999))
        }
    }
}

extension TracePayloadTests {
    /// The census reads spans in the encoding exporters write straight from
    /// the bytes and hands any other to the general readers: a chunk that
    /// mixes both, span by span, must still agree with decoding.
    func testCensusAgreesOnSpansInEveryIntegerAndMapEncodingMixedInOneChunk() {
        // String table: "", "svc", "process_id", "k", then "v0"… so indices
        // above 127 exist and need a uint 8 or uint 16 encoding.
        var table: [MessagePackValue] = ["", "svc", "process_id", "k"]
        table += (0..<200).map { .string("v\($0)") }
        func span(_ fields: [UInt8]) -> [UInt8] { [0x9c] + fields }
        let be64: (UInt64) -> [UInt8] = { value in (0..<8).map { UInt8(truncatingIfNeeded: value >> (56 - 8 * UInt64($0))) } }
        let common = span([1, 1, 1] + [0xcf] + be64(0xAAAA_0000_0000_0001) + [0xcf] + be64(0xBBBB_0000_0000_0002) + [0x00]
                          + [0xd3] + be64(1_700_000_000_000_000_000) + [0xcd, 0x2c, 0x63] + [0x00]
                          + [0x81, 3, 4] + [0x81, 2, 0xcb] + be64(Double(4242).bitPattern) + [1])
        let odd = [
            // nil ids (read as 0), a negative span id, uint 8 and uint 16 string indices, a float 32 process_id
            span([0xcc, 150, 0xcd, 0x00, 0xc8, 1, 0xc0, 0xd0, 0xfe, 0xc0, 0xc0, 0xc0, 0xc0, 0x80, 0x81, 2, 0xca, 0x45, 0x84, 0x50, 0x00, 1]),
            // small integer ids, an int 32 duration, a signed error, a map 16 meta, an integer process_id
            span([1, 1, 1, 0x07, 0x2a, 0xd1, 0x01, 0x00, 0x05, 0xd2, 0x00, 0x01, 0x00, 0x00, 0xff, 0xde, 0x00, 0x01, 3, 4, 0x81, 2, 0xcd, 0x30, 0x39, 1]),
            // a float 64 process_id written as a positive fixint, nil metrics values
            span([1, 1, 1, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x80, 0x82, 2, 0x7f, 3, 0xc0, 1]),
            // what only the general readers take: an array 16 of 12 fields, a map 32 meta
            [0xdc, 0x00, 0x0c, 1, 1, 1, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00, 0xdf, 0x00, 0x00, 0x00, 0x01, 3, 4, 0x81, 2, 0x10, 1],
        ]
        // Each odd span before, between and after common ones, in one chunk.
        var spans: [[UInt8]] = [common]
        for oddSpan in odd { spans += [oddSpan, common] }
        var chunk: [UInt8] = [0xdc, 0x00, UInt8(spans.count)]
        for bytes in spans { chunk += bytes }
        var census = TraceCensus()
        for first in [nil] + odd.map(Optional.some) {
            // A second chunk of one span: each kind of span gets to decide a chunk's process_id.
            let body = [0x92] + MessagePackValue.array(table).encoded() + [0x92] + chunk + [0x91] + (first ?? common)
            XCTAssertNoThrow(try TraceAPIVersion.v05.decode(body), "the payload is valid")
            assertAgree(body, .v05, &census, "mixed encodings, first \(first.map { "\($0.prefix(4))" } ?? "common")")
            XCTAssertEqual(census.spanCount, spans.count + 1)
        }
    }
}
