/// What a mock agent counts in a trace payload — every span's (trace id,
/// span id), grouped by trace chunk, and each chunk's first `process_id`
/// metric — read in one pass over the bytes, without building a `Span`,
/// a `String` or a map.
///
/// It accepts exactly what `TraceAPIVersion.decode` accepts (the same
/// reader, the same leniency, the same limits; v0.5 spans in the encoding
/// exporters write are read straight from the bytes, by rules that accept
/// a subset of what that reader does), so an agent can count from it and
/// fall back to `decode` only to word an error. Its buffers are kept
/// between payloads: one census per agent, reused.
public struct TraceCensus: Sendable {
    /// Chunk i's spans are `keys[chunkEnds[i-1]..<chunkEnds[i]]`.
    public private(set) var chunkEnds: [Int] = []
    /// Chunk i's `process_id`: that of its first span carrying one (the
    /// last value when one span repeats the key, as `OrderedMap` keeps it).
    public private(set) var chunkProcessIDs: [Double?] = []
    public private(set) var spanCount = 0
    /// Grown, never shrunk; its first `spanCount` entries are the
    /// payload's. Written through a pointer a chunk at a time: an
    /// `Array.append` per span (its uniqueness and capacity checks) cost
    /// more than reading the span.
    private var keyStorage: [SpanKey] = []
    /// v0.5: which string-table entries are "process_id".
    private var isProcessIDKey: [Bool] = []

    public init() {}

    /// Every span's (trace id, span id), in payload order.
    public var keys: ArraySlice<SpanKey> { keyStorage[..<spanCount] }
    public var chunkCount: Int { chunkEnds.count }

    /// Reads `bytes`; on success the arrays describe it, on a throw they
    /// hold a prefix and must not be used.
    public mutating func read(_ bytes: [UInt8], version: TraceAPIVersion,
                              limits: TraceDecodingLimits = .default) throws(TracePayloadError) {
        spanCount = 0
        chunkEnds.removeAll(keepingCapacity: true)
        chunkProcessIDs.removeAll(keepingCapacity: true)
        var reader = MessagePackReader(bytes, maxDepth: limits.maxDepth)
        switch version {
        case .v04: try readV04(&reader, limits: limits)
        case .v05: try readV05(&reader, limits: limits)
        }
        try reader.payloadEnd()
    }

    /// Makes room for `count` more keys. A chunk's span count was checked
    /// against the bytes left (a span takes at least one), so a hostile
    /// count costs no more memory than the payload's size allows.
    private mutating func reserveKeys(_ count: Int) {
        let missing = spanCount + count - keyStorage.count
        if missing > 0 { keyStorage.append(contentsOf: repeatElement(SpanKey(traceID: 0, spanID: 0), count: max(missing, keyStorage.count))) }
    }

    private mutating func append(_ key: SpanKey) {
        keyStorage[spanCount] = key
        spanCount += 1
    }

    static let processIDKey: [UInt8] = Array("process_id".utf8)

    /// A chunk's span count, taken from what is left of the payload's span
    /// budget, with room for its keys.
    private mutating func readChunkHeader(_ reader: inout MessagePackReader, budget: inout Int,
                                          limits: TraceDecodingLimits) throws(TracePayloadError) -> Int {
        let chunkSpans = try reader.payloadArrayHeader()
        guard chunkSpans <= budget else { throw .tooManySpans(limit: limits.maxSpans) }
        budget -= chunkSpans
        reserveKeys(chunkSpans)
        return chunkSpans
    }

    // MARK: v0.4 (the fields of `Span.init(decodingV04:)`)

