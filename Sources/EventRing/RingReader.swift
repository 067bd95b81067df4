import CPosix
import Glibc
import Posix

/// One decoded event.
public struct Event: Sendable, Equatable {
    public var lane: Int
    public var sequence: UInt64
    /// Monotonic nanoseconds (see `RingHeader.realtime`).
    public var time: UInt64
    public var pid: Int32
    public var tid: Int32
    public var generation: UInt32
    public var rawKind: UInt16
    public var flags: UInt16
    public var a0: UInt64, a1: UInt64, a2: UInt64, a3: UInt64

    /// nil for a kind this reader does not know (written by a newer writer).
    public var kind: EventKind? { EventKind(rawValue: rawKind) }
    public var args: [UInt64] { [a0, a1, a2, a3] }
}

/// What became of each sequence number a lane's head advanced over.
/// `ok + overwritten + torn + pending + abandoned == headAdvance`, exactly.
public struct LaneAccounting: Sendable, Equatable {
    public var lane = 0
    /// Read and validated.
    public var ok: UInt64 = 0
    /// Lapped by the writer before the reader got to it.
    public var overwritten: UInt64 = 0
    /// Changed while being copied (a writer lapped the reader mid-copy).
    public var torn: UInt64 = 0
    /// Reserved or being written by a live writer; may still commit.
    public var pending: UInt64 = 0
    /// Never committed, and its writer is dead.
    public var abandoned: UInt64 = 0
    /// How far the head moved since this reader started.
    public var headAdvance: UInt64 = 0
    /// Events the writer dropped because their slot was still held.
    public var busyDrops: UInt64 = 0
    public var ownerPid: Int32 = 0
    public var ownerStart: UInt64 = 0
    public var claims: UInt64 = 0

    public var isBalanced: Bool { ok &+ overwritten &+ torn &+ pending &+ abandoned == headAdvance }
}

/// Ring-wide accounting: per lane, plus the drops counted in the header.
public struct RingAccounting: Sendable, Equatable {
    public var lanes: [LaneAccounting]
    public var laneExhausted: UInt64
    public var stringTableFull: UInt64

    public var total: LaneAccounting {
        lanes.reduce(into: LaneAccounting(lane: -1)) { t, l in
            t.ok += l.ok; t.overwritten += l.overwritten; t.torn += l.torn; t.pending += l.pending
            t.abandoned += l.abandoned; t.headAdvance += l.headAdvance; t.busyDrops += l.busyDrops; t.claims += l.claims
        }
    }
}

/// Reads a ring: a live one (mapped shared, read-only) or a saved copy
/// (loaded into private memory). The file is untrusted: the header is
/// validated before any address is computed from it, and every string
/// offset an event carries is bounds-checked when resolved.
public final class RingReader {
    public enum Mode: Sendable { case live, snapshot }

    public let path: String
    public let header: RingHeader
    public let mode: Mode
    private let region: MappedRegion
    private let fd: FileDescriptor?
    private var cursors: [Cursor]
    private var accounting: [LaneAccounting]

    struct Cursor {
        var next: UInt64 = 0
        var started = false
        /// Sequences seen uncommitted with a live writer, to look at again.
        var pending: [UInt64] = []
    }

