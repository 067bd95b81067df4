/// Encoders and decoders for the agent's `/v0.4/traces` and `/v0.5/traces`
/// MessagePack payloads.
///
/// v0.4 (datadog-agent pkg/trace/api/version.go; dd-trace-py
/// `MsgpackEncoderV04`): an array of traces, each an array of spans, each
/// span a map keyed by field name.
///
/// v0.5 (same sources, `MsgpackEncoderV05`, agent `decoder_v05.go`):
/// `[strings, traces]` where `strings` is an array whose entry 0 is "" and
/// each span is a 12-element array — service, name, resource (string
/// indices), trace_id, span_id, parent_id (uint64), start, duration (int64),
/// error (int32), meta (map index→index), metrics (map index→float64),
/// type (string index).
///
/// Decoders accept what the agent accepts: nil for a zero value, any integer
/// width, bin for str, integers for float metrics, a negative int64 for a
/// uint64 id (Java-era tracers); unknown v0.4 keys are skipped.
public enum TracePayload {
    // MARK: v0.4

    public static func encodeV04(_ traces: [[Span]]) -> [UInt8] {
        let spanCount = traces.reduce(0) { $0 + $1.count }
        var writer = MessagePackWriter(reservingCapacity: 16 + spanCount * 256)
        writer.writeArrayHeader(count: traces.count)
        for trace in traces {
            writer.writeArrayHeader(count: trace.count)
            for index in trace.indices { trace[index].encodeV04(into: &writer) }
        }
        return writer.takeBytes()
    }

    public static func decodeV04(_ bytes: [UInt8], limits: TraceDecodingLimits = .default) throws(TracePayloadError) -> [[Span]] {
        var reader = MessagePackReader(bytes, maxDepth: limits.maxDepth)
        var budget = limits.maxSpans
        let traceCount = try reader.payloadArrayHeader()
        var traces: [[Span]] = []
        traces.reserveCapacity(min(traceCount, 1024))
        for _ in 0..<traceCount {
            let spanCount = try reader.payloadArrayHeader()
            guard spanCount <= budget else { throw .tooManySpans(limit: limits.maxSpans) }
            budget -= spanCount
            var trace: [Span] = []
            trace.reserveCapacity(min(spanCount, 1024))
            for _ in 0..<spanCount { trace.append(try Span(decodingV04: &reader)) }
            traces.append(trace)
        }
        try reader.payloadEnd()
        return traces
    }

    // MARK: v0.5

    public static func encodeV05(_ traces: [[Span]]) -> [UInt8] {
        var encoder = TracePayloadV05Encoder()
        for trace in traces { encoder.append(trace: trace) }
        return encoder.finish()
    }

    public static func decodeV05(_ bytes: [UInt8], limits: TraceDecodingLimits = .default) throws(TracePayloadError) -> [[Span]] {
        var reader = MessagePackReader(bytes, maxDepth: limits.maxDepth)
        let topOffset = reader.offset
        let top = try reader.payloadArrayHeader()
        guard top == 2 else { throw .wrongElementCount(what: "the v0.5 payload", expected: 2, found: top, offset: topOffset) }
        let stringCount = try reader.payloadArrayHeader()
        var strings: [String] = []
        strings.reserveCapacity(min(stringCount, 4096))
        for _ in 0..<stringCount { strings.append(try reader.lenientString()) }

        var budget = limits.maxSpans
        let traceCount = try reader.payloadArrayHeader()
        var traces: [[Span]] = []
        traces.reserveCapacity(min(traceCount, 1024))
        for _ in 0..<traceCount {
            let spanCount = try reader.payloadArrayHeader()
            guard spanCount <= budget else { throw .tooManySpans(limit: limits.maxSpans) }
            budget -= spanCount
            var trace: [Span] = []
            trace.reserveCapacity(min(spanCount, 1024))
            for _ in 0..<spanCount { trace.append(try Span(decodingV05: &reader, strings: strings)) }
            traces.append(trace)
        }
        try reader.payloadEnd()
        return traces
    }
}

