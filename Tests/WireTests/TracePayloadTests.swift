import TestSupport
import XCTest
@testable import Wire

final class TracePayloadTests: XCTestCase {
    let fixtureSpan = Span(
        traceID: 1, spanID: 2, parentID: 0, name: "n", resource: "r", service: "s", type: "web",
        start: 1000, duration: 70_000, error: 1, meta: ["k": "v"], metrics: ["process_id": 42])

    /// A v0.4 payload of one trace holding `fixtureSpan`, written byte by
    /// byte from the MessagePack specification and the agent's v0.4 field
    /// names — not produced by the encoder under test.
    var fixtureV04: [UInt8] {
        func str(_ text: String) -> [UInt8] { [0xa0 | UInt8(text.utf8.count)] + Array(text.utf8) }  // fixstr
        return [0x91]  // fixarray: 1 trace
            + [0x91]  // fixarray: 1 span
            + [0x8c]  // fixmap: 12 fields
            + str("service") + str("s")
            + str("name") + str("n")
            + str("resource") + str("r")
            + str("trace_id") + [0x01]  // positive fixint
            + str("span_id") + [0x02]
            + str("parent_id") + [0x00]
            + str("start") + [0xcd, 0x03, 0xe8]  // uint 16: 1000
            + str("duration") + [0xce, 0x00, 0x01, 0x11, 0x70]  // uint 32: 70000
            + str("error") + [0x01]
            + str("meta") + [0x81] + str("k") + str("v")
            + str("metrics") + [0x81] + str("process_id") + [0xcb, 0x40, 0x45, 0, 0, 0, 0, 0, 0]  // float 64: 42.0
            + str("type") + str("web")
    }

    /// The v0.5 form of a span like `fixtureSpan` without type and metrics,
    /// by hand from the agent's description (pkg/trace/api/version.go):
    /// strings interned in first-use order after "" at 0.
    var fixtureV05: (span: Span, bytes: [UInt8]) {
        let span = Span(traceID: 1, spanID: 2, name: "n", resource: "r", service: "s", start: 1000, duration: 5, meta: ["k": "v"])
        let bytes: [UInt8] = [0x92]  // [strings, traces]
            + [0x96, 0xa0, 0xa1, 0x73, 0xa1, 0x6e, 0xa1, 0x72, 0xa1, 0x6b, 0xa1, 0x76]  // "", "s", "n", "r", "k", "v"
            + [0x91, 0x91, 0x9c]  // 1 trace, 1 span, 12 elements
            + [0x01, 0x02, 0x03]  // service "s", name "n", resource "r"
            + [0x01, 0x02, 0x00]  // trace_id, span_id, parent_id
            + [0xcd, 0x03, 0xe8, 0x05, 0x00]  // start 1000, duration 5, error 0
            + [0x81, 0x04, 0x05]  // meta {"k": "v"}
            + [0x80]  // metrics {}
            + [0x00]  // type ""
        return (span, bytes)
    }

    func randomSpan(_ random: inout SeededGenerator) -> Span {
        let words = ["", "web", "rack.request", "forkscope.send", "GET /users/:id", "é✓🎉", String(repeating: "long", count: 20)]
        func word() -> String { words.randomElement(using: &random)! }
        var span = Span(
            traceID: random.next(), spanID: random.next(), parentID: Bool.random(using: &random) ? 0 : random.next(),
            name: word(), resource: word(), service: word(), type: word(),
            start: Int64.random(in: .min ... .max, using: &random), duration: Int64.random(in: -5...Int64.max, using: &random),
            error: Int32.random(in: .min ... .max, using: &random))
        for index in 0..<Int.random(in: 0...20, using: &random) { span.meta["k\(index)\(word())"] = word() }
        for index in 0..<Int.random(in: 0...3, using: &random) {
            span.metrics["m\(index)"] = [0, -0.5, 42, .pi, 1e300, .leastNonzeroMagnitude].randomElement(using: &random)!
        }
        return span
    }

    func randomTraces(_ random: inout SeededGenerator) -> [[Span]] {
        (0..<Int.random(in: 0...4, using: &random)).map { _ in
            (0..<Int.random(in: 0...5, using: &random)).map { _ in randomSpan(&random) }
        }
    }

    // MARK: fixtures

    func testV04PayloadMatchesTheHandWrittenFixture() throws {
        XCTAssertEqual(hex(TracePayload.encodeV04([[fixtureSpan]])), hex(fixtureV04))
        XCTAssertEqual(try TracePayload.decodeV04(fixtureV04), [[fixtureSpan]])
    }

