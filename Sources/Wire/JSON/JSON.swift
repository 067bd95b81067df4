/// A JSON value. Objects keep their members in document order (a repeated
/// key keeps its first position and its last value). Numbers are `Double`,
/// which holds every integer up to 2^53 exactly.
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object(OrderedMap<JSONValue>)

    public subscript(key: String) -> JSONValue? {
        if case .object(let members) = self { return members[key] }
        return nil
    }

    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    public var numberValue: Double? {
        if case .number(let value) = self { return value }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    public var objectValue: OrderedMap<JSONValue>? {
        if case .object(let value) = self { return value }
        return nil
    }
}

extension JSONValue: ExpressibleByNilLiteral, ExpressibleByBooleanLiteral, ExpressibleByIntegerLiteral,
    ExpressibleByFloatLiteral, ExpressibleByStringLiteral, ExpressibleByArrayLiteral, ExpressibleByDictionaryLiteral
{
    public init(nilLiteral: ()) { self = .null }
    public init(booleanLiteral value: Bool) { self = .bool(value) }
    public init(integerLiteral value: Int) { self = .number(Double(value)) }
    public init(floatLiteral value: Double) { self = .number(value) }
    public init(stringLiteral value: String) { self = .string(value) }
    public init(arrayLiteral elements: JSONValue...) { self = .array(elements) }
    public init(dictionaryLiteral elements: (String, JSONValue)...) { self = .object(OrderedMap(elements)) }
}

/// Bounds on what a JSON document can make the reader do.
public struct JSONLimits: Equatable, Sendable {
    public var maxInputBytes: Int
    public var maxDepth: Int

    public init(maxInputBytes: Int = 1 << 20, maxDepth: Int = 64) {
        self.maxInputBytes = maxInputBytes
        self.maxDepth = maxDepth
    }

    public static let `default` = JSONLimits()
}

/// Why bytes are not a JSON document this reader accepts. Offsets are byte
/// offsets into the input.
public enum JSONError: Error, Equatable, Sendable, CustomStringConvertible {
    case inputTooLarge(limit: Int)
    case depthLimitExceeded(limit: Int, offset: Int)
    case unexpectedEnd
    case unexpectedByte(UInt8, offset: Int)
    case invalidNumber(offset: Int)
    /// A number whose magnitude does not fit a `Double` (`1e999`).
    case numberOutOfRange(offset: Int)
    case invalidEscape(offset: Int)
    /// A `\u` escape naming half a surrogate pair without the other half.
    case unpairedSurrogate(offset: Int)
    case controlCharacterInString(offset: Int)
    case invalidUTF8(offset: Int)
    case trailingCharacters(offset: Int)
    /// Valid JSON of the wrong shape for what was asked (`rate_by_service` not an object).
    case unexpectedShape(String)

    public var description: String {
        switch self {
        case .inputTooLarge(let limit): "JSON document larger than \(limit) bytes"
        case let .depthLimitExceeded(limit, offset): "JSON nested deeper than \(limit) at offset \(offset)"
        case .unexpectedEnd: "JSON document ends early"
        case let .unexpectedByte(byte, offset): "unexpected byte 0x\(String(byte, radix: 16)) in JSON at offset \(offset)"
        case .invalidNumber(let offset): "invalid JSON number at offset \(offset)"
        case .numberOutOfRange(let offset): "JSON number out of range at offset \(offset)"
        case .invalidEscape(let offset): "invalid JSON string escape at offset \(offset)"
        case .unpairedSurrogate(let offset): "unpaired UTF-16 surrogate in JSON string at offset \(offset)"
        case .controlCharacterInString(let offset): "unescaped control character in JSON string at offset \(offset)"
        case .invalidUTF8(let offset): "invalid UTF-8 in JSON string at offset \(offset)"
        case .trailingCharacters(let offset): "unexpected characters after the JSON value at offset \(offset)"
        case .unexpectedShape(let what): "unexpected JSON shape: \(what)"
        }
    }
}

extension JSONValue {
    /// Parses one JSON document (RFC 8259), with surrounding whitespace.
    public init(parsing bytes: [UInt8], limits: JSONLimits = .default) throws(JSONError) {
        guard bytes.count <= limits.maxInputBytes else { throw .inputTooLarge(limit: limits.maxInputBytes) }
        var reader = JSONReader(bytes: bytes, maxDepth: limits.maxDepth)
        reader.skipWhitespace()
        self = try reader.readValue(depth: 0)
        reader.skipWhitespace()
        guard reader.position == bytes.count else { throw .trailingCharacters(offset: reader.position) }
    }

    public init(parsing text: String, limits: JSONLimits = .default) throws(JSONError) {
        try self.init(parsing: Array(text.utf8), limits: limits)
    }
}

