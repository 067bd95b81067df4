/// Reads MessagePack values from a byte array with a cursor. Input is
/// untrusted: every length is checked against the bytes left before
/// anything is allocated (so an element count costs at most one element per
/// remaining byte), nesting is limited to `maxDepth`, and a failed read
/// throws and leaves `position` where it was.
public struct MessagePackReader: Sendable {
    public static let defaultMaxDepth = 64

    public let bytes: [UInt8]
    /// Index into `bytes` of the next value.
    public private(set) var position: Int
    /// Index into `bytes` where the readable range ends.
    public let endIndex: Int
    /// Where the readable range starts; error offsets count from here.
    public let startIndex: Int
    /// Arrays and maps nested deeper than this are an error in `readValue`
    /// and `skipValue`.
    public var maxDepth: Int

    public init(_ bytes: [UInt8], maxDepth: Int = MessagePackReader.defaultMaxDepth) {
        self.init(bytes, range: 0..<bytes.count, maxDepth: maxDepth)
    }

    /// Reads only `range` of `bytes` (clamped to the array).
    public init(_ bytes: [UInt8], range: Range<Int>, maxDepth: Int = MessagePackReader.defaultMaxDepth) {
        let clamped = range.clamped(to: 0..<bytes.count)
        self.bytes = bytes
        self.startIndex = clamped.lowerBound
        self.position = clamped.lowerBound
        self.endIndex = clamped.upperBound
        self.maxDepth = maxDepth
    }

    public var remainingCount: Int { endIndex - position }
    public var isAtEnd: Bool { position >= endIndex }
    /// Offset of the cursor from the start of the range (as in errors).
    public var offset: Int { position - startIndex }

    /// Throws `trailingBytes` unless every byte was read.
    public func expectEnd() throws(MessagePackError) {
        if position < endIndex { throw .trailingBytes(offset: offset, count: endIndex - position) }
    }

    // MARK: peeking

    /// The family of the next value, without consuming it.
    public func peekType() throws(MessagePackError) -> MessagePackType {
        guard position < endIndex else { throw .truncated(offset: offset, needed: 1) }
        guard let type = MessagePackType(leadByte: bytes[position]) else { throw .reservedByte(offset: offset) }
        return type
    }

    /// Consumes a nil if one is next; returns whether it did.
    public mutating func readNilIfPresent() -> Bool {
        if position < endIndex && bytes[position] == 0xc0 {
            position += 1
            return true
        }
        return false
    }

    // MARK: scalars

    public mutating func readNil() throws(MessagePackError) {
        let lead = try leadByte()
        guard lead == 0xc0 else { throw mismatch(.nil, lead) }
        position += 1
    }

    public mutating func readBool() throws(MessagePackError) -> Bool {
        let lead = try leadByte()
        switch lead {
        case 0xc2: position += 1; return false
        case 0xc3: position += 1; return true
        default: throw mismatch(.bool, lead)
        }
    }

    /// Any integer encoding whose value fits `Int64`.
    public mutating func readInt64() throws(MessagePackError) -> Int64 {
        try readInteger(as: Int64.self)
    }

    /// Any integer encoding whose value is not negative.
    public mutating func readUInt64() throws(MessagePackError) -> UInt64 {
        try readInteger(as: UInt64.self)
    }

    /// Any integer encoding whose value fits `T`; else `integerOverflow`.
    public mutating func readInteger<T: FixedWidthInteger>(as type: T.Type) throws(MessagePackError) -> T {
        let start = position
        let converted: T?
        switch try readRawInteger() {
        case .signed(let value): converted = T(exactly: value)
        case .unsigned(let value): converted = T(exactly: value)
        }
        guard let converted else {
            position = start
            throw .integerOverflow(offset: start - startIndex)
        }
        return converted
    }