    func testV05PayloadMatchesTheHandWrittenFixture() throws {
        let (span, bytes) = fixtureV05
        XCTAssertEqual(hex(TracePayload.encodeV05([[span]])), hex(bytes))
        XCTAssertEqual(try TracePayload.decodeV05(bytes), [[span]])
    }

    func testEmptyPayloads() throws {
        XCTAssertEqual(TracePayload.encodeV04([]), [0x90])
        XCTAssertEqual(TracePayload.encodeV05([]), [0x92, 0x91, 0xa0, 0x90], "the table always holds the empty string")
        XCTAssertEqual(try TracePayload.decodeV04([0x90]), [])
        XCTAssertEqual(try TracePayload.decodeV05([0x92, 0x91, 0xa0, 0x90]), [])
    }

    // MARK: round trips

    func testBothVersionsRoundTripSpansExactly() throws {
        var random = SeededGenerator(seed: 0x5EED_0201)
        for _ in 0..<300 {
            let traces = randomTraces(&random)
            for version in TraceAPIVersion.allCases {
                XCTAssertEqual(try version.decode(version.encode(traces)), traces, "\(version)")
            }
        }
        let extremes = Span(
            traceID: .max, spanID: .max, parentID: UInt64(Int64.max) + 1, name: String(repeating: "n", count: 70_000),
            resource: "", service: "svc", start: .min, duration: .max, error: .min,
            meta: OrderedMap((0..<70).map { ("key\($0)", String($0)) }), metrics: ["_sampling_priority_v1": 2, "neg": -1e-300])
        for version in TraceAPIVersion.allCases {
            XCTAssertEqual(try version.decode(version.encode([[extremes], [], [extremes, extremes]])), [[extremes], [], [extremes, extremes]])
        }
    }

    func testStreamingEncodersMatchOneShotEncodingAndStartOver() throws {
        var random = SeededGenerator(seed: 0x5EED_0202)
        for traceCount in [0, 1, 15, 16, 40] {
            let traces = (0..<traceCount).map { _ in (0..<Int.random(in: 1...3, using: &random)).map { _ in randomSpan(&random) } }
            var v04 = TracePayloadV04Encoder()
            var v05 = TracePayloadV05Encoder()
            for trace in traces {
                v04.append(trace: trace)
                v05.append(trace: trace)
            }
            XCTAssertEqual(v04.traceCount, traceCount)
            XCTAssertEqual(v04.spanCount, traces.reduce(0) { $0 + $1.count })
            let expected04 = TracePayload.encodeV04(traces)
            let expected05 = TracePayload.encodeV05(traces)
            XCTAssertEqual(v04.byteCount, expected04.count)
            XCTAssertEqual(v05.byteCount, expected05.count)
            XCTAssertEqual(v04.finish(), expected04)
            XCTAssertEqual(v05.finish(), expected05)
            XCTAssertEqual(v04.traceCount, 0)
            XCTAssertEqual(v04.finish(), [0x90], "finish starts a new payload")
            XCTAssertEqual(v05.finish(), [0x92, 0x91, 0xa0, 0x90])
        }
    }

