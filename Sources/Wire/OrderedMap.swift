/// String keys to values in insertion order: span `meta`/`metrics`, JSON
/// objects, control messages. Order is kept so an encoded payload is the
/// same bytes every time (a `Dictionary` would reorder per process, because
/// its hashing is seeded per process).
///
/// Setting an existing key replaces its value in place. Lookups are linear
/// while the map is small (spans carry a handful of tags) and go through a
/// hash index once it is large, so a hostile payload with many keys costs
/// linear, not quadratic, time.
public struct OrderedMap<Value> {
    public private(set) var keys: [String]
    public private(set) var values: [Value]
    /// Key → position; built only past `indexThreshold` entries.
    @usableFromInline var index: [String: Int]?

    @usableFromInline static var indexThreshold: Int { 12 }

    public init() {
        keys = []
        values = []
        index = nil
    }

    public init(minimumCapacity: Int) {
        self.init()
        keys.reserveCapacity(minimumCapacity)
        values.reserveCapacity(minimumCapacity)
    }

    /// The map of `keys[i]` to `values[i]`, for keys the caller knows are
    /// distinct and few (a tracer's fixed tag names): no lookups, and a
    /// shared `keys` array is not copied.
    public init(distinctKeys keys: [String], values: [Value]) {
        precondition(keys.count == values.count, "OrderedMap(distinctKeys:values:): \(keys.count) keys for \(values.count) values")
        assert(Set(keys).count == keys.count, "OrderedMap(distinctKeys:values:): repeated key in \(keys)")
        self.keys = keys
        self.values = values
        index = nil
        if keys.count > Self.indexThreshold {
            var built: [String: Int] = [:]
            for (position, key) in keys.enumerated() { built[key] = position }
            index = built
        }
    }

    /// Builds the map from pairs in order; a repeated key keeps its first
    /// position and its last value.
    public init(_ pairs: some Sequence<(String, Value)>) {
        self.init()
        for (key, value) in pairs { self[key] = value }
    }

    public var isEmpty: Bool { keys.isEmpty }

    /// The position of `key`, if present.
    @inlinable
    public func position(of key: String) -> Int? {
        if let index { return index[key] }
        return keys.firstIndex(of: key)
    }

    public subscript(key: String) -> Value? {
        get { position(of: key).map { values[$0] } }
        set {
            if let newValue { updateValue(newValue, forKey: key) } else { removeValue(forKey: key) }
        }
    }

    /// Sets `value` for `key` (in place when present, else appended);
    /// returns the value it replaced.
    @discardableResult
    public mutating func updateValue(_ value: Value, forKey key: String) -> Value? {
        if let position = position(of: key) {
            let old = values[position]
            values[position] = value
            return old
        }
        appendNew(key, value)
        return nil
    }

    /// Appends a pair whose key the caller knows is absent (an encoder that
    /// builds from unique keys skips the lookup).
    @usableFromInline
    mutating func appendNew(_ key: String, _ value: Value) {
        keys.append(key)
        values.append(value)
        if index != nil {
            index![key] = keys.count - 1
        } else if keys.count > Self.indexThreshold {
            var built: [String: Int] = [:]
            built.reserveCapacity(keys.count * 2)
            for (position, key) in keys.enumerated() { built[key] = position }
            index = built
        }
    }

    @discardableResult
    public mutating func removeValue(forKey key: String) -> Value? {
        guard let position = position(of: key) else { return nil }
        keys.remove(at: position)
        let old = values.remove(at: position)
        if index != nil {
            var rebuilt: [String: Int] = [:]
            for (position, key) in keys.enumerated() { rebuilt[key] = position }
            index = keys.count > Self.indexThreshold ? rebuilt : nil
        }
        return old
    }

    public mutating func removeAll() {
        keys.removeAll()
        values.removeAll()
        index = nil
    }
}

extension OrderedMap: RandomAccessCollection {
    public typealias Element = (key: String, value: Value)
    public var startIndex: Int { 0 }
    public var endIndex: Int { keys.count }
    public subscript(position: Int) -> Element { (keys[position], values[position]) }
}

extension OrderedMap: ExpressibleByDictionaryLiteral {
    // Not through the generic `init(_:)`: that one, unspecialized across
    // modules, instantiates tuple and sequence metadata on every call, which
    // made `Span(…)` with its default `[:]` tags cost more than encoding it.
    public init(dictionaryLiteral elements: (String, Value)...) {
        self.init()
        if elements.isEmpty { return }
        keys.reserveCapacity(elements.count)
        values.reserveCapacity(elements.count)
        for index in elements.indices { self[elements[index].0] = elements[index].1 }
    }
}

/// Equal when the same keys hold the same values in the same order.
extension OrderedMap: Equatable where Value: Equatable {
    public static func == (lhs: OrderedMap, rhs: OrderedMap) -> Bool {
        lhs.keys == rhs.keys && lhs.values == rhs.values
    }
}

extension OrderedMap: Sendable where Value: Sendable {}

extension OrderedMap: CustomStringConvertible {
    public var description: String {
        if isEmpty { return "[:]" }
        return "[" + indices.map { "\(keys[$0]): \(values[$0])" }.joined(separator: ", ") + "]"
    }
}