/// A recursive-descent reader over bytes; depth bounds the recursion, and
/// every loop consumes at least one byte, so any input ends in linear time.
struct JSONReader {
    let bytes: [UInt8]
    let maxDepth: Int
    var position = 0

    init(bytes: [UInt8], maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func skipWhitespace() {
        while position < bytes.count {
            switch bytes[position] {
            case 0x20, 0x09, 0x0a, 0x0d: position += 1
            default: return
            }
        }
    }

    func peek() throws(JSONError) -> UInt8 {
        guard position < bytes.count else { throw .unexpectedEnd }
        return bytes[position]
    }

    mutating func expect(_ byte: UInt8) throws(JSONError) {
        let found = try peek()
        guard found == byte else { throw .unexpectedByte(found, offset: position) }
        position += 1
    }

    mutating func readValue(depth: Int) throws(JSONError) -> JSONValue {
        let byte = try peek()
        switch byte {
        case UInt8(ascii: "{"):
            guard depth < maxDepth else { throw .depthLimitExceeded(limit: maxDepth, offset: position) }
            position += 1
            var members = OrderedMap<JSONValue>()
            skipWhitespace()
            if try peek() == UInt8(ascii: "}") {
                position += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                let key = try readString()
                skipWhitespace()
                try expect(UInt8(ascii: ":"))
                skipWhitespace()
                members[key] = try readValue(depth: depth + 1)
                skipWhitespace()
                let separator = try peek()
                position += 1
                if separator == UInt8(ascii: "}") { return .object(members) }
                guard separator == UInt8(ascii: ",") else { throw .unexpectedByte(separator, offset: position - 1) }
            }
        case UInt8(ascii: "["):
            guard depth < maxDepth else { throw .depthLimitExceeded(limit: maxDepth, offset: position) }
            position += 1
            var elements: [JSONValue] = []
            skipWhitespace()
            if try peek() == UInt8(ascii: "]") {
                position += 1
                return .array(elements)
            }
            while true {
                skipWhitespace()
                elements.append(try readValue(depth: depth + 1))
                skipWhitespace()
                let separator = try peek()
                position += 1
                if separator == UInt8(ascii: "]") { return .array(elements) }
                guard separator == UInt8(ascii: ",") else { throw .unexpectedByte(separator, offset: position - 1) }
            }
        case UInt8(ascii: "\""):
            return .string(try readString())
        case UInt8(ascii: "t"):
            try readLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try readLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try readLiteral("null")
            return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return .number(try readNumber())
        default:
            throw .unexpectedByte(byte, offset: position)
        }
    }

    mutating func readLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard bytes.count - position >= count else { throw .unexpectedEnd }
        let matches = literal.withUTF8Buffer { expected in bytes[position..<(position + count)].elementsEqual(expected) }
        guard matches else { throw .unexpectedByte(bytes[position], offset: position) }
        position += count
    }

