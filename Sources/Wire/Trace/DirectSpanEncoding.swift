/// Strings an exporter knows before its first request (its service,
/// operation names, tag keys), encoded once per process. In a v0.5 payload
/// they take the first string-table slots (1, 2, …) of every payload, so
/// writing one is writing a small integer, not a hash lookup; in v0.4 they
/// are copied as already-encoded MessagePack `str`s.
public struct PayloadConstants: Sendable {
    /// "" then the constants, in order: every v0.5 payload's table starts as this.
    let table: PayloadStringTable
    /// The constants as MessagePack `str`s, back to back (v0.4).
    let encoded: [UInt8]
    let ranges: [Range<Int>]

    public init(_ strings: [String]) {
        var table = PayloadStringTable()
        var writer = MessagePackWriter()
        var ranges: [Range<Int>] = []
        for string in strings {
            let start = writer.count
            writer.write(string)
            ranges.append(start..<writer.count)
            let index = table.index(of: string)
            precondition(Int(index) == ranges.count, "PayloadConstants: \"\(string)\" is listed twice (or is empty)")
        }
        self.table = table
        encoded = writer.bytes
        self.ranges = ranges
    }

    /// The constant at `position` in the list given to `init`.
    public subscript(position: Int) -> PayloadConstant {
        precondition(ranges.indices.contains(position))
        return PayloadConstant(tableIndex: UInt32(position + 1))
    }
}

/// One of a `PayloadConstants`' strings; valid only with the encoder
/// built from that same list.
public struct PayloadConstant: Sendable, Equatable {
    let tableIndex: UInt32
}

/// A span's string: one known in advance, or one made for this span.
public enum SpanText: Sendable {
    case constant(PayloadConstant)
    case dynamic(String)
}

/// Spans written straight into a payload, field by field, without building
/// `Span` values: the fields go in span.proto's order, which is the order
/// of both the v0.4 map and the v0.5 array. Per span:
/// `beginSpan`, `beginMeta` + `count` × `tag`, `beginMetrics` + `count` ×
/// `metric`, `endSpan`; per trace, `beginTrace(spanCount:)` first. The
/// result decodes to the same spans as `append(trace:)` of the equivalent
/// `Span` values (v0.4: the same bytes).
extension TracePayloadEncoder {
    public mutating func beginTrace(spanCount: Int) {
        switch version {
        case .v04: v04.beginTrace(spanCount: spanCount)
        case .v05: v05.beginTrace(spanCount: spanCount)
        }
    }

    public mutating func beginSpan(service: SpanText, name: SpanText, resource: SpanText, traceID: UInt64, spanID: UInt64,
                                   parentID: UInt64, start: Int64, duration: Int64, error: Int32) {
        switch version {
        case .v04:
            v04.beginSpan(service: service, name: name, resource: resource, traceID: traceID, spanID: spanID, parentID: parentID,
                          start: start, duration: duration, error: error, constants: constants)
        case .v05:
            v05.beginSpan(service: service, name: name, resource: resource, traceID: traceID, spanID: spanID, parentID: parentID,
                          start: start, duration: duration, error: error)
        }
    }

    public mutating func beginMeta(count: Int) { beginMap("meta", count: count) }

    public mutating func tag(_ key: PayloadConstant, _ value: SpanText) {
        switch version {
        case .v04: v04.tag(key, value, constants: constants)
        case .v05: v05.tag(key, value)
        }
    }

    public mutating func beginMetrics(count: Int) { beginMap("metrics", count: count) }

    /// A span's `meta` or `metrics` map: keyed in v0.4, positional in v0.5.
    private mutating func beginMap(_ key: StaticString, count: Int) {
        switch version {
        case .v04:
            v04.writer.writeKey(key)
            v04.writer.writeMapHeader(count: count)
        case .v05: v05.body.writeMapHeader(count: count)
        }
    }

    public mutating func metric(_ key: PayloadConstant, _ value: Double) {
        switch version {
        case .v04: v04.metric(key, value, constants: constants)
        case .v05: v05.metric(key, value)
        }
    }