    private mutating func readV04(_ reader: inout MessagePackReader, limits: TraceDecodingLimits) throws(TracePayloadError) {
        var budget = limits.maxSpans
        let traceCount = try reader.payloadArrayHeader()
        for _ in 0..<traceCount {
            let chunkSpans = try readChunkHeader(&reader, budget: &budget, limits: limits)
            var chunkProcessID: Double?
            for _ in 0..<chunkSpans {
                var traceID: UInt64 = 0, spanID: UInt64 = 0
                var processID: Double?
                for _ in 0..<(try reader.payloadMapHeader()) {
                    let key = try reader.lenientStringRange()
                    switch V04Field(key, in: reader.bytes) {
                    case .traceID: traceID = try reader.lenientUInt64()
                    case .spanID: spanID = try reader.lenientUInt64()
                    case .string: _ = try reader.lenientStringRange()
                    case .parentID: _ = try reader.lenientUInt64()
                    case .int64: _ = try reader.lenientInteger(as: Int64.self)
                    case .error: _ = try reader.lenientInteger(as: Int32.self)
                    case .meta:
                        if reader.readNilIfPresent() { continue }
                        for _ in 0..<(try reader.payloadMapHeader()) {
                            _ = try reader.lenientStringRange()
                            _ = try reader.lenientStringRange()
                        }
                    case .metrics:
                        // A repeated "metrics" replaces the earlier one, as in decoding.
                        processID = nil
                        if reader.readNilIfPresent() { continue }
                        for _ in 0..<(try reader.payloadMapHeader()) {
                            let name = try reader.lenientStringRange()
                            let value = try reader.lenientDouble()
                            if case .bytes(let range) = name, Self.equal(reader.bytes, range, Self.processIDKey) { processID = value }
                        }
                    case .other:
                        try reader.payloadSkip()
                    }
                }
                append(SpanKey(traceID: traceID, spanID: spanID))
                if chunkProcessID == nil { chunkProcessID = processID }
            }
            chunkEnds.append(spanCount)
            chunkProcessIDs.append(chunkProcessID)
        }
    }

    // MARK: v0.5 (the fields of `Span.init(decodingV05:strings:)`)

    private mutating func readV05(_ reader: inout MessagePackReader, limits: TraceDecodingLimits) throws(TracePayloadError) {
        let topOffset = reader.offset
        let top = try reader.payloadArrayHeader()
        guard top == 2 else { throw .wrongElementCount(what: "the v0.5 payload", expected: 2, found: top, offset: topOffset) }
        let stringCount = try reader.payloadArrayHeader()
        isProcessIDKey.removeAll(keepingCapacity: true)
        for _ in 0..<stringCount {
            if case .bytes(let range) = try reader.lenientStringRange() {
                isProcessIDKey.append(Self.equal(reader.bytes, range, Self.processIDKey))
            } else {
                isProcessIDKey.append(false)
            }
        }
        // Locals, so the pointer into `keyStorage` below does not overlap an access to `self`.
        let bytes = reader.bytes, isProcessIDKey = self.isProcessIDKey
        var budget = limits.maxSpans
        let traceCount = try reader.payloadArrayHeader()
        for _ in 0..<traceCount {
            let chunkSpans = try readChunkHeader(&reader, budget: &budget, limits: limits)
            var chunkProcessID: Double?
            var done = 0
            while done < chunkSpans {
                // A run of spans in the common encoding, straight from the bytes…
                let first = spanCount, position = reader.position, end = reader.endIndex
                let run = keyStorage.withUnsafeMutableBufferPointer { keys in
                    bytes.withUnsafeBytes { raw in
                        isProcessIDKey.withUnsafeBufferPointer { isProcessIDKey in
                            Self.readCommonV05Spans(raw, from: position, end: end, count: chunkSpans - done, tableSize: stringCount,
                                                    isProcessIDKey: isProcessIDKey, into: keys, at: first, chunkProcessID: &chunkProcessID)
                        }
                    }
                }
                do { _ = try reader.take(headerSize: run.end - position, count: 0) } catch { throw .malformed(error) }
                spanCount += run.count
                done += run.count
                guard done < chunkSpans else { break }
                // …then one span in any other: the general readers, which also word the error.
                let offset = reader.offset
                let count = try reader.payloadArrayHeader()
                guard count == 12 else { throw .wrongElementCount(what: "a v0.5 span", expected: 12, found: count, offset: offset) }
                for _ in 0..<3 { _ = try reader.stringIndex(tableSize: stringCount) }  // service, name, resource
                let traceID = try reader.lenientUInt64()
                let spanID = try reader.lenientUInt64()
                _ = try reader.lenientUInt64()  // parent_id
                _ = try reader.lenientInteger(as: Int64.self)  // start
                _ = try reader.lenientInteger(as: Int64.self)  // duration
                _ = try reader.lenientInteger(as: Int32.self)  // error
                for _ in 0..<(try reader.payloadMapHeader()) {
                    _ = try reader.stringIndex(tableSize: stringCount)
                    _ = try reader.stringIndex(tableSize: stringCount)
                }
                var processID: Double?
                for _ in 0..<(try reader.payloadMapHeader()) {
                    let key = try reader.stringIndex(tableSize: stringCount)
                    let value = try reader.lenientDouble()
                    if isProcessIDKey[key] { processID = value }
                }
                _ = try reader.stringIndex(tableSize: stringCount)  // type
                append(SpanKey(traceID: traceID, spanID: spanID))
                if chunkProcessID == nil { chunkProcessID = processID }
                done += 1
            }
            chunkEnds.append(spanCount)
            chunkProcessIDs.append(chunkProcessID)
        }
    }