    /// The direct span API (no `Span` values, constants pre-interned)
    /// decodes to the same spans as encoding the `Span`s; v0.4 gives the
    /// very same bytes; the agent's census reads it; the encoder starts
    /// over with its constants after `finish`.
    func testDirectSpanEncodingMatchesSpanEncoding() throws {
        let root = Span(traceID: 7, spanID: 8, name: "op", resource: "GET /x", service: "svc", type: "web", start: 1_000,
                        duration: 300_000, error: 1, meta: ["http.url": "/x", "component": "svc"], metrics: ["process_id": 42])
        let child = Span(traceID: 7, spanID: 9, parentID: 8, name: "child", resource: "op", service: "svc", type: "",
                         start: 2_000, duration: 5, metrics: ["process_id": 42, "_dd.top_level": 1])
        let keyed = PayloadConstants(["svc", "op", "web", "process_id", "component", "http.url", "_dd.top_level"])
        func write(_ payload: inout TracePayloadEncoder) {
            payload.beginTrace(spanCount: 2)
            payload.beginSpan(service: .constant(keyed[0]), name: .constant(keyed[1]), resource: .dynamic("GET /x"),
                              traceID: 7, spanID: 8, parentID: 0, start: 1_000, duration: 300_000, error: 1)
            payload.beginMeta(count: 2)
            payload.tag(keyed[5], .dynamic("/x"))
            payload.tag(keyed[4], .constant(keyed[0]))
            payload.beginMetrics(count: 1)
            payload.metric(keyed[3], 42)
            payload.endSpan(type: .constant(keyed[2]))
            payload.beginSpan(service: .dynamic("svc"), name: .dynamic("child"), resource: .constant(keyed[1]),
                              traceID: 7, spanID: 9, parentID: 8, start: 2_000, duration: 5, error: 0)
            payload.beginMeta(count: 0)
            payload.beginMetrics(count: 2)
            payload.metric(keyed[3], 42)
            payload.metric(keyed[6], 1)
            payload.endSpan(type: .dynamic(""))
        }
        for version in TraceAPIVersion.allCases {
            var encoder = TracePayloadEncoder(version: version, constants: keyed)
            for _ in 0..<2 {
                write(&encoder)
                encoder.append(trace: [root])
                XCTAssertEqual(encoder.traceCount, 2)
                XCTAssertEqual(encoder.spanCount, 3)
                let expectedCount = encoder.byteCount
                let bytes = encoder.finish()
                XCTAssertEqual(bytes.count, expectedCount, "\(version)")
                XCTAssertEqual(try version.decode(bytes), [[root, child], [root]], "\(version)")
                if version == .v04 { XCTAssertEqual(bytes, version.encode([[root, child], [root]])) }
                var census = TraceCensus()
                try census.read(bytes, version: version)
                XCTAssertEqual(census.keys.map(\.spanID), [8, 9, 8])
                XCTAssertEqual(census.chunkProcessIDs, [42, 42])
                XCTAssertEqual(encoder.spanCount, 0, "finish starts over")
            }
        }
    }

    func testV05InternsEachStringOnce() throws {
        let span = Span(traceID: 1, spanID: 1, name: "same", resource: "same", service: "same", type: "same", start: 0, duration: 0,
                        meta: ["same": "same"], metrics: ["same": 1])
        let bytes = TracePayload.encodeV05([[span, span]])
        var reader = MessagePackReader(bytes)
        XCTAssertEqual(try reader.readArrayHeader(), 2)
        XCTAssertEqual(try reader.readArrayHeader(), 2, "the table holds \"\" and \"same\"")
    }

    // MARK: what real tracers send

    func testV04DecoderAcceptsWhatTheAgentAccepts() throws {
        var writer = MessagePackWriter()
        writer.writeArrayHeader(count: 1)
        writer.writeArrayHeader(count: 1)
        writer.writeMapHeader(count: 12)
        writer.write("trace_id"); writer.write(Int64(-1))  // a signed id from a tracer without unsigned types
        writer.write("span_id"); writer.writeEncoded([0xd3, 0, 0, 0, 0, 0, 0, 0, 7])  // int 64 for a small value
        writer.write("parent_id"); writer.writeNil()
        writer.write("name"); writer.writeBinary(Array("bin.name".utf8))  // bin where str is expected
        writer.write("service"); writer.writeNil()
        writer.write("start"); writer.write(UInt64(1_700_000_000_000_000_000))
        writer.write("duration"); writer.writeEncoded([0xd2, 0, 0, 0, 9])
        writer.write("error"); writer.write(UInt64(1))
        writer.write("metrics")
        writer.writeMapHeader(count: 3)
        writer.write("int"); writer.write(7)
        writer.write("f32"); writer.write(Float(0.5))
        writer.write("nil"); writer.writeNil()
        writer.write("meta_struct")
        writer.writeMapHeader(count: 1); writer.write("appsec"); writer.writeBinary([0x81, 0xa1, 0x61, 0x01])
        writer.write("span_links")
        writer.write(MessagePackValue.array([["trace_id": 5, "attributes": ["a": "b"]]]))
        writer.write("meta"); writer.writeNil()
        let span = try XCTUnwrap(try TracePayload.decodeV04(writer.bytes).first?.first)
        XCTAssertEqual(span.traceID, .max)
        XCTAssertEqual(span.spanID, 7)
        XCTAssertEqual(span.parentID, 0)
        XCTAssertEqual(span.name, "bin.name")
        XCTAssertEqual(span.service, "")
        XCTAssertEqual(span.start, 1_700_000_000_000_000_000)
        XCTAssertEqual(span.duration, 9)
        XCTAssertEqual(span.error, 1)
        XCTAssertEqual(span.metrics, ["int": 7, "f32": 0.5, "nil": 0])
        XCTAssertEqual(span.meta, [:])
    }

