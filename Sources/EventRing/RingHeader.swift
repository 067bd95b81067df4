import Posix

/// A validated ring header. Every value a reader later uses to compute an
/// address was checked here against the file's real size.
public struct RingHeader: Sendable, Equatable {
    public let version: UInt32
    public let laneCount: Int
    public let slotsPerLane: UInt64
    public let bootID: (UInt64, UInt64)
    public let createdMonotonic: UInt64
    public let createdRealtime: UInt64
    public let creatorPid: Int32
    let layout: RingFormat.Layout

    public static func == (a: RingHeader, b: RingHeader) -> Bool {
        a.layout == b.layout && a.bootID == b.bootID && a.createdMonotonic == b.createdMonotonic
    }

    /// Whether the ring was written during the current boot, so that its
    /// owners' pids can be checked for liveness.
    public var isFromThisBoot: Bool { bootID == BootID.current }

    /// Maps a ring timestamp (monotonic ns) to wall-clock ns since the epoch.
    public func realtime(_ monotonic: UInt64) -> UInt64 {
        createdRealtime &+ (monotonic &- createdMonotonic)
    }

    /// Reads and validates the header; `read` fills a buffer from offset 0.
    static func read(
        path: String, fileSize: UInt64,
        _ read: (UnsafeMutableRawBufferPointer) throws(RingError) -> Int
    ) throws(RingError) -> RingHeader {
        func invalid(_ problem: String) -> RingError { .invalid(path: path, problem: problem) }
        if fileSize == 0 { throw invalid("the file is empty") }
        if fileSize < UInt64(RingFormat.headerSize) {
            throw invalid("the file is \(fileSize) bytes, shorter than the \(RingFormat.headerSize)-byte header (truncated?)")
        }
        var bytes = [UInt8](repeating: 0, count: RingFormat.headerSize)
        let got = try bytes.withUnsafeMutableBytes { raw in Result { () throws(RingError) in try read(raw) } }.get()
        if got < RingFormat.headerSize { throw invalid("could read only \(got) of the \(RingFormat.headerSize) header bytes") }
        return try bytes.withUnsafeBytes { raw in Result { () throws(RingError) in try parse(raw, path: path, fileSize: fileSize) } }.get()
    }

    static func parse(_ raw: UnsafeRawBufferPointer, path: String, fileSize: UInt64) throws(RingError) -> RingHeader {
        typealias H = RingFormat.Header
        func invalid(_ problem: String) -> RingError { .invalid(path: path, problem: problem) }
        func u32(_ offset: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self) }
        func u64(_ offset: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self) }

        if !raw.prefix(8).elementsEqual(RingFormat.magic) {
            throw invalid("wrong magic (expected \"FKSCRING\"); this is not a ring file or it is still being created")
        }
        let order = u32(H.byteOrder)
        if order != RingFormat.byteOrderMark {
            throw invalid(order == RingFormat.byteOrderMark.byteSwapped
                ? "written on a host of the other byte order" : "bad byte-order mark 0x\(String(order, radix: 16))")
        }
        let version = u32(H.version)
        if version != RingFormat.version {
            throw invalid("format version \(version); this forkscope reads version \(RingFormat.version) (use the forkscope that wrote it)")
        }
        if u32(H.headerSize) != UInt32(RingFormat.headerSize) { throw invalid("header size \(u32(H.headerSize)), expected \(RingFormat.headerSize)") }
        if u32(H.slotSize) != UInt32(RingFormat.slotSize) { throw invalid("slot size \(u32(H.slotSize)), expected \(RingFormat.slotSize)") }
        let lanes = u32(H.laneCount), slots = u32(H.slotsPerLane)
        if lanes == 0 || lanes > RingFormat.maxLanes { throw invalid("lane count \(lanes) outside 1...\(RingFormat.maxLanes)") }
        if slots < RingFormat.minSlotsPerLane || slots > RingFormat.maxSlotsPerLane || slots & (slots - 1) != 0 {
            throw invalid("slots per lane \(slots) is not a power of two in \(RingFormat.minSlotsPerLane)...\(RingFormat.maxSlotsPerLane)")
        }
        let capacity = u64(H.stringsCapacity)
        guard let layout = RingFormat.Layout(laneCount: UInt64(lanes), slotsPerLane: UInt64(slots), stringsCapacity: capacity) else {
            throw invalid("string table capacity \(capacity) outside 64...\(RingFormat.maxStringBytes) or not a multiple of 8")
        }
        let declared: [(String, Int, UInt64)] = [
            ("lane table offset", H.laneTableOffset, layout.laneTableOffset),
            ("lanes offset", H.lanesOffset, layout.lanesOffset),
            ("string index offset", H.stringIndexOffset, layout.stringIndexOffset),
            ("string index slots", H.stringIndexSlots, layout.stringIndexSlots),
            ("strings offset", H.stringsOffset, layout.stringsOffset),
            ("file size", H.fileSize, layout.fileSize),
        ]
        for (name, offset, expected) in declared where u64(offset) != expected {
            throw invalid("\(name) is \(u64(offset)), but a ring of \(lanes) lanes × \(slots) slots puts it at \(expected)")
        }
        if fileSize < layout.fileSize {
            throw invalid("the file is \(fileSize) bytes but its header describes \(layout.fileSize) (truncated?)")
        }
        return RingHeader(
            version: version, laneCount: Int(lanes), slotsPerLane: UInt64(slots),
            bootID: (u64(H.bootID), u64(H.bootID + 8)),
            createdMonotonic: u64(H.createdMonotonic), createdRealtime: u64(H.createdRealtime),
            creatorPid: Int32(bitPattern: u32(H.creatorPid)), layout: layout
        )
    }
}