    /// Reads up to `count` v0.5 spans from `start`, while each has the
    /// encoding exporters write and every field one `Span.init(decodingV05:strings:)`
    /// reads without error (so what it finds is what decoding would): any
    /// integer encoding, fixmaps and map 16, nil where decoding reads it as
    /// 0. It stops before any other span — another array length, a nil
    /// string index, a map 32, bytes cut off — for the general readers.
    /// One loop over the bytes with no call per field: the general readers
    /// made the census as costly as counting.
    @inline(never)
    static func readCommonV05Spans(_ raw: UnsafeRawBufferPointer, from start: Int, end: Int, count: Int, tableSize: Int,
                                   isProcessIDKey: UnsafeBufferPointer<Bool>, into keys: UnsafeMutableBufferPointer<SpanKey>, at first: Int,
                                   chunkProcessID: inout Double?) -> (count: Int, end: Int) {
        var position = start
        for index in 0..<count {
            var p = position
            // A fixarray of 12: the span's fields.
            guard p < end, raw[p] == 0x9c else { return (index, position) }
            p += 1
            guard stringIndex(raw, &p, end, tableSize) != nil,  // service
                  stringIndex(raw, &p, end, tableSize) != nil,  // name
                  stringIndex(raw, &p, end, tableSize) != nil,  // resource
                  let traceID = integer(raw, &p, end, nilAsZero: true),  // a negative id is taken as its bits
                  let spanID = integer(raw, &p, end, nilAsZero: true),
                  integer(raw, &p, end, nilAsZero: true) != nil,  // parent_id
                  let start = integer(raw, &p, end, nilAsZero: true), start.signed || start.bits <= UInt64(Int64.max),
                  let duration = integer(raw, &p, end, nilAsZero: true), duration.signed || duration.bits <= UInt64(Int64.max),
                  let error = integer(raw, &p, end, nilAsZero: true),
                  error.signed ? Int32(exactly: Int64(bitPattern: error.bits)) != nil : error.bits <= UInt64(Int32.max),
                  let metaCount = mapCount(raw, &p, end)
            else { return (index, position) }
            for _ in 0..<(2 * metaCount) {
                guard stringIndex(raw, &p, end, tableSize) != nil else { return (index, position) }
            }
            guard let metricsCount = mapCount(raw, &p, end) else { return (index, position) }
            var processID: Double?
            for _ in 0..<metricsCount {
                guard let key = stringIndex(raw, &p, end, tableSize), let value = double(raw, &p, end) else { return (index, position) }
                if isProcessIDKey[key] { processID = value }
            }
            guard stringIndex(raw, &p, end, tableSize) != nil else { return (index, position) }  // type
            keys[first + index] = SpanKey(traceID: traceID.bits, spanID: spanID.bits)
            if chunkProcessID == nil { chunkProcessID = processID }
            position = p
        }
        return (count, position)
    }