    /// Opens `path`. `.live` requires a ring we own (or root); `.snapshot`
    /// copies the file, so a later change to it cannot affect this reader.
    public init(path: String, mode: Mode = .live) throws(RingError) {
        self.path = path
        self.mode = mode
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) } catch {
            if error.errno == .tooManySymbolicLinks { throw .insecure(path: path, problem: "it is a symbolic link") }
            throw .system(error)
        }
        var keep = false
        defer { if !keep { try? fd.close() } }
        let status: FileStatus
        do throws(SystemError) { status = try fd.status() } catch { throw .system(error.at(path)) }
        if !status.isRegularFile { throw .invalid(path: path, problem: "not a regular file") }
        if mode == .live, status.ownerID != geteuid(), geteuid() != 0 {
            throw .notOwned(path: path, owner: status.ownerID, us: geteuid())
        }
        header = try RingHeader.read(path: path, fileSize: UInt64(status.size)) { (buffer) throws(RingError) in
            do throws(SystemError) { return try fd.read(fromAbsoluteOffset: 0, into: buffer) } catch { throw .system(error.at(path)) }
        }
        let length = Int(header.layout.fileSize)
        do throws(SystemError) {
            switch mode {
            case .live:
                region = try MappedRegion.map(fd, length: length, writable: false)
                self.fd = fd
                keep = true
            case .snapshot:
                region = try MappedRegion.anonymous(length: length, shared: false)
                var done = 0
                while done < length {
                    let n = try fd.read(fromAbsoluteOffset: Int64(done), into: UnsafeMutableRawBufferPointer(start: region.base + done, count: length - done))
                    if n == 0 { break }
                    done += n
                }
                if done < length { throw SystemError("read", path: path, .invalidArgument) }
                self.fd = nil
            }
        } catch { throw .system(error.at(path)) }
        cursors = Array(repeating: Cursor(), count: header.laneCount)
        accounting = (0..<header.laneCount).map { LaneAccounting(lane: $0) }
    }

    deinit {
        try? region.unmap()
        try? fd?.close()
    }

    /// Appends every event committed since the previous call (all of the
    /// ring's window on the first call) to `events`, in lane order, and
    /// returns the cumulative accounting. Use `RingReader.merge` for time order.
    @discardableResult
    public func readNew(into events: inout [Event]) throws(RingError) -> RingAccounting {
        if let fd {
            // A live ring truncated under us would fault on access: check first.
            let size: Int64
            do throws(SystemError) { size = try fd.status().size } catch { throw .system(error.at(path)) }
            if UInt64(size) < header.layout.fileSize {
                throw .invalid(path: path, problem: "the file shrank to \(size) bytes while attached")
            }
        }
        for lane in 0..<header.laneCount { readLane(lane, into: &events) }
        return RingAccounting(
            lanes: accounting,
            laneExhausted: fks_load_relaxed_u64(region.base + RingFormat.Header.laneExhaustedDrops),
            stringTableFull: fks_load_relaxed_u64(region.base + RingFormat.Header.stringTableFullDrops)
        )
    }

    /// Sorts events into one timeline (ties by lane, then sequence).
    public static func merge(_ events: inout [Event]) {
        events.sort { ($0.time, $0.lane, $0.sequence) < ($1.time, $1.lane, $1.sequence) }
    }

    private enum Verdict { case ok, overwritten, torn, uncommitted }

    private func readLane(_ lane: Int, into events: inout [Event]) {
        let entry = region.base + Int(header.layout.laneTableOffset) + lane * RingFormat.laneEntrySize
        let head = fks_load_acquire_u64(entry + RingFormat.Lane.head)
        var account = accounting[lane]
        var cursor = cursors[lane]
        account.ownerPid = Int32(bitPattern: fks_load_acquire_u32(entry + RingFormat.Lane.ownerPid))
        account.ownerStart = fks_load_acquire_u64(entry + RingFormat.Lane.ownerStart)
        account.claims = fks_load_relaxed_u64(entry + RingFormat.Lane.claims)
        account.busyDrops = fks_load_relaxed_u64(entry + RingFormat.Lane.busyDrops)
        let floor = fks_load_acquire_u64(entry + RingFormat.Lane.reclaimFloor)
        let slotsPerLane = header.slotsPerLane
        let windowStart = head > slotsPerLane ? head - slotsPerLane : 0
        let slots = region.base + Int(header.layout.lanesOffset) + lane * Int(slotsPerLane) * RingFormat.slotSize
        var ownerAlive: Bool? = nil
        func isOwnerAlive() -> Bool {
            if let ownerAlive { return ownerAlive }
            let alive = header.isFromThisBoot && account.ownerPid > 0
                && ProcessControl.isAlive(pid: account.ownerPid, startTime: account.ownerStart)
            ownerAlive = alive
            return alive
        }

        if !cursor.started {
            // A fresh reader accounts from the lane's first sequence.
            cursor.started = true
            cursor.next = 0
        }
        if head < cursor.next { cursor.next = head }  // a hostile or re-created file: never count backwards

        // Sequences left uncommitted last time: committed since, lapped, or their writer died.
        var stillPending: [UInt64] = []
        for sequence in cursor.pending {
            account.pending -= 1
            if sequence < windowStart { account.overwritten += 1; continue }
            switch classify(sequence, slots: slots, into: &events, lane: lane) {
            case .ok: account.ok += 1
            case .overwritten: account.overwritten += 1
            case .torn: account.torn += 1
            case .uncommitted:
                if sequence >= floor && isOwnerAlive() { stillPending.append(sequence); account.pending += 1 }
                else { account.abandoned += 1 }
            }
        }
        cursor.pending = stillPending

        if cursor.next < windowStart {
            account.overwritten += windowStart - cursor.next
            cursor.next = windowStart
        }
        var sequence = cursor.next
        while sequence < head {
            switch classify(sequence, slots: slots, into: &events, lane: lane) {
            case .ok: account.ok += 1
            case .overwritten: account.overwritten += 1
            case .torn: account.torn += 1
            case .uncommitted:
                // Below the reclaim floor the writer was a previous, dead owner.
                if sequence >= floor && isOwnerAlive() { cursor.pending.append(sequence); account.pending += 1 }
                else { account.abandoned += 1 }
            }
            sequence += 1
        }
        account.headAdvance = head
        cursor.next = head
        cursors[lane] = cursor
        accounting[lane] = account
    }

    @inline(__always)
    private func classify(_ sequence: UInt64, slots: UnsafeMutableRawPointer, into events: inout [Event], lane: Int) -> Verdict {
        let slot = slots + Int(sequence & (header.slotsPerLane - 1)) * RingFormat.slotSize
        let committed = RingFormat.committedStamp(sequence)
        let stamp = fks_load_acquire_u64(slot)
        if stamp > committed { return .overwritten }
        if stamp != committed { return .uncommitted }
        let event = Event(
            lane: lane, sequence: sequence,
            time: slot.load(fromByteOffset: RingFormat.Slot.time, as: UInt64.self),
            pid: slot.load(fromByteOffset: RingFormat.Slot.pid, as: Int32.self),
            tid: slot.load(fromByteOffset: RingFormat.Slot.tid, as: Int32.self),
            generation: slot.load(fromByteOffset: RingFormat.Slot.generation, as: UInt32.self),
            rawKind: slot.load(fromByteOffset: RingFormat.Slot.kind, as: UInt16.self),
            flags: slot.load(fromByteOffset: RingFormat.Slot.flags, as: UInt16.self),
            a0: slot.load(fromByteOffset: RingFormat.Slot.args, as: UInt64.self),
            a1: slot.load(fromByteOffset: RingFormat.Slot.args + 8, as: UInt64.self),
            a2: slot.load(fromByteOffset: RingFormat.Slot.args + 16, as: UInt64.self),
            a3: slot.load(fromByteOffset: RingFormat.Slot.args + 24, as: UInt64.self)
        )
        // Seqlock: the payload loads above happen before this re-check.
        fks_fence_acquire()
        if fks_load_relaxed_u64(slot) != stamp { return .torn }
        events.append(event)
        return .ok
    }

    /// The string at `offset` in the string table, or nil when the offset
    /// or the entry it points at is out of bounds (a hostile file).
    public func string(at offset: UInt64) -> String? {
        let layout = header.layout
        let used = min(fks_load_acquire_u64(region.base + RingFormat.Header.stringsUsed), layout.stringsCapacity)
        guard offset % UInt64(RingFormat.stringAlignment) == 0, offset < used, used - offset >= 8 else { return nil }
        let entry = region.base + Int(layout.stringsOffset + offset)
        let length = UInt64(entry.load(as: UInt32.self))
        guard length <= UInt64(RingFormat.maxStringLength), length <= used - offset - 8 else { return nil }
        return String(decoding: UnsafeRawBufferPointer(start: entry + 8, count: Int(length)), as: UTF8.self)
    }

    /// Copies the ring's bytes as they are now (for `record`).
    public func copyBytes() -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: region.base, count: region.length)
    }
}
