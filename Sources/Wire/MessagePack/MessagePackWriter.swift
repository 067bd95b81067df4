/// Appends MessagePack to a byte array, choosing the smallest encoding for
/// every integer, string, binary, array and map header. Writing never fails
/// and never reads back; the bytes are `bytes`.
///
/// Lengths above `UInt32.max` cannot be expressed in MessagePack; passing one
/// is a programming error and traps (encoders here build from values already
/// in memory, so no input from a peer can cause it).
public struct MessagePackWriter: Sendable {
    /// The `count` bytes written, then room for more. Kept full so a
    /// group of fields is stored through one pointer (`withCursor`): an
    /// `Array.append` per byte costs a uniqueness and capacity check each,
    /// and those were most of a span's encoding time.
    private var storage: [UInt8]
    public private(set) var count = 0

    public init() { storage = [] }

    /// Starts with room for `capacity` bytes, so a payload of known rough size
    /// grows without reallocation.
    public init(reservingCapacity capacity: Int) {
        storage = [UInt8](repeating: 0, count: capacity)
    }

    /// The bytes written (a copy; `takeBytes()` avoids it).
    public var bytes: [UInt8] { count == storage.count ? storage : Array(storage[..<count]) }

    /// The bytes written, without a copy; the writer is left empty.
    public mutating func takeBytes() -> [UInt8] {
        var taken = storage
        storage = []
        // Uniquely referenced now, so dropping the spare room moves nothing.
        taken.removeLast(taken.count - count)
        count = 0
        return taken
    }

    /// Forgets what was written; with `keepingCapacity`, the room stays
    /// for the next bytes.
    public mutating func removeAll(keepingCapacity: Bool = false) {
        count = 0
        if !keepingCapacity { storage = [] }
    }