    /// The integer at `p` in any MessagePack encoding, as
    /// `MessagePackReader.readRawInteger` reads it: its bits (a negative
    /// value's two's complement) and whether its encoding was signed; nil
    /// for anything else or a value cut off at `end`, with `p` unmoved.
    /// `nilAsZero`: nil reads as 0, as in the lenient readers.
    @inline(__always)
    static func integer(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int, nilAsZero: Bool) -> (bits: UInt64, signed: Bool)? {
        // Inline, the two encodings exporters write most: a positive fixint, a 64-bit integer.
        if p < end {
            let lead = raw[p]
            if lead < 0x80 {
                p += 1
                return (UInt64(lead), false)
            }
            if lead == 0xcf || lead == 0xd3, p + 9 <= end {
                defer { p += 9 }
                return (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: p + 1, as: UInt64.self)), lead == 0xd3)
            }
        }
        return anyInteger(raw, &p, end, nilAsZero: nilAsZero)
    }

    /// `integer` for every encoding, out of line: rarer, and the loop's code stays small.
    @inline(never)
    static func anyInteger(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int, nilAsZero: Bool) -> (bits: UInt64, signed: Bool)? {
        guard p < end else { return nil }
        let lead = raw[p]
        if lead < 0x80 {
            p += 1
            return (UInt64(lead), false)
        }
        /// Whether a value of `size` bytes after the lead byte is all there.
        func fits(_ size: Int) -> Bool { p + 1 + size <= end }
        let value = p + 1
        switch lead {
        case 0xcf where fits(8): p += 9; return (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: value, as: UInt64.self)), false)
        case 0xd3 where fits(8): p += 9; return (UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: value, as: UInt64.self)), true)
        case 0xcc where fits(1): p += 2; return (UInt64(raw[value]), false)
        case 0xcd where fits(2): p += 3; return (UInt64(UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: value, as: UInt16.self))), false)
        case 0xce where fits(4): p += 5; return (UInt64(UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: value, as: UInt32.self))), false)
        case 0xd0 where fits(1): p += 2; return (UInt64(bitPattern: Int64(Int8(bitPattern: raw[value]))), true)
        case 0xd1 where fits(2):
            p += 3
            return (UInt64(bitPattern: Int64(Int16(bitPattern: UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: value, as: UInt16.self))))), true)
        case 0xd2 where fits(4):
            p += 5
            return (UInt64(bitPattern: Int64(Int32(bitPattern: UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: value, as: UInt32.self))))), true)
        case 0xe0...0xff:
            p += 1
            return (UInt64(bitPattern: Int64(Int8(bitPattern: lead))), true)
        case 0xc0 where nilAsZero:
            p += 1
            return (0, false)
        default: return nil
        }
    }

    /// A string-table index (`MessagePackReader.stringIndex`): an integer
    /// that fits `UInt32` and is below the table's size.
    @inline(__always)
    static func stringIndex(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int, _ tableSize: Int) -> Int? {
        // A positive fixint, what encoders write for the first 128 strings.
        if p < end, raw[p] < 0x80, Int(raw[p]) < tableSize {
            defer { p += 1 }
            return Int(raw[p])
        }
        return anyStringIndex(raw, &p, end, tableSize)
    }

    /// `stringIndex` for every integer encoding, out of line.
    @inline(never)
    static func anyStringIndex(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int, _ tableSize: Int) -> Int? {
        let start = p
        guard let integer = anyInteger(raw, &p, end, nilAsZero: false) else { return nil }
        let value = integer.signed ? Int64(bitPattern: integer.bits) : Int64(clamping: integer.bits)
        guard value >= 0, value <= Int64(UInt32.max), value < tableSize else {
            p = start
            return nil
        }
        return Int(value)
    }

    /// A map header (`readMapHeader`) of a fixmap or map 16: its number of pairs.
    @inline(__always)
    static func mapCount(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int) -> Int? {
        guard p < end else { return nil }
        let lead = raw[p]
        if lead & 0xf0 == 0x80 {
            p += 1
            return Int(lead & 0x0f)
        }
        guard lead == 0xde, p + 3 <= end else { return nil }
        defer { p += 3 }
        return Int(UInt16(bigEndian: raw.loadUnaligned(fromByteOffset: p + 1, as: UInt16.self)))
    }

    /// `lenientDouble`: float 64 or 32, any integer, nil as 0.
    @inline(__always)
    static func double(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int) -> Double? {
        if p + 9 <= end, raw[p] == 0xcb {
            defer { p += 9 }
            return Double(bitPattern: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: p + 1, as: UInt64.self)))
        }
        return anyDouble(raw, &p, end)
    }

    /// `double` for every encoding, out of line.
    @inline(never)
    static func anyDouble(_ raw: UnsafeRawBufferPointer, _ p: inout Int, _ end: Int) -> Double? {
        guard p < end else { return nil }
        switch raw[p] {
        case 0xcb:
            guard p + 9 <= end else { return nil }
            defer { p += 9 }
            return Double(bitPattern: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: p + 1, as: UInt64.self)))
        case 0xca:
            guard p + 5 <= end else { return nil }
            defer { p += 5 }
            return Double(Float(bitPattern: UInt32(bigEndian: raw.loadUnaligned(fromByteOffset: p + 1, as: UInt32.self))))
        default:
            guard let integer = anyInteger(raw, &p, end, nilAsZero: true) else { return nil }
            return integer.signed ? Double(Int64(bitPattern: integer.bits)) : Double(integer.bits)
        }
    }

    @inline(__always)
    static func equal(_ bytes: [UInt8], _ range: Range<Int>, _ other: [UInt8]) -> Bool {
        guard other.count == range.count else { return false }
        for index in 0..<other.count where bytes[range.lowerBound + index] != other[index] { return false }
        return true
    }
}

