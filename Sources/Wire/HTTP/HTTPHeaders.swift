/// One header field as it appeared (or will appear) on the wire.
public struct HTTPField: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
        self.name = name
        self.value = value
    }

    public var description: String { "\(name): \(value)" }
}

/// Header fields in wire order, repeats kept. Name lookups ignore ASCII
/// case, as HTTP field names are case-insensitive.
public struct HTTPHeaders: Equatable, Sendable, RandomAccessCollection, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    public private(set) var fields: [HTTPField]

    public init() { fields = [] }

    public init(_ fields: [HTTPField]) { self.fields = fields }

    public init(_ pairs: [(String, String)]) {
        fields = pairs.map { HTTPField(name: $0.0, value: $0.1) }
    }

    /// Pairs in the order written; repeated names are kept.
    public init(dictionaryLiteral elements: (String, String)...) {
        self.init(elements)
    }

    public var startIndex: Int { fields.startIndex }
    public var endIndex: Int { fields.endIndex }
    public subscript(position: Int) -> HTTPField { fields[position] }

    /// The first value for `name` (case-insensitive), if any.
    public subscript(name: String) -> String? {
        fields.first { ASCII.caseInsensitiveEqual($0.name, name) }?.value
    }

    /// Every value for `name`, in order.
    public func values(for name: String) -> [String] {
        fields.filter { ASCII.caseInsensitiveEqual($0.name, name) }.map(\.value)
    }

    public func contains(_ name: String) -> Bool {
        fields.contains { ASCII.caseInsensitiveEqual($0.name, name) }
    }

    /// The comma-separated elements of every `name` field, trimmed of
    /// whitespace, empty elements dropped (`Connection: keep-alive, Upgrade`).
    public func tokens(for name: String) -> [String] {
        values(for: name).flatMap { value in
            value.split(separator: ",").map { ASCII.trimmingWhitespace($0) }.filter { !$0.isEmpty }
        }
    }

    /// Whether any `name` field lists `token` (case-insensitive).
    public func hasToken(_ token: String, for name: String) -> Bool {
        tokens(for: name).contains { ASCII.caseInsensitiveEqual($0, token) }
    }

    public mutating func add(name: String, value: String) {
        fields.append(HTTPField(name: name, value: value))
    }

    /// Replaces every `name` field with one holding `value`, at the position
    /// of the first (or at the end).
    public mutating func set(name: String, value: String) {
        if let first = fields.firstIndex(where: { ASCII.caseInsensitiveEqual($0.name, name) }) {
            fields[first].value = value
            var index = fields.index(after: first)
            while index < fields.endIndex {
                if ASCII.caseInsensitiveEqual(fields[index].name, name) { fields.remove(at: index) } else { index += 1 }
            }
        } else {
            add(name: name, value: value)
        }
    }

    public mutating func remove(name: String) {
        fields.removeAll { ASCII.caseInsensitiveEqual($0.name, name) }
    }

    public var description: String { fields.map(\.description).joined(separator: "\r\n") }
}

/// Byte classes and helpers from RFC 9110/9112, used by the parser and the
/// writer so both accept exactly the same bytes.
enum ASCII {
    static let cr: UInt8 = 0x0d
    static let lf: UInt8 = 0x0a
    static let space: UInt8 = 0x20
    static let tab: UInt8 = 0x09
    static let colon: UInt8 = 0x3a

    /// tchar: the bytes of a token (method, field name, coding).
    static func isTokenByte(_ byte: UInt8) -> Bool {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        case UInt8(ascii: "!"), UInt8(ascii: "#"), UInt8(ascii: "$"), UInt8(ascii: "%"), UInt8(ascii: "&"), UInt8(ascii: "'"),
            UInt8(ascii: "*"), UInt8(ascii: "+"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "^"), UInt8(ascii: "_"),
            UInt8(ascii: "`"), UInt8(ascii: "|"), UInt8(ascii: "~"):
            return true
        default:
            return false
        }
    }

    /// field-vchar / SP / HTAB: what a field value, reason phrase or chunk
    /// extension may hold. Excludes every control byte (NUL, CR, LF, DEL …).
    static func isFieldContentByte(_ byte: UInt8) -> Bool {
        byte == tab || (byte >= 0x20 && byte != 0x7f)
    }

    static func isWhitespace(_ byte: UInt8) -> Bool { byte == space || byte == tab }

    static func isToken(_ text: some StringProtocol) -> Bool {
        !text.utf8.isEmpty && text.utf8.allSatisfy(isTokenByte)
    }

    static func lowercased(_ byte: UInt8) -> UInt8 {
        (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z")) ? byte | 0x20 : byte
    }

    static func caseInsensitiveEqual(_ a: some StringProtocol, _ b: some StringProtocol) -> Bool {
        a.utf8.count == b.utf8.count && zip(a.utf8, b.utf8).allSatisfy { lowercased($0) == lowercased($1) }
    }

    static func trimmingWhitespace(_ text: Substring) -> String {
        let utf8 = text.utf8
        guard let first = utf8.firstIndex(where: { !isWhitespace($0) }) else { return "" }
        let last = utf8.lastIndex(where: { !isWhitespace($0) })!
        return String(text[first...last])
    }

    /// The decimal text of a non-negative integer, as bytes.
    static func decimal(_ value: Int) -> [UInt8] { Array(String(value).utf8) }
}
