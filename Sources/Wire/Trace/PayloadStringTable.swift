/// The string table of a v0.5 payload while it is being built: each string
/// once, in first-use order, already encoded as the MessagePack `str`
/// entries the payload carries, with an index from string to position.
///
/// Not a `[String: UInt32]`: an exporter interns a dozen strings per span
/// on the request path, and Swift's seeded SipHash plus the dictionary's
/// generic machinery cost ~40 ns a lookup there. This table hashes the
/// UTF-8 bytes with a multiply-mix and compares them word by word against
/// the encoded table itself, so no `String` is kept or retained.
struct PayloadStringTable: Sendable {
    /// The entries as they go on the wire (entry 0 is "").
    private(set) var encoded: [UInt8] = [0xa0]
    private(set) var count = 1
    /// Where entry i's UTF-8 bytes start in `encoded`, and how many there are.
    private var starts: [Int] = [1]
    private var lengths: [Int] = [0]
    /// Open addressing (linear probing): entry index + 1, 0 when free.
    private var slots: [UInt32]
    private var mask: Int

    init() {
        slots = [UInt32](repeating: 0, count: 64)
        mask = 63
        insertSlot(hash: Self.hash(UnsafeRawBufferPointer(start: nil, count: 0)), entry: 0)
    }

    mutating func index(of string: String) -> UInt32 {
        if let found = string.utf8.withContiguousStorageIfAvailable({ index(utf8: UnsafeRawBufferPointer($0)) }) { return found }
        var copy = string
        return copy.withUTF8 { index(utf8: UnsafeRawBufferPointer($0)) }
    }

    mutating func index(utf8: UnsafeRawBufferPointer) -> UInt32 {
        let hash = Self.hash(utf8)
        // The probe reads the arrays through pointers: it runs a dozen
        // times per span, and bounds checks were a good part of it.
        // Returns the entry, or -1 - the free slot where it belongs.
        let found: Int = slots.withUnsafeBufferPointer { slots in
            lengths.withUnsafeBufferPointer { lengths in
                starts.withUnsafeBufferPointer { starts in
                    encoded.withUnsafeBytes { table in
                        var slot = Int(truncatingIfNeeded: hash) & mask
                        while true {
                            let occupant = slots[slot]
                            if occupant == 0 { return -1 - slot }
                            let entry = Int(occupant &- 1)
                            if lengths[entry] == utf8.count, Self.equal(table.baseAddress! + starts[entry], utf8) { return entry }
                            slot = (slot + 1) & mask
                        }
                    }
                }
            }
        }
        if found >= 0 { return UInt32(found) }
        let entry = count
        var header = MessagePackWriter()
        header.writeStringHeader(count: utf8.count)
        encoded.append(contentsOf: header.bytes)
        starts.append(encoded.count)
        lengths.append(utf8.count)
        encoded.append(contentsOf: utf8)
        count += 1
        slots[-1 - found] = UInt32(entry + 1)
        // Keep the load under one half so probes stay short.
        if count * 2 > slots.count { grow() }
        return UInt32(entry)
    }

    /// Whether the `utf8.count` bytes at `entry` are `utf8`: word by word,
    /// not a `memcmp` call, for the short strings spans are made of.
    @inline(__always)
    private static func equal(_ entry: UnsafeRawPointer, _ utf8: UnsafeRawBufferPointer) -> Bool {
        let count = utf8.count
        guard let other = utf8.baseAddress else { return true }
        var offset = 0
        while offset + 8 <= count {
            if entry.loadUnaligned(fromByteOffset: offset, as: UInt64.self) != other.loadUnaligned(fromByteOffset: offset, as: UInt64.self) {
                return false
            }
            offset += 8
        }
        while offset < count {
            if entry.load(fromByteOffset: offset, as: UInt8.self) != other.load(fromByteOffset: offset, as: UInt8.self) { return false }
            offset += 1
        }
        return true
    }

    private mutating func grow() {
        slots = [UInt32](repeating: 0, count: slots.count * 2)
        mask = slots.count - 1
        encoded.withUnsafeBytes { table in
            for entry in 0..<count {
                let bytes = UnsafeRawBufferPointer(rebasing: table[starts[entry]..<(starts[entry] + lengths[entry])])
                insertSlot(hash: Self.hash(bytes), entry: entry)
            }
        }
    }

    private mutating func insertSlot(hash: UInt64, entry: Int) {
        var slot = Int(truncatingIfNeeded: hash) & mask
        while slots[slot] != 0 { slot = (slot + 1) & mask }
        slots[slot] = UInt32(entry + 1)
    }

    /// Per-process random seed, so a peer who controls tag values (a URL)
    /// cannot precompute colliding strings.
    private static let seed: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next() | 1
    }()

    /// 8 bytes at a time, each word mixed by a multiply and a fold
    /// (wyhash-style): a few ns for the short names and tags spans carry.
    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        var state = seed ^ UInt64(bytes.count)
        var offset = 0
        while offset + 8 <= bytes.count {
            state = mix(state ^ bytes.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            offset += 8
        }
        if offset < bytes.count {
            var tail: UInt64 = 0
            for position in offset..<bytes.count { tail = tail << 8 | UInt64(bytes[position]) }
            state = mix(state ^ tail)
        }
        return mix(state)
    }

    @inline(__always)
    static func mix(_ value: UInt64) -> UInt64 {
        let product = value.multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
        return product.high ^ product.low
    }
}