    /// float 64, or float 32 widened; with `acceptingIntegers`, an integer
    /// converted too (peers may shorten a whole-number float to an integer).
    public mutating func readDouble(acceptingIntegers: Bool = false) throws(MessagePackError) -> Double {
        let lead = try leadByte()
        switch lead {
        case 0xcb:
            try need(9)
            let value = Double(bitPattern: load(UInt64.self, at: position + 1))
            position += 9
            return value
        case 0xca:
            try need(5)
            let value = Double(Float(bitPattern: load(UInt32.self, at: position + 1)))
            position += 5
            return value
        default:
            guard acceptingIntegers, MessagePackType(leadByte: lead) == .integer else { throw mismatch(.float, lead) }
            switch try readRawInteger() {
            case .signed(let value): return Double(value)
            case .unsigned(let value): return Double(value)
            }
        }
    }

    /// float 32 only (a float 64 would lose precision silently).
    public mutating func readFloat() throws(MessagePackError) -> Float {
        let lead = try leadByte()
        guard lead == 0xca else { throw mismatch(.float, lead) }
        try need(5)
        let value = Float(bitPattern: load(UInt32.self, at: position + 1))
        position += 5
        return value
    }

    // MARK: strings and binary

    /// A str value; bytes that are not UTF-8 become U+FFFD (as the Datadog
    /// agent repairs them), so reading never fails on content.
    public mutating func readString() throws(MessagePackError) -> String {
        let range = try readStringRange()
        return String(decoding: bytes[range], as: UTF8.self)
    }

    /// The index range in `bytes` of a str value's UTF-8, without copying.
    public mutating func readStringRange() throws(MessagePackError) -> Range<Int> {
        let lead = try leadByte()
        let headerSize: Int
        let count: Int
        switch lead {
        case 0xa0...0xbf: headerSize = 1; count = Int(lead & 0x1f)
        case 0xd9: try need(2); headerSize = 2; count = Int(bytes[position + 1])
        case 0xda: try need(3); headerSize = 3; count = Int(load(UInt16.self, at: position + 1))
        case 0xdb: try need(5); headerSize = 5; count = Int(load(UInt32.self, at: position + 1))
        default: throw mismatch(.string, lead)
        }
        return try take(headerSize: headerSize, count: count)
    }

    /// A bin value's bytes.
    public mutating func readBinary() throws(MessagePackError) -> [UInt8] {
        Array(bytes[try readBinaryRange()])
    }

    public mutating func readBinaryRange() throws(MessagePackError) -> Range<Int> {
        let lead = try leadByte()
        let headerSize: Int
        let count: Int
        switch lead {
        case 0xc4: try need(2); headerSize = 2; count = Int(bytes[position + 1])
        case 0xc5: try need(3); headerSize = 3; count = Int(load(UInt16.self, at: position + 1))
        case 0xc6: try need(5); headerSize = 5; count = Int(load(UInt32.self, at: position + 1))
        default: throw mismatch(.binary, lead)
        }
        return try take(headerSize: headerSize, count: count)
    }

    /// An ext or fixext value: its type and data.
    public mutating func readExtension() throws(MessagePackError) -> (type: Int8, data: [UInt8]) {
        let lead = try leadByte()
        let headerSize: Int
        let count: Int
        switch lead {
        case 0xd4: headerSize = 1; count = 1
        case 0xd5: headerSize = 1; count = 2
        case 0xd6: headerSize = 1; count = 4
        case 0xd7: headerSize = 1; count = 8
        case 0xd8: headerSize = 1; count = 16
        case 0xc7: try need(2); headerSize = 2; count = Int(bytes[position + 1])
        case 0xc8: try need(3); headerSize = 3; count = Int(load(UInt16.self, at: position + 1))
        case 0xc9: try need(5); headerSize = 5; count = Int(load(UInt32.self, at: position + 1))
        default: throw mismatch(.extension, lead)
        }
        // The type byte sits between the header and the data.
        let start = position
        try need(headerSize + 1)
        let type = Int8(bitPattern: bytes[position + headerSize])
        position += 1
        do {
            let range = try take(headerSize: headerSize, count: count)
            return (type, Array(bytes[range]))
        } catch {
            position = start
            throw error
        }
    }

