/// Any MessagePack value, for generic decoding (control messages, payloads
/// of unknown shape, tests).
///
/// Integers: the reader gives `.int` for every value that fits `Int64` and
/// `.uint` only above `Int64.max`, whatever width was on the wire; equality
/// compares integers by value, so `.uint(5) == .int(5)`. Floats compare by
/// bit pattern (a NaN equals itself; 0.0 and -0.0 differ), because two values
/// are equal here when they encode to the same bytes.
public enum MessagePackValue: Sendable {
    case `nil`
    case bool(Bool)
    case int(Int64)
    case uint(UInt64)
    case float(Float)
    case double(Double)
    case string(String)
    case binary([UInt8])
    case array([MessagePackValue])
    /// Key/value pairs in wire order; keys of any type, repeats kept.
    case map([(key: MessagePackValue, value: MessagePackValue)])
    case `extension`(type: Int8, data: [UInt8])
}

extension MessagePackValue: Equatable {
    public static func == (lhs: MessagePackValue, rhs: MessagePackValue) -> Bool {
        switch (lhs, rhs) {
        case (.nil, .nil): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.int(a), .int(b)): return a == b
        case let (.uint(a), .uint(b)): return a == b
        case let (.int(a), .uint(b)), let (.uint(b), .int(a)): return a >= 0 && UInt64(a) == b
        case let (.float(a), .float(b)): return a.bitPattern == b.bitPattern
        case let (.double(a), .double(b)): return a.bitPattern == b.bitPattern
        case let (.string(a), .string(b)): return a == b
        case let (.binary(a), .binary(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.map(a), .map(b)):
            guard a.count == b.count else { return false }
            for (x, y) in zip(a, b) where x.key != y.key || x.value != y.value { return false }
            return true
        case let (.extension(t1, d1), .extension(t2, d2)): return t1 == t2 && d1 == d2
        default: return false
        }
    }
}

extension MessagePackValue {
    /// A map with string keys, in the order given.
    public static func map(_ fields: OrderedMap<MessagePackValue>) -> MessagePackValue {
        .map(fields.map { (key: .string($0.key), value: $0.value) })
    }

    public var isNil: Bool {
        if case .nil = self { return true }
        return false
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The integer as `Int64` when it fits.
    public var int64Value: Int64? {
        switch self {
        case .int(let value): value
        case .uint(let value): Int64(exactly: value)
        default: nil
        }
    }

    /// The integer as `UInt64` when it is not negative.
    public var uint64Value: UInt64? {
        switch self {
        case .int(let value): UInt64(exactly: value)
        case .uint(let value): value
        default: nil
        }
    }

    /// Any float, or an integer converted.
    public var doubleValue: Double? {
        switch self {
        case .double(let value): value
        case .float(let value): Double(value)
        case .int(let value): Double(value)
        case .uint(let value): Double(value)
        default: nil
        }
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var binaryValue: [UInt8]? {
        if case .binary(let value) = self { return value }
        return nil
    }

    public var arrayValue: [MessagePackValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var mapValue: [(key: MessagePackValue, value: MessagePackValue)]? {
        if case .map(let value) = self { return value }
        return nil
    }

    /// The value of the first entry whose key is the string `key`, in a map.
    public subscript(key: String) -> MessagePackValue? {
        guard case .map(let entries) = self else { return nil }
        for entry in entries {
            if case .string(let candidate) = entry.key, candidate == key { return entry.value }
        }
        return nil
    }

    /// The bytes of this value in MessagePack.
    public func encoded() -> [UInt8] {
        var writer = MessagePackWriter()
        writer.write(self)
        return writer.bytes
    }
}

extension MessagePackValue: CustomStringConvertible {
    public var description: String {
        switch self {
        case .nil: "nil"
        case .bool(let value): "\(value)"
        case .int(let value): "\(value)"
        case .uint(let value): "\(value)"
        case .float(let value): "\(value)f"
        case .double(let value): "\(value)"
        case .string(let value): "\"\(value)\""
        case .binary(let value): "bin(\(value.count) bytes)"
        case .array(let elements): "[" + elements.map(\.description).joined(separator: ", ") + "]"
        case .map(let entries):
            entries.isEmpty ? "[:]" : "[" + entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "]"
        case .extension(let type, let data): "ext(\(type), \(data.count) bytes)"
        }
    }
}

extension MessagePackValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .nil }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int64) { self = .int(value) }
    public init(floatLiteral value: Double) { self = .double(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: MessagePackValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (MessagePackValue, MessagePackValue)...) {
        self = .map(elements.map { (key: $0.0, value: $0.1) })
    }
}
