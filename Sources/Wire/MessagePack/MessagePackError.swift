/// The families of MessagePack values, as named by the specification.
public enum MessagePackType: String, Sendable, Equatable, CustomStringConvertible {
    case `nil`, bool, integer, float, string, binary, array, map, `extension`

    /// The family a value starting with `byte` belongs to; nil for 0xc1,
    /// which the specification reserves ("never used").
    public init?(leadByte byte: UInt8) {
        switch byte {
        case 0x00...0x7f, 0xe0...0xff, 0xcc...0xd3: self = .integer
        case 0x80...0x8f, 0xde, 0xdf: self = .map
        case 0x90...0x9f, 0xdc, 0xdd: self = .array
        case 0xa0...0xbf, 0xd9...0xdb: self = .string
        case 0xc0: self = .nil
        case 0xc2, 0xc3: self = .bool
        case 0xc4...0xc6: self = .binary
        case 0xc7...0xc9, 0xd4...0xd8: self = .extension
        case 0xca, 0xcb: self = .float
        default: return nil
        }
    }

    public var description: String { rawValue }
}

/// Why MessagePack bytes could not be read. Offsets count from the start of
/// the reader's range, so a message can say where in a payload it failed.
public enum MessagePackError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The input ends inside a value, or a declared length (string, binary,
    /// element count) is longer than the bytes left: `needed` bytes from `offset`.
    case truncated(offset: Int, needed: Int)
    /// A value of another family was found where `expected` was required.
    case typeMismatch(expected: MessagePackType, found: MessagePackType?, offset: Int)
    /// 0xc1, which the specification reserves.
    case reservedByte(offset: Int)
    /// An integer that does not fit the type asked for.
    case integerOverflow(offset: Int)
    /// Arrays and maps nested deeper than the reader allows.
    case depthLimitExceeded(limit: Int, offset: Int)
    /// A complete value was followed by more bytes where none may follow.
    case trailingBytes(offset: Int, count: Int)

    public var description: String {
        switch self {
        case let .truncated(offset, needed):
            "MessagePack input ends early: \(needed) more byte(s) needed at offset \(offset)"
        case let .typeMismatch(expected, found, offset):
            "MessagePack type mismatch at offset \(offset): expected \(expected), found \(found.map(\.description) ?? "reserved byte 0xc1")"
        case let .reservedByte(offset):
            "MessagePack reserved byte 0xc1 at offset \(offset)"
        case let .integerOverflow(offset):
            "MessagePack integer at offset \(offset) does not fit the expected type"
        case let .depthLimitExceeded(limit, offset):
            "MessagePack nesting deeper than \(limit) at offset \(offset)"
        case let .trailingBytes(offset, count):
            "\(count) unexpected byte(s) after the MessagePack value, at offset \(offset)"
        }
    }
}