    func testV04DecoderRejectsValuesThatDoNotFit() {
        func payload(_ key: String, _ value: MessagePackValue) -> [UInt8] {
            MessagePackValue.array([.array([.map([(key: .string(key), value: value)])])]).encoded()
        }
        for (key, value) in [("start", MessagePackValue.uint(.max)), ("error", .int(Int64(Int32.max) + 1)), ("name", .int(5)),
                             ("meta", .array([])), ("metrics", ["k": "not a number"]), ("trace_id", .double(1))] {
            XCTAssertThrowsError(try TracePayload.decodeV04(payload(key, value)), key) { error in
                guard case .malformed = error as? TracePayloadError else { return XCTFail("\(key): \(error)") }
            }
        }
    }

    func testV05StructuralErrorsAreTyped() {
        XCTAssertThrowsError(try TracePayload.decodeV05([0x93, 0x91, 0xa0, 0x90, 0xc0])) { error in
            XCTAssertEqual(error as? TracePayloadError, .wrongElementCount(what: "the v0.5 payload", expected: 2, found: 3, offset: 0))
        }
        var bytes = fixtureV05.bytes
        bytes[15] = 0x9b  // 11 elements
        XCTAssertThrowsError(try TracePayload.decodeV05(bytes)) { error in
            XCTAssertEqual(error as? TracePayloadError, .wrongElementCount(what: "a v0.5 span", expected: 12, found: 11, offset: 15))
        }
        bytes = fixtureV05.bytes
        bytes[16] = 0x06  // service → index 6 of a 6-entry table
        XCTAssertThrowsError(try TracePayload.decodeV05(bytes)) { error in
            XCTAssertEqual(error as? TracePayloadError, .stringIndexOutOfRange(index: 6, tableSize: 6, offset: 16))
            XCTAssertEqual("\(error)", "malformed trace payload: string index 6 at offset 16 is outside the 6-entry string table")
        }
        bytes[16] = 0xff  // a negative index
        XCTAssertThrowsError(try TracePayload.decodeV05(bytes))
    }

    func testSpanCountIsLimited() throws {
        let payload = TracePayload.encodeV04([[fixtureSpan, fixtureSpan], [fixtureSpan]])
        XCTAssertEqual(try TracePayload.decodeV04(payload, limits: TraceDecodingLimits(maxSpans: 3)).count, 2)
        XCTAssertThrowsError(try TracePayload.decodeV04(payload, limits: TraceDecodingLimits(maxSpans: 2))) { error in
            XCTAssertEqual(error as? TracePayloadError, .tooManySpans(limit: 2))
        }
        // 100,000 one-byte spans: bounded by the limit, not by what the bytes claim.
        let many = [UInt8]([0x91, 0xdd, 0x00, 0x01, 0x86, 0xa0]) + [UInt8](repeating: 0x80, count: 100_000)
        XCTAssertEqual(try TracePayload.decodeV04(many).first?.count, 100_000)
        XCTAssertThrowsError(try TracePayload.decodeV04(many, limits: TraceDecodingLimits(maxSpans: 99_999)))
    }

    func testTrailingBytesAreRejected() {
        XCTAssertThrowsError(try TracePayload.decodeV04(fixtureV04 + [0xc0])) { error in
            XCTAssertEqual(error as? TracePayloadError, .malformed(.trailingBytes(offset: fixtureV04.count, count: 1)))
        }
        XCTAssertThrowsError(try TracePayload.decodeV05(fixtureV05.bytes + [0x00]))
    }

    // MARK: hostile input

    func testEveryTruncationIsATypedError() {
        var random = SeededGenerator(seed: 0x5EED_0203)
        let traces = [[randomSpan(&random), randomSpan(&random)], [fixtureSpan]]
        for version in TraceAPIVersion.allCases {
            let bytes = version.encode(traces)
            for length in 0..<bytes.count {
                XCTAssertThrowsError(try version.decode(Array(bytes[..<length])), "\(version) length \(length)") { error in
                    guard case .malformed(.truncated) = error as? TracePayloadError else { return XCTFail("\(version) \(length): \(error)") }
                }
            }
        }
    }