    // MARK: containers

    /// An array header: the element count, at most the bytes left (each
    /// element takes at least one).
    public mutating func readArrayHeader() throws(MessagePackError) -> Int {
        let lead = try leadByte()
        let headerSize: Int
        let count: Int
        switch lead {
        case 0x90...0x9f: headerSize = 1; count = Int(lead & 0x0f)
        case 0xdc: try need(3); headerSize = 3; count = Int(load(UInt16.self, at: position + 1))
        case 0xdd: try need(5); headerSize = 5; count = Int(load(UInt32.self, at: position + 1))
        default: throw mismatch(.array, lead)
        }
        try need(headerSize + count)
        position += headerSize
        return count
    }

    /// A map header: the number of pairs, at most half the bytes left.
    public mutating func readMapHeader() throws(MessagePackError) -> Int {
        let lead = try leadByte()
        let headerSize: Int
        let count: Int
        switch lead {
        case 0x80...0x8f: headerSize = 1; count = Int(lead & 0x0f)
        case 0xde: try need(3); headerSize = 3; count = Int(load(UInt16.self, at: position + 1))
        case 0xdf: try need(5); headerSize = 5; count = Int(load(UInt32.self, at: position + 1))
        default: throw mismatch(.map, lead)
        }
        try need(headerSize + 2 * count)
        position += headerSize
        return count
    }

    // MARK: generic

    /// The next value, whatever its type, nested at most `maxDepth` deep.
    public mutating func readValue() throws(MessagePackError) -> MessagePackValue {
        let start = position
        do {
            return try readValue(depth: 0)
        } catch {
            position = start
            throw error
        }
    }

    /// Steps over the next value, nested at most `maxDepth` deep.
    public mutating func skipValue() throws(MessagePackError) {
        let start = position
        do {
            try skipValue(depth: 0)
        } catch {
            position = start
            throw error
        }
    }

    mutating func readValue(depth: Int) throws(MessagePackError) -> MessagePackValue {
        let type = try peekType()
        switch type {
        case .nil:
            position += 1
            return .nil
        case .bool: return .bool(try readBool())
        case .integer:
            switch try readRawInteger() {
            case .signed(let value): return .int(value)
            case .unsigned(let value): return value <= UInt64(Int64.max) ? .int(Int64(value)) : .uint(value)
            }
        case .float:
            if bytes[position] == 0xca { return .float(try readFloat()) }
            return .double(try readDouble())
        case .string: return .string(try readString())
        case .binary: return .binary(try readBinary())
        case .extension:
            let (type, data) = try readExtension()
            return .extension(type: type, data: data)
        case .array:
            guard depth < maxDepth else { throw .depthLimitExceeded(limit: maxDepth, offset: offset) }
            let count = try readArrayHeader()
            var elements: [MessagePackValue] = []
            elements.reserveCapacity(count)
            for _ in 0..<count { elements.append(try readValue(depth: depth + 1)) }
            return .array(elements)
        case .map:
            guard depth < maxDepth else { throw .depthLimitExceeded(limit: maxDepth, offset: offset) }
            let count = try readMapHeader()
            var entries: [(key: MessagePackValue, value: MessagePackValue)] = []
            entries.reserveCapacity(count)
            for _ in 0..<count {
                let key = try readValue(depth: depth + 1)
                let value = try readValue(depth: depth + 1)
                entries.append((key, value))
            }
            return .map(entries)
        }
    }

    mutating func skipValue(depth: Int) throws(MessagePackError) {
        let type = try peekType()
        switch type {
        case .nil, .bool: position += 1
        case .integer: _ = try readRawInteger()
        case .float: _ = try readDouble()
        case .string: _ = try readStringRange()
        case .binary: _ = try readBinaryRange()
        case .extension: _ = try readExtension()
        case .array:
            guard depth < maxDepth else { throw .depthLimitExceeded(limit: maxDepth, offset: offset) }
            let count = try readArrayHeader()
            for _ in 0..<count { try skipValue(depth: depth + 1) }
        case .map:
            guard depth < maxDepth else { throw .depthLimitExceeded(limit: maxDepth, offset: offset) }
            let count = try readMapHeader()
            for _ in 0..<2 * count { try skipValue(depth: depth + 1) }
        }
    }