/// A span's identity: a tracer that re-sends a payload sends the same pairs again.
public struct SpanKey: Hashable, Sendable {
    public var traceID: UInt64
    public var spanID: UInt64

    public init(traceID: UInt64, spanID: UInt64) {
        self.traceID = traceID
        self.spanID = spanID
    }
}

/// A v0.4 span key, by how its value is read.
enum V04Field {
    case traceID, spanID, parentID, string, int64, error, meta, metrics, other

    init(_ key: LenientStringRange, in bytes: [UInt8]) {
        guard case .bytes(let range) = key, range.count >= 4, range.count <= 9 else { self = .other; return }
        func isKey(_ literal: StaticString) -> Bool {
            literal.withUTF8Buffer { utf8 in
                guard utf8.count == range.count else { return false }
                for index in 0..<utf8.count where bytes[range.lowerBound + index] != utf8[index] { return false }
                return true
            }
        }
        if isKey("trace_id") { self = .traceID }
        else if isKey("span_id") { self = .spanID }
        else if isKey("parent_id") { self = .parentID }
        else if isKey("service") || isKey("name") || isKey("resource") || isKey("type") { self = .string }
        else if isKey("start") || isKey("duration") { self = .int64 }
        else if isKey("error") { self = .error }
        else if isKey("meta") { self = .meta }
        else if isKey("metrics") { self = .metrics }
        else { self = .other }
    }
}

/// A string field as the census sees it: nil (read as "" by decoding), or
/// the range of its bytes (str or bin).
enum LenientStringRange {
    case empty
    case bytes(Range<Int>)
}

extension MessagePackReader {
    /// `lenientString` without making the `String`.
    mutating func lenientStringRange() throws(TracePayloadError) -> LenientStringRange {
        if readNilIfPresent() { return .empty }
        do {
            if try peekType() == .binary { return .bytes(try readBinaryRange()) }
            return .bytes(try readStringRange())
        } catch {
            throw .malformed(error)
        }
    }

    /// `stringReference` without fetching the string: the checked index.
    mutating func stringIndex(tableSize: Int) throws(TracePayloadError) -> Int {
        // A positive fixint, what encoders write for the first 128 strings.
        if position < endIndex, bytes[position] < 0x80, Int(bytes[position]) < tableSize {
            let index = Int(bytes[position])
            do { _ = try take(headerSize: 1, count: 0) } catch { throw .malformed(error) }
            return index
        }
        let offset = self.offset
        let index: UInt32
        do { index = try readInteger(as: UInt32.self) } catch { throw .malformed(error) }
        guard Int(index) < tableSize else {
            throw .stringIndexOutOfRange(index: UInt64(index), tableSize: tableSize, offset: offset)
        }
        return Int(index)
    }
}