    public mutating func endSpan(type: SpanText) {
        switch version {
        case .v04: v04.endSpan(type: type, constants: constants)
        case .v05: v05.write(type)
        }
    }
}

extension TracePayloadV04Encoder {
    mutating func beginTrace(spanCount: Int) {
        writer.writeArrayHeader(count: spanCount)
        traceCount += 1
        self.spanCount += spanCount
    }

    mutating func beginSpan(service: SpanText, name: SpanText, resource: SpanText, traceID: UInt64, spanID: UInt64,
                            parentID: UInt64, start: Int64, duration: Int64, error: Int32, constants: PayloadConstants?) {
        writer.writeMapHeader(count: 12)
        writer.writeKey("service")
        write(service, constants)
        writer.writeKey("name")
        write(name, constants)
        writer.writeKey("resource")
        write(resource, constants)
        writer.writeV04SpanNumbers(traceID: traceID, spanID: spanID, parentID: parentID, start: start, duration: duration, error: error)
    }

    mutating func tag(_ key: PayloadConstant, _ value: SpanText, constants: PayloadConstants?) {
        write(.constant(key), constants)
        write(value, constants)
    }

    mutating func metric(_ key: PayloadConstant, _ value: Double, constants: PayloadConstants?) {
        write(.constant(key), constants)
        writer.write(value)
    }

    mutating func endSpan(type: SpanText, constants: PayloadConstants?) {
        writer.writeKey("type")
        write(type, constants)
    }

    /// The `str` itself; a constant is copied already encoded.
    mutating func write(_ text: SpanText, _ constants: PayloadConstants?) {
        switch text {
        case .constant(let constant):
            guard let constants else { preconditionFailure("a PayloadConstant written by an encoder made without constants") }
            let range = constants.ranges[Int(constant.tableIndex) - 1]
            constants.encoded.withUnsafeBufferPointer { writer.writeEncoded(UnsafeBufferPointer(rebasing: $0[range])) }
        case .dynamic(let string):
            writer.write(string)
        }
    }
}

extension TracePayloadV05Encoder {
    // Each call stores its fields through one `withCursor`: one capacity
    // and uniqueness check per group of fields, not one per byte. The room
    // reserved is the group's largest encoding (string indices are uint32:
    // 5 bytes; 64-bit numbers and float64: 9).

    mutating func beginTrace(spanCount: Int) {
        body.writeArrayHeader(count: spanCount)
        traceCount += 1
        self.spanCount += spanCount
    }

    mutating func beginSpan(service: SpanText, name: SpanText, resource: SpanText, traceID: UInt64, spanID: UInt64,
                            parentID: UInt64, start: Int64, duration: Int64, error: Int32) {
        let service = index(of: service), name = index(of: name), resource = index(of: resource)
        body.withCursor(reserving: 1 + 3 * 5 + 5 * 9 + 9) { cursor in
            cursor.writeArrayHeader(count: 12)
            cursor.write(service)
            cursor.write(name)
            cursor.write(resource)
            cursor.write(traceID)
            cursor.write(spanID)
            cursor.write(parentID)
            cursor.write(start)
            cursor.write(duration)
            cursor.write(error)
        }
    }

    mutating func tag(_ key: PayloadConstant, _ value: SpanText) {
        let key = index(of: .constant(key)), value = index(of: value)
        body.withCursor(reserving: 2 * 5) { cursor in
            cursor.write(key)
            cursor.write(value)
        }
    }

    mutating func metric(_ key: PayloadConstant, _ value: Double) {
        let key = index(of: .constant(key))
        body.withCursor(reserving: 5 + 9) { cursor in
            cursor.write(key)
            cursor.write(value)
        }
    }

    mutating func write(_ text: SpanText) {
        body.write(index(of: text))
    }

    /// The string's table index: a constant's is known, another is interned.
    @inline(__always)
    mutating func index(of text: SpanText) -> UInt32 {
        switch text {
        case .constant(let constant):
            precondition(constant.tableIndex < constantsEnd, "a PayloadConstant written by an encoder made without its constants")
            return constant.tableIndex
        case .dynamic(let string):
            return strings.index(of: string)
        }
    }
}