    func testRandomBytesAndMutationsNeverCrashTheDecoders() {
        var random = SeededGenerator(seed: 0x5EED_0204)
        let valid04 = TracePayload.encodeV04(randomTraces(&random) + [[fixtureSpan]])
        let valid05 = TracePayload.encodeV05(randomTraces(&random) + [[fixtureSpan]])
        var accepted = 0
        for round in 0..<20_000 {
            let noise = random.bytes(count: Int.random(in: 0...48, using: &random))
            _ = try? TracePayload.decodeV04(noise)
            _ = try? TracePayload.decodeV05(noise)
            let mutated04 = random.mutate(valid04)
            let mutated05 = random.mutate(valid05)
            if let traces = try? TracePayload.decodeV04(mutated04) {
                accepted += 1
                if round % 16 == 0 { XCTAssertEqual(try? TracePayload.decodeV04(TracePayload.encodeV04(traces)), traces) }
            }
            if let traces = try? TracePayload.decodeV05(mutated05) {
                accepted += 1
                if round % 16 == 0 { XCTAssertEqual(try? TracePayload.decodeV05(TracePayload.encodeV05(traces)), traces) }
            }
        }
        XCTAssertGreaterThan(accepted, 0)
    }

    // MARK: headers and the agent's reply

    func testRequestHeadersAreWhatTracersSend() {
        let tracer = TracerIdentity(language: "ruby", languageVersion: "3.3.0", languageInterpreter: "ruby-x86_64-linux",
                                    languageInterpreterVendor: "ruby", tracerVersion: "2.3.0", computedTopLevel: true)
        let headers = TracePayload.requestHeaders(host: "127.0.0.1:8126", traceCount: 7, tracer: tracer)
        XCTAssertEqual(headers.fields, [
            HTTPField(name: "Host", value: "127.0.0.1:8126"),
            HTTPField(name: "Content-Type", value: "application/msgpack"),
            HTTPField(name: "X-Datadog-Trace-Count", value: "7"),
            HTTPField(name: "Datadog-Meta-Lang", value: "ruby"),
            HTTPField(name: "Datadog-Meta-Lang-Version", value: "3.3.0"),
            HTTPField(name: "Datadog-Meta-Lang-Interpreter", value: "ruby-x86_64-linux"),
            HTTPField(name: "Datadog-Meta-Lang-Interpreter-Vendor", value: "ruby"),
            HTTPField(name: "Datadog-Meta-Tracer-Version", value: "2.3.0"),
            HTTPField(name: "Datadog-Client-Computed-Top-Level", value: "yes"),
        ])
        let minimal = TracePayload.requestHeaders(traceCount: 0, tracer: TracerIdentity(language: "swift", languageVersion: "6.3", tracerVersion: "0.1"))
        XCTAssertEqual(minimal.map(\.name), ["Content-Type", "X-Datadog-Trace-Count", "Datadog-Meta-Lang", "Datadog-Meta-Lang-Version",
                                             "Datadog-Meta-Tracer-Version"])
        XCTAssertEqual(TraceAPIVersion.v04.path, "/v0.4/traces")
        XCTAssertEqual(TraceAPIVersion.v05.path, "/v0.5/traces")
    }

    func testAgentReplyRatesParse() throws {
        XCTAssertEqual(try AgentSamplingRates.parse(Array(#"{"rate_by_service":{"service:,env:":1.0}}"#.utf8)), ["service:,env:": 1])
        XCTAssertEqual(try AgentSamplingRates.parse(Array(#" { "rate_by_service" : { "service:web,env:prod" : 0.25 , "service:,env:" : 1 } } "#.utf8)),
                       ["service:web,env:prod": 0.25, "service:,env:": 1])
        XCTAssertEqual(try AgentSamplingRates.parse(Array("{}".utf8)), [:])
        XCTAssertThrowsError(try AgentSamplingRates.parse(Array("OK".utf8)))
        XCTAssertThrowsError(try AgentSamplingRates.parse(Array("[]".utf8))) {
            XCTAssertEqual($0 as? JSONError, .unexpectedShape("the agent's reply is not a JSON object"))
        }
        XCTAssertThrowsError(try AgentSamplingRates.parse(Array(#"{"rate_by_service":[1]}"#.utf8)))
        XCTAssertThrowsError(try AgentSamplingRates.parse(Array(#"{"rate_by_service":{"a":"1"}}"#.utf8)))
        let body = AgentSamplingRates.responseBody(["service:,env:": 1, "service:a,env:b": 0.5])
        XCTAssertEqual(String(decoding: body, as: UTF8.self), #"{"rate_by_service":{"service:,env:":1,"service:a,env:b":0.5}}"#)
        XCTAssertEqual(try AgentSamplingRates.parse(body), ["service:,env:": 1, "service:a,env:b": 0.5])
    }
}
