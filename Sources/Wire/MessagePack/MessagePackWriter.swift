/// Appends MessagePack to a byte array, choosing the smallest encoding for
/// every integer, string, binary, array and map header. Writing never fails
/// and never reads back; the bytes are `bytes`.
///
/// Lengths above `UInt32.max` cannot be expressed in MessagePack; passing one
/// is a programming error and traps (encoders here build from values already
/// in memory, so no input from a peer can cause it).
public struct MessagePackWriter: Sendable {
    public var bytes: [UInt8]

    public init() { bytes = [] }

    /// Starts with room for `capacity` bytes, so a payload of known rough size
    /// grows without reallocation.
    public init(reservingCapacity capacity: Int) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    // MARK: scalars

    @inlinable
    public mutating func writeNil() { bytes.append(0xc0) }

    @inlinable
    public mutating func write(_ value: Bool) { bytes.append(value ? 0xc3 : 0xc2) }

    /// positive fixint, uint 8/16/32/64.
    @inlinable
    public mutating func write(_ value: UInt64) {
        if value < 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value))
        } else if value <= 0xff {
            bytes.append(0xcc)
            bytes.append(UInt8(truncatingIfNeeded: value))
        } else if value <= 0xffff {
            bytes.append(0xcd)
            appendBigEndian(UInt16(truncatingIfNeeded: value))
        } else if value <= 0xffff_ffff {
            bytes.append(0xce)
            appendBigEndian(UInt32(truncatingIfNeeded: value))
        } else {
            bytes.append(0xcf)
            appendBigEndian(value)
        }
    }

    /// Non-negative values as unsigned (as msgpack implementations do);
    /// negative fixint, int 8/16/32/64 otherwise.
    @inlinable
    public mutating func write(_ value: Int64) {
        if value >= 0 {
            write(UInt64(value))
        } else if value >= -32 {
            bytes.append(UInt8(truncatingIfNeeded: value))
        } else if value >= Int64(Int8.min) {
            bytes.append(0xd0)
            bytes.append(UInt8(truncatingIfNeeded: value))
        } else if value >= Int64(Int16.min) {
            bytes.append(0xd1)
            appendBigEndian(UInt16(truncatingIfNeeded: value))
        } else if value >= Int64(Int32.min) {
            bytes.append(0xd2)
            appendBigEndian(UInt32(truncatingIfNeeded: value))
        } else {
            bytes.append(0xd3)
            appendBigEndian(UInt64(bitPattern: value))
        }
    }

    @inlinable
    public mutating func write(_ value: Int) { write(Int64(value)) }

    @inlinable
    public mutating func write(_ value: Int32) { write(Int64(value)) }

    @inlinable
    public mutating func write(_ value: UInt32) { write(UInt64(value)) }

    /// float 64.
    @inlinable
    public mutating func write(_ value: Double) {
        bytes.append(0xcb)
        appendBigEndian(value.bitPattern)
    }

    /// float 32.
    @inlinable
    public mutating func write(_ value: Float) {
        bytes.append(0xca)
        appendBigEndian(value.bitPattern)
    }

    // MARK: strings and binary

    /// fixstr, str 8/16/32 with the string's UTF-8 bytes.
    @inlinable
    public mutating func write(_ value: String) {
        let utf8 = value.utf8
        writeStringHeader(count: utf8.count)
        bytes.append(contentsOf: utf8)
    }

    /// A string given as UTF-8 bytes (not checked: the caller vouches for them).
    @inlinable
    public mutating func writeString(utf8: some Collection<UInt8>) {
        writeStringHeader(count: utf8.count)
        bytes.append(contentsOf: utf8)
    }

    /// The header of a string of `count` UTF-8 bytes; the caller appends them.
    @inlinable
    public mutating func writeStringHeader(count: Int) {
        if count < 32 {
            bytes.append(0xa0 | UInt8(truncatingIfNeeded: count))
        } else if count <= 0xff {
            bytes.append(0xd9)
            bytes.append(UInt8(truncatingIfNeeded: count))
        } else if count <= 0xffff {
            bytes.append(0xda)
            appendBigEndian(UInt16(truncatingIfNeeded: count))
        } else {
            bytes.append(0xdb)
            appendBigEndian(Self.length32(count))
        }
    }

    /// bin 8/16/32.
    @inlinable
    public mutating func writeBinary(_ data: some Collection<UInt8>) {
        let count = data.count
        if count <= 0xff {
            bytes.append(0xc4)
            bytes.append(UInt8(truncatingIfNeeded: count))
        } else if count <= 0xffff {
            bytes.append(0xc5)
            appendBigEndian(UInt16(truncatingIfNeeded: count))
        } else {
            bytes.append(0xc6)
            appendBigEndian(Self.length32(count))
        }
        bytes.append(contentsOf: data)
    }

    // MARK: containers

    /// fixarray, array 16/32; the caller then writes `count` values.
    @inlinable
    public mutating func writeArrayHeader(count: Int) {
        if count < 16 {
            bytes.append(0x90 | UInt8(truncatingIfNeeded: count))
        } else if count <= 0xffff {
            bytes.append(0xdc)
            appendBigEndian(UInt16(truncatingIfNeeded: count))
        } else {
            bytes.append(0xdd)
            appendBigEndian(Self.length32(count))
        }
    }

    /// fixmap, map 16/32; the caller then writes `count` key/value pairs.
    @inlinable
    public mutating func writeMapHeader(count: Int) {
        if count < 16 {
            bytes.append(0x80 | UInt8(truncatingIfNeeded: count))
        } else if count <= 0xffff {
            bytes.append(0xde)
            appendBigEndian(UInt16(truncatingIfNeeded: count))
        } else {
            bytes.append(0xdf)
            appendBigEndian(Self.length32(count))
        }
    }

    /// fixext 1/2/4/8/16 when the size allows, else ext 8/16/32.
    public mutating func writeExtension(type: Int8, data: some Collection<UInt8>) {
        let count = data.count
        switch count {
        case 1: bytes.append(0xd4)
        case 2: bytes.append(0xd5)
        case 4: bytes.append(0xd6)
        case 8: bytes.append(0xd7)
        case 16: bytes.append(0xd8)
        case ...0xff:
            bytes.append(0xc7)
            bytes.append(UInt8(truncatingIfNeeded: count))
        case ...0xffff:
            bytes.append(0xc8)
            appendBigEndian(UInt16(truncatingIfNeeded: count))
        default:
            bytes.append(0xc9)
            appendBigEndian(Self.length32(count))
        }
        bytes.append(UInt8(bitPattern: type))
        bytes.append(contentsOf: data)
    }

    /// A string known at compile time (a map key), copied from static
    /// storage without reference counting. It must be shorter than 32 bytes.
    @inlinable
    mutating func writeKey(_ key: StaticString) {
        key.withUTF8Buffer { utf8 in
            bytes.append(0xa0 | UInt8(truncatingIfNeeded: utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    /// Bytes that already are MessagePack (a pre-encoded key, a nested payload).
    @inlinable
    public mutating func writeEncoded(_ encoded: some Collection<UInt8>) {
        bytes.append(contentsOf: encoded)
    }

    /// Any value, recursively, each part in its smallest encoding.
    public mutating func write(_ value: MessagePackValue) {
        switch value {
        case .nil: writeNil()
        case .bool(let value): write(value)
        case .int(let value): write(value)
        case .uint(let value): write(value)
        case .float(let value): write(value)
        case .double(let value): write(value)
        case .string(let value): write(value)
        case .binary(let value): writeBinary(value)
        case .array(let elements):
            writeArrayHeader(count: elements.count)
            for element in elements { write(element) }
        case .map(let entries):
            writeMapHeader(count: entries.count)
            for entry in entries {
                write(entry.key)
                write(entry.value)
            }
        case .extension(let type, let data): writeExtension(type: type, data: data)
        }
    }

    // MARK: helpers

    @inlinable
    mutating func appendBigEndian<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        // One append of the value's bytes: one capacity and uniqueness check, not one per byte.
        withUnsafeBytes(of: value.bigEndian) { bytes.append(contentsOf: $0) }
    }

    @inlinable
    static func length32(_ count: Int) -> UInt32 {
        guard let length = UInt32(exactly: count) else {
            preconditionFailure("MessagePack cannot express a length of \(count) (more than UInt32.max)")
        }
        return length
    }
}
