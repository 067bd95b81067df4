import Posix

/// Byte offsets of the ring file format, version 1. docs/RING-FORMAT.md is
/// the prose spec; this is the one place the numbers live.
public enum RingFormat {
    public static let magic: [UInt8] = Array("FKSCRING".utf8)
    public static let version: UInt32 = 1
    /// Written natively; a reader on a host of the other byte order sees
    /// 0x04030201 and refuses the file.
    public static let byteOrderMark: UInt32 = 0x0102_0304
    public static let headerSize = 256
    public static let slotSize = 64
    public static let laneEntrySize = 64
    public static let stringAlignment = 8
    /// Lane count and slots per lane a reader accepts: generous, but small
    /// enough that offsets computed from them cannot overflow.
    public static let maxLanes: UInt32 = 4096
    public static let minSlotsPerLane: UInt32 = 2
    public static let maxSlotsPerLane: UInt32 = 1 << 22
    public static let maxStringBytes: UInt64 = 1 << 30
    public static let maxStringLength: UInt32 = 4096

    enum Header {
        static let magic = 0              // 8 bytes
        static let version = 8            // u32
        static let byteOrder = 12         // u32
        static let headerSize = 16        // u32
        static let slotSize = 20          // u32
        static let laneCount = 24         // u32
        static let slotsPerLane = 28      // u32
        static let bootID = 32            // 16 bytes
        static let createdMonotonic = 48  // u64 ns, CLOCK_MONOTONIC
        static let createdRealtime = 56   // u64 ns, CLOCK_REALTIME, read beside it
        static let laneTableOffset = 64   // u64
        static let lanesOffset = 72       // u64
        static let stringsOffset = 80     // u64
        static let stringsCapacity = 88   // u64
        static let stringIndexOffset = 96 // u64
        static let stringIndexSlots = 104 // u64, power of two
        static let fileSize = 112         // u64
        static let creatorPid = 120       // u32
        static let flags = 124            // u32, zero in version 1
        static let stringsUsed = 128      // atomic u64: append cursor
        static let laneExhaustedDrops = 136   // atomic u64
        static let stringTableFullDrops = 144 // atomic u64
    }

    enum Lane {
        static let ownerPid = 0       // atomic u32, 0 = free
        static let ownerStart = 8     // u64 start time (ticks since boot) of the owner
        static let head = 16          // atomic u64: next sequence number to reserve
        static let claims = 24        // atomic u64: how often the lane was claimed
        static let reclaimFloor = 32  // u64: head when last claimed; odd stamps below it are a dead owner's
        static let busyDrops = 40     // atomic u64: events dropped because their slot was held
    }

    enum Slot {
        static let stamp = 0       // atomic u64: 0 never, 2s+1 writing s, 2s+2 committed s
        static let time = 8        // u64 monotonic ns
        static let pid = 16        // u32
        static let tid = 20        // u32
        static let generation = 24 // u32
        static let kind = 28       // u16
        static let flags = 30      // u16
        static let args = 32       // 4 × u64
    }

    @inline(__always) static func writingStamp(_ sequence: UInt64) -> UInt64 { sequence &* 2 &+ 1 }
    @inline(__always) static func committedStamp(_ sequence: UInt64) -> UInt64 { sequence &* 2 &+ 2 }

    /// Where each region starts for a given shape; shared by the creator and
    /// (as the expected values) by the reader's validation.
    struct Layout: Equatable {
        let laneCount: UInt64
        let slotsPerLane: UInt64
        let stringIndexSlots: UInt64
        let stringsCapacity: UInt64
        let laneTableOffset: UInt64
        let lanesOffset: UInt64
        let stringIndexOffset: UInt64
        let stringsOffset: UInt64
        let fileSize: UInt64

        /// nil when the shape overflows or is out of the accepted ranges.
        init?(laneCount: UInt64, slotsPerLane: UInt64, stringsCapacity: UInt64) {
            guard laneCount >= 1, laneCount <= UInt64(maxLanes),
                  slotsPerLane >= UInt64(minSlotsPerLane), slotsPerLane <= UInt64(maxSlotsPerLane),
                  slotsPerLane & (slotsPerLane - 1) == 0,
                  stringsCapacity >= 64, stringsCapacity <= maxStringBytes, stringsCapacity % 8 == 0
            else { return nil }
            self.laneCount = laneCount
            self.slotsPerLane = slotsPerLane
            self.stringsCapacity = stringsCapacity
            // One index slot per 32 bytes of strings, rounded up to a power of two.
            var slots: UInt64 = 64
            while slots < stringsCapacity / 32 { slots <<= 1 }
            stringIndexSlots = slots
            func pageAligned(_ x: UInt64) -> UInt64 { (x + 4095) & ~4095 }
            laneTableOffset = UInt64(headerSize)
            lanesOffset = pageAligned(laneTableOffset + laneCount * UInt64(laneEntrySize))
            stringIndexOffset = lanesOffset + laneCount * slotsPerLane * UInt64(slotSize)
            stringsOffset = pageAligned(stringIndexOffset + stringIndexSlots * 4)
            fileSize = pageAligned(stringsOffset + stringsCapacity)
        }
    }
}

/// Why a ring could not be created, opened or read: each names the file.
public enum RingError: Error, Equatable, CustomStringConvertible {
    case system(SystemError)
    case invalid(path: String, problem: String)
    case notOwned(path: String, owner: UInt32, us: UInt32)
    case insecure(path: String, problem: String)

    public var description: String {
        switch self {
        case .system(let error): return "\(error)"
        case .invalid(let path, let problem): return "\(path): not a valid forkscope ring: \(problem)"
        case .notOwned(let path, let owner, let us):
            return "\(path): owned by uid \(owner), not by us (uid \(us)); refusing it (only root may attach read-only to another user's ring)"
        case .insecure(let path, let problem): return "\(path): refusing an insecure location: \(problem)"
        }
    }
}

extension SystemError {
    /// The same failure, naming the file it happened on.
    func at(_ path: String) -> SystemError { SystemError(call, path: self.path ?? path, errno) }
}