/// A payload of either version, built a trace at a time: an exporter's
/// buffer between flushes. Spans are encoded when they are appended, so
/// what waits is bytes, not `Span` values holding strings and maps.
public struct TracePayloadEncoder: Sendable {
    public let version: TraceAPIVersion
    /// Strings of the direct span API (`beginSpan`…) known in advance.
    public let constants: PayloadConstants?
    // Both stored, one used (the other holds no buffer): plain properties,
    // not optionals, because mutating an optional's payload (`v05!.…`)
    // made the optimizer copy the whole encoder, retaining each of its
    // buffers, on every call of the direct span API.
    var v04: TracePayloadV04Encoder
    var v05: TracePayloadV05Encoder

    public init(version: TraceAPIVersion, constants: PayloadConstants? = nil) {
        self.version = version
        self.constants = constants
        v04 = TracePayloadV04Encoder()
        v05 = TracePayloadV05Encoder(constants: constants)
    }

    public var traceCount: Int {
        switch version {
        case .v04: v04.traceCount
        case .v05: v05.traceCount
        }
    }

    public var spanCount: Int {
        switch version {
        case .v04: v04.spanCount
        case .v05: v05.spanCount
        }
    }

    public var byteCount: Int {
        switch version {
        case .v04: v04.byteCount
        case .v05: v05.byteCount
        }
    }

    public mutating func append(trace: [Span]) {
        switch version {
        case .v04: v04.append(trace: trace)
        case .v05: v05.append(trace: trace)
        }
    }

    /// The payload; the encoder starts over, keeping its buffer's capacity
    /// for the next payload (a fresh one would be grown and page-faulted
    /// in again, span by span, on the request path).
    public mutating func finish() -> [UInt8] {
        switch version {
        case .v04: v04.finish()
        case .v05: v05.finish()
        }
    }
}

/// Builds a v0.4 payload a trace at a time (a writer's buffer between
/// flushes). `finish` returns the payload and starts over.
public struct TracePayloadV04Encoder: Sendable {
    /// The traces, back to back; `finish` puts the array header in front.
    var writer = MessagePackWriter()
    public internal(set) var traceCount = 0
    public internal(set) var spanCount = 0

    public init() {}

    /// Bytes `finish` would return now.
    public var byteCount: Int { Self.arrayHeaderSize(traceCount) + writer.count }

    public mutating func append(trace: [Span]) {
        writer.writeArrayHeader(count: trace.count)
        for index in trace.indices { trace[index].encodeV04(into: &writer) }
        traceCount += 1
        spanCount += trace.count
    }

    public mutating func finish() -> [UInt8] {
        let payload = MessagePackCursor.array(count: byteCount) { cursor in
            cursor.writeArrayHeader(count: traceCount)
            writer.withBytes { cursor.write(bytes: $0) }
        }
        writer.removeAll(keepingCapacity: true)
        traceCount = 0
        spanCount = 0
        return payload
    }

    static func arrayHeaderSize(_ count: Int) -> Int { count < 16 ? 1 : count <= 0xffff ? 3 : 5 }
}

/// Builds a v0.5 payload a trace at a time: strings are interned into the
/// table as spans are appended; `finish` joins table and traces.
public struct TracePayloadV05Encoder: Sendable {
    var strings: PayloadStringTable
    var body = MessagePackWriter()
    public internal(set) var traceCount = 0
    public internal(set) var spanCount = 0
    /// Interned first in every payload (the direct span API's constants).
    let constants: PayloadConstants?
    /// One past the last constant's table index (1 without constants).
    let constantsEnd: UInt32

    public init() { self.init(constants: nil) }

    public init(constants: PayloadConstants?) {
        self.constants = constants
        strings = constants?.table ?? PayloadStringTable()
        constantsEnd = UInt32(strings.count)
    }

    /// Bytes `finish` would return now.
    public var byteCount: Int {
        1 + TracePayloadV04Encoder.arrayHeaderSize(strings.count) + strings.encoded.count
            + TracePayloadV04Encoder.arrayHeaderSize(traceCount) + body.count
    }

