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
            ids.append((start..<end).flatMap { [census.traceIDs[$0], census.spanIDs[$0]] })
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
