/// What a mock agent counts in a trace payload — every span's (trace id,
/// span id), grouped by trace chunk, and each chunk's first `process_id`
/// metric — read in one pass over the bytes, without building a `Span`,
/// a `String` or a map.
///
/// It accepts exactly what `TraceAPIVersion.decode` accepts (the same
/// reader, the same leniency, the same limits), so an agent can count from
/// it and fall back to `decode` only to word an error. Its buffers are kept
/// between payloads: one census per agent, reused.
public struct TraceCensus: Sendable {
    public private(set) var traceIDs: [UInt64] = []
    public private(set) var spanIDs: [UInt64] = []
    /// Chunk i's spans are `chunkEnds[i-1]..<chunkEnds[i]` of the id arrays.
    public private(set) var chunkEnds: [Int] = []
    /// Chunk i's `process_id`: that of its first span carrying one (the
    /// last value when one span repeats the key, as `OrderedMap` keeps it).
    public private(set) var chunkProcessIDs: [Double?] = []
    /// v0.5: which string-table entries are "process_id".
    private var isProcessIDKey: [Bool] = []

    public init() {}

    public var spanCount: Int { spanIDs.count }
    public var chunkCount: Int { chunkEnds.count }

    /// Reads `bytes`; on success the arrays describe it, on a throw they
    /// hold a prefix and must not be used.
    public mutating func read(_ bytes: [UInt8], version: TraceAPIVersion,
                              limits: TraceDecodingLimits = .default) throws(TracePayloadError) {
        traceIDs.removeAll(keepingCapacity: true)
        spanIDs.removeAll(keepingCapacity: true)
        chunkEnds.removeAll(keepingCapacity: true)
        chunkProcessIDs.removeAll(keepingCapacity: true)
        var reader = MessagePackReader(bytes, maxDepth: limits.maxDepth)
        switch version {
        case .v04: try readV04(&reader, limits: limits)
        case .v05: try readV05(&reader, limits: limits)
        }
        try reader.payloadEnd()
    }

    static let processIDKey: [UInt8] = Array("process_id".utf8)

    // MARK: v0.4 (the fields of `Span.init(decodingV04:)`)

    private mutating func readV04(_ reader: inout MessagePackReader, limits: TraceDecodingLimits) throws(TracePayloadError) {
        var budget = limits.maxSpans
        let traceCount = try reader.payloadArrayHeader()
        for _ in 0..<traceCount {
            let spanCount = try reader.payloadArrayHeader()
            guard spanCount <= budget else { throw .tooManySpans(limit: limits.maxSpans) }
            budget -= spanCount
            var chunkProcessID: Double?
            for _ in 0..<spanCount {
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
                traceIDs.append(traceID)
                spanIDs.append(spanID)
                if chunkProcessID == nil { chunkProcessID = processID }
            }
            chunkEnds.append(spanIDs.count)
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
        var budget = limits.maxSpans
        let traceCount = try reader.payloadArrayHeader()
        for _ in 0..<traceCount {
            let spanCount = try reader.payloadArrayHeader()
            guard spanCount <= budget else { throw .tooManySpans(limit: limits.maxSpans) }
            budget -= spanCount
            var chunkProcessID: Double?
            for _ in 0..<spanCount {
                let offset = reader.offset
                let count = try reader.payloadArrayHeader()
                guard count == 12 else { throw .wrongElementCount(what: "a v0.5 span", expected: 12, found: count, offset: offset) }
                for _ in 0..<3 { _ = try reader.stringIndex(tableSize: stringCount) }  // service, name, resource
                let traceID = try reader.censusID()
                let spanID = try reader.censusID()
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
                traceIDs.append(traceID)
                spanIDs.append(spanID)
                if chunkProcessID == nil { chunkProcessID = processID }
            }
            chunkEnds.append(spanIDs.count)
            chunkProcessIDs.append(chunkProcessID)
        }
    }

    @inline(__always)
    static func equal(_ bytes: [UInt8], _ range: Range<Int>, _ other: [UInt8]) -> Bool {
        guard other.count == range.count else { return false }
        for index in 0..<other.count where bytes[range.lowerBound + index] != other[index] { return false }
        return true
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

extension MessagePackReader {
    /// `lenientUInt64`, with the encoding of a random 64-bit id (uint 64)
    /// read directly: six of them per span.
    mutating func censusID() throws(TracePayloadError) -> UInt64 {
        if position + 9 <= endIndex, bytes[position] == 0xcf {
            let id = load(UInt64.self, at: position + 1)
            do { _ = try take(headerSize: 1, count: 8) } catch { throw .malformed(error) }
            return id
        }
        return try lenientUInt64()
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