    // MARK: internals

    enum RawInteger {
        case signed(Int64)
        case unsigned(UInt64)
    }

    /// Any integer encoding, as it was on the wire.
    mutating func readRawInteger() throws(MessagePackError) -> RawInteger {
        let lead = try leadByte()
        let result: RawInteger
        let size: Int
        switch lead {
        case 0x00...0x7f: result = .unsigned(UInt64(lead)); size = 1
        case 0xe0...0xff: result = .signed(Int64(Int8(bitPattern: lead))); size = 1
        case 0xcc: try need(2); result = .unsigned(UInt64(bytes[position + 1])); size = 2
        case 0xcd: try need(3); result = .unsigned(UInt64(load(UInt16.self, at: position + 1))); size = 3
        case 0xce: try need(5); result = .unsigned(UInt64(load(UInt32.self, at: position + 1))); size = 5
        case 0xcf: try need(9); result = .unsigned(load(UInt64.self, at: position + 1)); size = 9
        case 0xd0: try need(2); result = .signed(Int64(Int8(bitPattern: bytes[position + 1]))); size = 2
        case 0xd1: try need(3); result = .signed(Int64(Int16(bitPattern: load(UInt16.self, at: position + 1)))); size = 3
        case 0xd2: try need(5); result = .signed(Int64(Int32(bitPattern: load(UInt32.self, at: position + 1)))); size = 5
        case 0xd3: try need(9); result = .signed(Int64(bitPattern: load(UInt64.self, at: position + 1))); size = 9
        default: throw mismatch(.integer, lead)
        }
        position += size
        return result
    }

    /// The byte at the cursor, or `truncated`.
    @inline(__always)
    func leadByte() throws(MessagePackError) -> UInt8 {
        guard position < endIndex else { throw .truncated(offset: offset, needed: 1) }
        return bytes[position]
    }

    /// Throws `truncated` unless `count` bytes remain from the cursor.
    @inline(__always)
    func need(_ count: Int) throws(MessagePackError) {
        if count > endIndex - position { throw .truncated(offset: offset, needed: count - (endIndex - position)) }
    }

    /// Consumes a header of `headerSize` bytes and `count` bytes after it;
    /// returns the range of those bytes.
    mutating func take(headerSize: Int, count: Int) throws(MessagePackError) -> Range<Int> {
        try need(headerSize + count)
        let start = position + headerSize
        position = start + count
        return start..<(start + count)
    }

    /// A big-endian integer at `index`; the caller checked the bytes are there.
    @inline(__always)
    func load<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, at index: Int) -> T {
        // One unaligned load and a byte swap, not a shift per byte: the
        // agent reads three ids and three integers per span this way.
        precondition(index >= 0 && index + MemoryLayout<T>.size <= bytes.count)
        return bytes.withUnsafeBytes { raw in T(bigEndian: raw.loadUnaligned(fromByteOffset: index, as: T.self)) }
    }

    func mismatch(_ expected: MessagePackType, _ lead: UInt8) -> MessagePackError {
        guard let found = MessagePackType(leadByte: lead) else { return .reservedByte(offset: offset) }
        return .typeMismatch(expected: expected, found: found, offset: offset)
    }
}

extension MessagePackValue {
    /// Decodes exactly one value from `bytes`; trailing bytes are an error.
    public init(decoding bytes: [UInt8], maxDepth: Int = MessagePackReader.defaultMaxDepth) throws(MessagePackError) {
        var reader = MessagePackReader(bytes, maxDepth: maxDepth)
        self = try reader.readValue()
        try reader.expectEnd()
    }
}