    public mutating func append(trace: [Span]) {
        body.writeArrayHeader(count: trace.count)
        for position in trace.indices {
            // Fields read through the array in place: a copy of the span
            // would retain its six strings and two maps.
            body.writeArrayHeader(count: 12)
            body.write(strings.index(of: trace[position].service))
            body.write(strings.index(of: trace[position].name))
            body.write(strings.index(of: trace[position].resource))
            body.write(trace[position].traceID)
            body.write(trace[position].spanID)
            body.write(trace[position].parentID)
            body.write(trace[position].start)
            body.write(trace[position].duration)
            body.write(trace[position].error)
            let meta = trace[position].meta
            body.writeMapHeader(count: meta.count)
            for index in meta.indices {
                body.write(strings.index(of: meta.keys[index]))
                body.write(strings.index(of: meta.values[index]))
            }
            let metrics = trace[position].metrics
            body.writeMapHeader(count: metrics.count)
            for index in metrics.indices {
                body.write(strings.index(of: metrics.keys[index]))
                body.write(metrics.values[index])
            }
            body.write(strings.index(of: trace[position].type))
        }
        traceCount += 1
        spanCount += trace.count
    }

    public mutating func finish() -> [UInt8] {
        let payload = MessagePackCursor.array(count: byteCount) { cursor in
            cursor.writeArrayHeader(count: 2)
            cursor.writeArrayHeader(count: strings.count)
            strings.encoded.withUnsafeBytes { cursor.write(bytes: $0) }
            cursor.writeArrayHeader(count: traceCount)
            body.withBytes { cursor.write(bytes: $0) }
        }
        body.removeAll(keepingCapacity: true)
        strings = constants?.table ?? PayloadStringTable()
        traceCount = 0
        spanCount = 0
        return payload
    }
}

// MARK: span encoding

extension MessagePackWriter {
    /// The six numeric fields of a v0.4 span map, `trace_id` … `error`, in
    /// span.proto's order: the part a `Span` and the direct span API
    /// (`TracePayloadEncoder.beginSpan`) write alike.
    @inline(__always)
    mutating func writeV04SpanNumbers(traceID: UInt64, spanID: UInt64, parentID: UInt64, start: Int64, duration: Int64, error: Int32) {
        writeKey("trace_id")
        write(traceID)
        writeKey("span_id")
        write(spanID)
        writeKey("parent_id")
        write(parentID)
        writeKey("start")
        write(start)
        writeKey("duration")
        write(duration)
        writeKey("error")
        write(error)
    }
}

extension Span {
    /// This span as a v0.4 map of all 12 fields, in span.proto's order.
    public func encodeV04(into writer: inout MessagePackWriter) {
        // Keys come from static storage (no reference counting per key):
        // this is the hot path of every flush.
        writer.writeMapHeader(count: 12)
        writer.writeKey("service")
        writer.write(service)
        writer.writeKey("name")
        writer.write(name)
        writer.writeKey("resource")
        writer.write(resource)
        writer.writeV04SpanNumbers(traceID: traceID, spanID: spanID, parentID: parentID, start: start, duration: duration, error: error)
        writer.writeKey("meta")
        writer.writeMapHeader(count: meta.count)
        for index in meta.indices {
            writer.write(meta.keys[index])
            writer.write(meta.values[index])
        }
        writer.writeKey("metrics")
        writer.writeMapHeader(count: metrics.count)
        for index in metrics.indices {
            writer.write(metrics.keys[index])
            writer.write(metrics.values[index])
        }
        writer.writeKey("type")
        writer.write(type)
    }

    // MARK: span decoding

    init(decodingV04 reader: inout MessagePackReader) throws(TracePayloadError) {
        self.init(traceID: 0, spanID: 0, name: "", resource: "", service: "", start: 0, duration: 0)
        let fieldCount = try reader.payloadMapHeader()
        for _ in 0..<fieldCount {
            let key = try reader.lenientString()
            switch key {
            case "service": service = try reader.lenientString()
            case "name": name = try reader.lenientString()
            case "resource": resource = try reader.lenientString()
            case "trace_id": traceID = try reader.lenientUInt64()
            case "span_id": spanID = try reader.lenientUInt64()
            case "parent_id": parentID = try reader.lenientUInt64()
            case "start": start = try reader.lenientInteger(as: Int64.self)
            case "duration": duration = try reader.lenientInteger(as: Int64.self)
            case "error": error = try reader.lenientInteger(as: Int32.self)
            case "type": type = try reader.lenientString()
            case "meta":
                meta = [:]
                if reader.readNilIfPresent() { continue }
                for _ in 0..<(try reader.payloadMapHeader()) {
                    let key = try reader.lenientString()
                    meta[key] = try reader.lenientString()
                }
            case "metrics":
                metrics = [:]
                if reader.readNilIfPresent() { continue }
                for _ in 0..<(try reader.payloadMapHeader()) {
                    let key = try reader.lenientString()
                    metrics[key] = try reader.lenientDouble()
                }
            default:
                // meta_struct, span_links, span_events and whatever comes next.
                try reader.payloadSkip()
            }
        }
    }

