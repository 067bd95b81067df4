import CPosix
import Glibc

/// The ring's append-only string table: hook names, error texts and service
/// names are stored once and events carry their offsets, so a 64-byte slot
/// stays enough. Entries are `[u32 length][u32 hash][bytes][pad to 8]`; an
/// open-addressing index of u32 (offset / 8 + 1) finds an existing entry, so
/// every process interning "before_fork" gets the same offset.
///
/// Lock-free: space is reserved with fetch-add on the cursor, the entry is
/// written, then published in the index by compare-and-swap. Two processes
/// racing on a new string may both append; the loser's bytes stay unused.
@usableFromInline
struct StringTable: @unchecked Sendable {
    let base: UnsafeMutableRawPointer
    let strings: UnsafeMutableRawPointer
    let index: UnsafeMutableRawPointer
    let capacity: UInt64
    let indexMask: UInt64

    /// Offset 0 is the empty string; this offset reads "<string table full>".
    static let fullOffset: UInt64 = 8
    static let fullText = "<string table full>"
    /// Bytes taken by the two reserved entries written at creation.
    static var reservedBytes: UInt64 { 8 + entrySize(UInt64(fullText.utf8.count)) }

    static func entrySize(_ length: UInt64) -> UInt64 { 8 + ((length + 7) & ~7) }

    init(base: UnsafeMutableRawPointer, layout: RingFormat.Layout) {
        self.base = base
        strings = base + Int(layout.stringsOffset)
        index = base + Int(layout.stringIndexOffset)
        capacity = layout.stringsCapacity
        indexMask = layout.stringIndexSlots - 1
    }

    /// Writes the reserved entries of a new ring.
    func initialize() {
        strings.storeBytes(of: UInt64(0), as: UInt64.self)  // "" at offset 0
        let full = Array(Self.fullText.utf8)
        full.withUnsafeBytes { write(at: Self.fullOffset, bytes: $0, hash: Self.hash($0)) }
        fks_store_release_u64(base + RingFormat.Header.stringsUsed, Self.reservedBytes)
    }

    static func hash(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var h: UInt32 = 2_166_136_261  // FNV-1a
        for b in bytes { h = (h ^ UInt32(b)) &* 16_777_619 }
        return h
    }

    func intern(_ string: String) -> UInt64 {
        var string = string
        return string.withUTF8 { intern(bytes: UnsafeRawBufferPointer($0)) }
    }

    func intern(bytes input: UnsafeRawBufferPointer) -> UInt64 {
        if input.isEmpty { return 0 }
        let bytes = UnsafeRawBufferPointer(rebasing: input.prefix(Int(RingFormat.maxStringLength)))
        let hash = Self.hash(bytes)
        var appended: UInt64? = nil
        var slot = UInt64(hash) & indexMask
        for _ in 0...indexMask {
            let cell = index + Int(slot) * 4
            var seen = fks_load_acquire_u32(cell)
            if seen == 0 {
                if appended == nil { appended = append(bytes, hash: hash) }
                guard let offset = appended else { return Self.fullOffset }
                var empty: UInt32 = 0
                if fks_cas_u32(cell, &empty, UInt32(offset / 8 + 1)) { return offset }
                seen = empty  // another process won this cell: is it our string?
            }
            let offset = UInt64(seen - 1) * 8
            if matches(at: offset, bytes, hash: hash) { return offset }
            slot = (slot + 1) & indexMask
        }
        _ = fks_fetch_add_relaxed_u64(base + RingFormat.Header.stringTableFullDrops, 1)
        return Self.fullOffset
    }

    private func append(_ bytes: UnsafeRawBufferPointer, hash: UInt32) -> UInt64? {
        let size = Self.entrySize(UInt64(bytes.count))
        let offset = fks_fetch_add_u64(base + RingFormat.Header.stringsUsed, size)
        guard offset + size <= capacity else {
            _ = fks_fetch_add_relaxed_u64(base + RingFormat.Header.stringTableFullDrops, 1)
            return nil
        }
        write(at: offset, bytes: bytes, hash: hash)
        return offset
    }

    private func write(at offset: UInt64, bytes: UnsafeRawBufferPointer, hash: UInt32) {
        let entry = strings + Int(offset)
        entry.storeBytes(of: UInt32(bytes.count), as: UInt32.self)
        entry.storeBytes(of: hash, toByteOffset: 4, as: UInt32.self)
        if let source = bytes.baseAddress { (entry + 8).copyMemory(from: source, byteCount: bytes.count) }
        // The index CAS that follows (acq_rel) publishes these bytes.
    }

    private func matches(at offset: UInt64, _ bytes: UnsafeRawBufferPointer, hash: UInt32) -> Bool {
        guard offset + 8 + UInt64(bytes.count) <= capacity else { return false }
        let entry = strings + Int(offset)
        guard entry.load(as: UInt32.self) == UInt32(bytes.count),
              entry.load(fromByteOffset: 4, as: UInt32.self) == hash else { return false }
        return bytes.isEmpty || memcmp(entry + 8, bytes.baseAddress!, bytes.count) == 0
    }
}