    /// -? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?, checked here
    /// because `Double(String)` also takes `inf`, hex and a leading `+`.
    mutating func readNumber() throws(JSONError) -> Double {
        let start = position
        func digits() -> Int {
            let first = position
            while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") { position += 1 }
            return position - first
        }
        if bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard position < bytes.count else { throw .unexpectedEnd }
        if bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else if digits() == 0 {
            throw .invalidNumber(offset: start)
        }
        if position < bytes.count, bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard digits() > 0 else { throw .invalidNumber(offset: start) }
        }
        if position < bytes.count, bytes[position] | 0x20 == UInt8(ascii: "e") {
            position += 1
            if position < bytes.count, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") { position += 1 }
            guard digits() > 0 else { throw .invalidNumber(offset: start) }
        }
        guard let value = Double(String(decoding: bytes[start..<position], as: UTF8.self)) else { throw .invalidNumber(offset: start) }
        guard value.isFinite else { throw .numberOutOfRange(offset: start) }
        return value
    }

    mutating func readString() throws(JSONError) -> String {
        try expect(UInt8(ascii: "\""))
        let start = position
        // Fast path: no escapes, so the bytes between the quotes are the string.
        while position < bytes.count {
            let byte = bytes[position]
            if byte == UInt8(ascii: "\"") {
                let result = try Self.validated(bytes[start..<position], offset: start)
                position += 1
                return result
            }
            if byte == UInt8(ascii: "\\") { break }
            guard byte >= 0x20 else { throw .controlCharacterInString(offset: position) }
            position += 1
        }
        var scratch = Array(bytes[start..<position])
        while true {
            guard position < bytes.count else { throw .unexpectedEnd }
            let byte = bytes[position]
            switch byte {
            case UInt8(ascii: "\""):
                position += 1
                return try Self.validated(scratch[...], offset: start)
            case UInt8(ascii: "\\"):
                try readEscape(into: &scratch)
            case 0x00..<0x20:
                throw .controlCharacterInString(offset: position)
            default:
                scratch.append(byte)
                position += 1
            }
        }
    }

    mutating func readEscape(into scratch: inout [UInt8]) throws(JSONError) {
        let escapeStart = position
        position += 1
        let byte = try peek()
        position += 1
        switch byte {
        case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): scratch.append(byte)
        case UInt8(ascii: "b"): scratch.append(0x08)
        case UInt8(ascii: "f"): scratch.append(0x0c)
        case UInt8(ascii: "n"): scratch.append(0x0a)
        case UInt8(ascii: "r"): scratch.append(0x0d)
        case UInt8(ascii: "t"): scratch.append(0x09)
        case UInt8(ascii: "u"):
            var scalar = try readHex4(escapeStart: escapeStart)
            if (0xd800...0xdbff).contains(scalar) {
                // A high surrogate must be followed at once by an escaped low one.
                guard bytes.count - position >= 6, bytes[position] == UInt8(ascii: "\\"), bytes[position + 1] == UInt8(ascii: "u") else {
                    throw .unpairedSurrogate(offset: escapeStart)
                }
                position += 2
                let low = try readHex4(escapeStart: escapeStart)
                guard (0xdc00...0xdfff).contains(low) else { throw .unpairedSurrogate(offset: escapeStart) }
                scalar = 0x10000 + ((scalar - 0xd800) << 10) + (low - 0xdc00)
            } else if (0xdc00...0xdfff).contains(scalar) {
                throw .unpairedSurrogate(offset: escapeStart)
            }
            // Not a surrogate and at most 0x10FFFF by construction, so always a scalar.
            guard let unicode = Unicode.Scalar(scalar) else { throw .invalidEscape(offset: escapeStart) }
            scratch.append(contentsOf: UTF8.encode(unicode)!)
        default:
            throw .invalidEscape(offset: escapeStart)
        }
    }

    mutating func readHex4(escapeStart: Int) throws(JSONError) -> UInt32 {
        guard bytes.count - position >= 4 else { throw .unexpectedEnd }
        var value: UInt32 = 0
        for _ in 0..<4 {
            guard let digit = HTTPMessageParser.hexValue(bytes[position]) else { throw .invalidEscape(offset: escapeStart) }
            value = value << 4 | UInt32(digit)
            position += 1
        }
        return value
    }

    static func validated(_ utf8: ArraySlice<UInt8>, offset: Int) throws(JSONError) -> String {
        guard let text = String(validating: utf8, as: UTF8.self) else { throw .invalidUTF8(offset: offset) }
        return text
    }
}

// MARK: writing

extension JSONValue {
    /// Compact JSON text. Whole numbers up to 2^53 are written without a
    /// fraction (`3`, not `3.0`); NaN and infinities, which JSON cannot
    /// express, are written as `null`.
    public func serialized() -> [UInt8] {
        var out: [UInt8] = []
        write(to: &out)
        return out
    }

    public var jsonText: String { String(decoding: serialized(), as: UTF8.self) }

    func write(to out: inout [UInt8]) {
        switch self {
        case .null: out.append(contentsOf: "null".utf8)
        case .bool(let value): out.append(contentsOf: (value ? "true" : "false").utf8)
        case .number(let value): Self.writeNumber(value, to: &out)
        case .string(let value): Self.writeString(value, to: &out)
        case .array(let elements):
            out.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                element.write(to: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            for (index, member) in members.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(member.key, to: &out)
                out.append(UInt8(ascii: ":"))
                member.value.write(to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func writeNumber(_ value: Double, to out: inout [UInt8]) {
        guard value.isFinite else {
            out.append(contentsOf: "null".utf8)
            return
        }
        if value == value.rounded(), abs(value) <= 9_007_199_254_740_992 {
            out.append(contentsOf: String(Int64(value)).utf8)
        } else {
            // Swift's shortest round-trip form ("0.1", "1e+300", "5e-324") is valid JSON.
            out.append(contentsOf: value.description.utf8)
        }
    }

    static func writeString(_ value: String, to out: inout [UInt8]) {
        let hexDigits = Array("0123456789abcdef".utf8)
        out.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): out.append(contentsOf: "\\\"".utf8)
            case UInt8(ascii: "\\"): out.append(contentsOf: "\\\\".utf8)
            case 0x0a: out.append(contentsOf: "\\n".utf8)
            case 0x0d: out.append(contentsOf: "\\r".utf8)
            case 0x09: out.append(contentsOf: "\\t".utf8)
            case 0x00..<0x20:
                out.append(contentsOf: "\\u00".utf8)
                out.append(hexDigits[Int(byte >> 4)])
                out.append(hexDigits[Int(byte & 0x0f)])
            default: out.append(byte)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