    init(decodingV05 reader: inout MessagePackReader, strings: [String]) throws(TracePayloadError) {
        let offset = reader.offset
        let count = try reader.payloadArrayHeader()
        guard count == 12 else { throw .wrongElementCount(what: "a v0.5 span", expected: 12, found: count, offset: offset) }
        let service = try reader.stringReference(strings)
        let name = try reader.stringReference(strings)
        let resource = try reader.stringReference(strings)
        let traceID = try reader.lenientUInt64()
        let spanID = try reader.lenientUInt64()
        let parentID = try reader.lenientUInt64()
        let start = try reader.lenientInteger(as: Int64.self)
        let duration = try reader.lenientInteger(as: Int64.self)
        let error = try reader.lenientInteger(as: Int32.self)
        var meta = OrderedMap<String>()
        for _ in 0..<(try reader.payloadMapHeader()) {
            let key = try reader.stringReference(strings)
            meta[key] = try reader.stringReference(strings)
        }
        var metrics = OrderedMap<Double>()
        for _ in 0..<(try reader.payloadMapHeader()) {
            let key = try reader.stringReference(strings)
            metrics[key] = try reader.lenientDouble()
        }
        let type = try reader.stringReference(strings)
        self.init(
            traceID: traceID, spanID: spanID, parentID: parentID, name: name, resource: resource, service: service,
            type: type, start: start, duration: duration, error: error, meta: meta, metrics: metrics)
    }
}

// MARK: the agent's leniency, in one place

extension MessagePackReader {
    mutating func payloadArrayHeader() throws(TracePayloadError) -> Int {
        do { return try readArrayHeader() } catch { throw .malformed(error) }
    }

    mutating func payloadMapHeader() throws(TracePayloadError) -> Int {
        do { return try readMapHeader() } catch { throw .malformed(error) }
    }

    mutating func payloadSkip() throws(TracePayloadError) {
        do { try skipValue() } catch { throw .malformed(error) }
    }

    func payloadEnd() throws(TracePayloadError) {
        do { try expectEnd() } catch { throw .malformed(error) }
    }

    /// str or bin (UTF-8, repaired), nil as "".
    mutating func lenientString() throws(TracePayloadError) -> String {
        if readNilIfPresent() { return "" }
        do {
            if try peekType() == .binary { return String(decoding: bytes[try readBinaryRange()], as: UTF8.self) }
            return try readString()
        } catch {
            throw .malformed(error)
        }
    }

    /// Any integer; a negative one is taken as the bits of a uint64 (tracers
    /// in languages without unsigned types send ids that way). nil as 0.
    mutating func lenientUInt64() throws(TracePayloadError) -> UInt64 {
        if readNilIfPresent() { return 0 }
        do {
            switch try readRawInteger() {
            case .signed(let value): return UInt64(bitPattern: value)
            case .unsigned(let value): return value
            }
        } catch {
            throw .malformed(error)
        }
    }

    /// Any integer that fits `T`; nil as 0.
    mutating func lenientInteger<T: FixedWidthInteger>(as type: T.Type) throws(TracePayloadError) -> T {
        if readNilIfPresent() { return 0 }
        do { return try readInteger(as: type) } catch { throw .malformed(error) }
    }

    /// float 64/32 or any integer; nil as 0.
    mutating func lenientDouble() throws(TracePayloadError) -> Double {
        if readNilIfPresent() { return 0 }
        do { return try readDouble(acceptingIntegers: true) } catch { throw .malformed(error) }
    }

    /// A v0.5 string-table index (uint32, as the agent reads it).
    mutating func stringReference(_ strings: [String]) throws(TracePayloadError) -> String {
        let offset = self.offset
        let index: UInt32
        do { index = try readInteger(as: UInt32.self) } catch { throw .malformed(error) }
        guard Int(index) < strings.count else {
            throw .stringIndexOutOfRange(index: UInt64(index), tableSize: strings.count, offset: offset)
        }
        return strings[Int(index)]
    }
}