    /// The bytes written, lent without a copy.
    public func withBytes<Result>(_ body: (UnsafeRawBufferPointer) -> Result) -> Result {
        storage.withUnsafeBytes { body(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
    }

    /// Writes up to `maxCount` bytes through a cursor: one capacity check
    /// and one uniqueness check for the whole group. `body` must not write
    /// more than `maxCount` bytes.
    @inline(__always)
    mutating func withCursor<Result>(reserving maxCount: Int, _ body: (inout MessagePackCursor) -> Result) -> Result {
        // Never empty while writing: an empty array has no base address.
        if maxCount > storage.count - count || storage.isEmpty { grow(toHold: count + maxCount) }
        let start = count
        // The cursor never outlives the buffer pointer: it is used only inside this closure.
        let (result, written): (Result, Int) = storage.withUnsafeMutableBytes { raw in
            let base = raw.baseAddress.unsafelyUnwrapped + start
            var cursor = MessagePackCursor(base)
            let result = body(&cursor)
            return (result, cursor.next - base)
        }
        assert(written <= maxCount, "a MessagePackCursor wrote past the room it reserved")
        count = start + written
        return result
    }

    private mutating func grow(toHold minimum: Int) {
        // Doubling keeps appends amortised O(1); the room is zeroed once.
        let target = Swift.max(minimum, storage.count * 2, 64)
        storage.append(contentsOf: repeatElement(0, count: target - storage.count))
    }

    // MARK: scalars

    public mutating func writeNil() { withCursor(reserving: 1) { $0.writeNil() } }

    public mutating func write(_ value: Bool) { withCursor(reserving: 1) { $0.write(value) } }

    /// positive fixint, uint 8/16/32/64.
    public mutating func write(_ value: UInt64) { withCursor(reserving: 9) { $0.write(value) } }

    /// Non-negative values as unsigned (as msgpack implementations do);
    /// negative fixint, int 8/16/32/64 otherwise.
    public mutating func write(_ value: Int64) { withCursor(reserving: 9) { $0.write(value) } }

    public mutating func write(_ value: Int) { write(Int64(value)) }

    public mutating func write(_ value: Int32) { write(Int64(value)) }

    public mutating func write(_ value: UInt32) { write(UInt64(value)) }

    /// float 64.
    public mutating func write(_ value: Double) { withCursor(reserving: 9) { $0.write(value) } }

    /// float 32.
    public mutating func write(_ value: Float) { withCursor(reserving: 5) { $0.write(value) } }

    // MARK: strings and binary

    /// fixstr, str 8/16/32 with the string's UTF-8 bytes.
    public mutating func write(_ value: String) {
        var value = value
        value.withUTF8 { writeString(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// A string given as UTF-8 bytes (not checked: the caller vouches for them).
    public mutating func writeString(utf8: some Collection<UInt8>) {
        if utf8.withContiguousStorageIfAvailable({ writeString(utf8: UnsafeRawBufferPointer($0)) }) == nil {
            writeString(utf8: Array(utf8))
        }
    }

    public mutating func writeString(utf8: UnsafeRawBufferPointer) {
        withCursor(reserving: 5 + utf8.count) { cursor in
            cursor.writeStringHeader(count: utf8.count)
            cursor.write(bytes: utf8)
        }
    }

    /// The header of a string of `count` UTF-8 bytes; the caller appends them.
    public mutating func writeStringHeader(count: Int) { withCursor(reserving: 5) { $0.writeStringHeader(count: count) } }

    /// bin 8/16/32.
    public mutating func writeBinary(_ data: some Collection<UInt8>) {
        withCursor(reserving: 5) { $0.writeBinaryHeader(count: data.count) }
        writeEncoded(data)
    }

    // MARK: containers

    /// fixarray, array 16/32; the caller then writes `count` values.
    public mutating func writeArrayHeader(count: Int) { withCursor(reserving: 5) { $0.writeArrayHeader(count: count) } }

    /// fixmap, map 16/32; the caller then writes `count` key/value pairs.
    public mutating func writeMapHeader(count: Int) { withCursor(reserving: 5) { $0.writeMapHeader(count: count) } }

    /// fixext 1/2/4/8/16 when the size allows, else ext 8/16/32.
    public mutating func writeExtension(type: Int8, data: some Collection<UInt8>) {
        let count = data.count
        withCursor(reserving: 6) { cursor in
            switch count {
            case 1: cursor.write(byte: 0xd4)
            case 2: cursor.write(byte: 0xd5)
            case 4: cursor.write(byte: 0xd6)
            case 8: cursor.write(byte: 0xd7)
            case 16: cursor.write(byte: 0xd8)
            case ...0xff:
                cursor.write(byte: 0xc7)
                cursor.write(byte: UInt8(truncatingIfNeeded: count))
            case ...0xffff:
                cursor.write(byte: 0xc8)
                cursor.writeBigEndian(UInt16(truncatingIfNeeded: count))
            default:
                cursor.write(byte: 0xc9)
                cursor.writeBigEndian(MessagePackCursor.length32(count))
            }
            cursor.write(byte: UInt8(bitPattern: type))
        }
        writeEncoded(data)
    }

    /// A string known at compile time (a map key), copied from static
    /// storage without reference counting. It must be shorter than 32 bytes.
    mutating func writeKey(_ key: StaticString) {
        key.withUTF8Buffer { writeString(utf8: UnsafeRawBufferPointer($0)) }
    }

    /// Bytes that already are MessagePack (a pre-encoded key, a nested payload).
    public mutating func writeEncoded(_ encoded: some Collection<UInt8>) {
        if encoded.withContiguousStorageIfAvailable({ writeEncoded(UnsafeRawBufferPointer($0)) }) == nil {
            writeEncoded(Array(encoded))
        }
    }

    public mutating func writeEncoded(_ encoded: UnsafeRawBufferPointer) {
        withCursor(reserving: encoded.count) { $0.write(bytes: encoded) }
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
}

/// Where a `MessagePackWriter`'s next byte goes inside `withCursor`: the
/// one place each MessagePack encoding is written. It stores through a raw
/// pointer without checks; `withCursor` reserved the room.
struct MessagePackCursor {
    var next: UnsafeMutableRawPointer

    fileprivate init(_ next: UnsafeMutableRawPointer) { self.next = next }

    /// An array of exactly `count` bytes written by `body`, not zeroed
    /// first: a payload is assembled from parts whose sizes are known.
    static func array(count: Int, _ body: (inout MessagePackCursor) -> Void) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            guard let base = buffer.baseAddress else { return }
            var cursor = MessagePackCursor(UnsafeMutableRawPointer(base))
            body(&cursor)
            initialized = UnsafeMutableRawPointer(base).distance(to: cursor.next)
            precondition(initialized == count, "MessagePackCursor.array: \(initialized) bytes written, \(count) expected")
        }
    }

    @inline(__always)
    mutating func write(byte: UInt8) {
        next.storeBytes(of: byte, as: UInt8.self)
        next += 1
    }

    @inline(__always)
    mutating func writeBigEndian<T: FixedWidthInteger & UnsignedInteger>(_ value: T) {
        // storeBytes does unaligned stores of trivial types.
        next.storeBytes(of: value.bigEndian, as: T.self)
        next += MemoryLayout<T>.size
    }

    @inline(__always)
    mutating func write(bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress else { return }
        next.copyMemory(from: source, byteCount: bytes.count)
        next += bytes.count
    }

    @inline(__always)
    mutating func writeNil() { write(byte: 0xc0) }

    @inline(__always)
    mutating func write(_ value: Bool) { write(byte: value ? 0xc3 : 0xc2) }

    /// positive fixint, uint 8/16/32/64: at most 9 bytes.
    @inline(__always)
    mutating func write(_ value: UInt64) {
        if value < 0x80 {
            write(byte: UInt8(truncatingIfNeeded: value))
        } else if value <= 0xff {
            write(byte: 0xcc)
            write(byte: UInt8(truncatingIfNeeded: value))
        } else if value <= 0xffff {
            write(byte: 0xcd)
            writeBigEndian(UInt16(truncatingIfNeeded: value))
        } else if value <= 0xffff_ffff {
            write(byte: 0xce)
            writeBigEndian(UInt32(truncatingIfNeeded: value))
        } else {
            write(byte: 0xcf)
            writeBigEndian(value)
        }
    }

    /// Non-negative values as unsigned; negative fixint, int 8/16/32/64
    /// otherwise: at most 9 bytes.
    @inline(__always)
    mutating func write(_ value: Int64) {
        if value >= 0 {
            write(UInt64(value))
        } else if value >= -32 {
            write(byte: UInt8(truncatingIfNeeded: value))
        } else if value >= Int64(Int8.min) {
            write(byte: 0xd0)
            write(byte: UInt8(truncatingIfNeeded: value))
        } else if value >= Int64(Int16.min) {
            write(byte: 0xd1)
            writeBigEndian(UInt16(truncatingIfNeeded: value))
        } else if value >= Int64(Int32.min) {
            write(byte: 0xd2)
            writeBigEndian(UInt32(truncatingIfNeeded: value))
        } else {
            write(byte: 0xd3)
            writeBigEndian(UInt64(bitPattern: value))
        }
    }

    @inline(__always)
    mutating func write(_ value: UInt32) { write(UInt64(value)) }

    @inline(__always)
    mutating func write(_ value: Int32) { write(Int64(value)) }

    /// float 64: 9 bytes.
    @inline(__always)
    mutating func write(_ value: Double) {
        write(byte: 0xcb)
        writeBigEndian(value.bitPattern)
    }

    /// float 32: 5 bytes.
    @inline(__always)
    mutating func write(_ value: Float) {
        write(byte: 0xca)
        writeBigEndian(value.bitPattern)
    }

    /// fixstr, str 8/16/32 header: at most 5 bytes.
    @inline(__always)
    mutating func writeStringHeader(count: Int) {
        if count < 32 {
            write(byte: 0xa0 | UInt8(truncatingIfNeeded: count))
        } else {
            writeSizedHeader(count: count, tag8: 0xd9, tag16: 0xda, tag32: 0xdb)
        }
    }

    /// bin 8/16/32 header: at most 5 bytes.
    @inline(__always)
    mutating func writeBinaryHeader(count: Int) { writeSizedHeader(count: count, tag8: 0xc4, tag16: 0xc5, tag32: 0xc6) }

    /// Strings and binaries share the 8/16/32-bit length layout; only the
    /// tags differ.
    @inline(__always)
    private mutating func writeSizedHeader(count: Int, tag8: UInt8, tag16: UInt8, tag32: UInt8) {
        if count <= 0xff {
            write(byte: tag8)
            write(byte: UInt8(truncatingIfNeeded: count))
        } else if count <= 0xffff {
            write(byte: tag16)
            writeBigEndian(UInt16(truncatingIfNeeded: count))
        } else {
            write(byte: tag32)
            writeBigEndian(Self.length32(count))
        }
    }

    /// fixarray, array 16/32 header: at most 5 bytes.
    @inline(__always)
    mutating func writeArrayHeader(count: Int) { writeContainerHeader(count: count, fix: 0x90, tag16: 0xdc, tag32: 0xdd) }

    /// fixmap, map 16/32 header: at most 5 bytes.
    @inline(__always)
    mutating func writeMapHeader(count: Int) { writeContainerHeader(count: count, fix: 0x80, tag16: 0xde, tag32: 0xdf) }

    /// Arrays and maps share one header layout; only the tags differ.
    @inline(__always)
    private mutating func writeContainerHeader(count: Int, fix: UInt8, tag16: UInt8, tag32: UInt8) {
        if count < 16 {
            write(byte: fix | UInt8(truncatingIfNeeded: count))
        } else if count <= 0xffff {
            write(byte: tag16)
            writeBigEndian(UInt16(truncatingIfNeeded: count))
        } else {
            write(byte: tag32)
            writeBigEndian(Self.length32(count))
        }
    }

    static func length32(_ count: Int) -> UInt32 {
        guard let length = UInt32(exactly: count) else {
            preconditionFailure("MessagePack cannot express a length of \(count) (more than UInt32.max)")
        }
        return length
    }
}
