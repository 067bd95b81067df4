import CPosix
import Glibc
import Posix

/// Why `publish` did not store an event. Every drop is counted in the ring
/// itself, so a reader can show it: nothing is lost silently.
public enum DropCause: Sendable, Equatable {
    /// Every lane was owned by a live process (header counter).
    case laneExhausted
    /// The slot was still held by a writer that never committed (lane counter).
    case slotBusy
}

/// Publishes events into a mapped ring. A trivial value (raw pointers and
/// integers, no reference counting), so copying it into a signal handler, a
/// C caller or a forked child costs nothing and touches no Swift runtime.
///
/// `publish` never blocks, never allocates and takes no lock: it reserves a
/// sequence number with fetch-add on its lane's head, claims the slot's
/// stamp only if it holds the expected previous value (so a signal handler
/// re-entering on the same lane, or a stalled writer, cannot be corrupted),
/// stores the payload and release-stores the even stamp.
public struct RingWriter: @unchecked Sendable {
    @usableFromInline let base: UnsafeMutableRawPointer
    /// Process-local state (malloc'ed once per opened ring, copied into a
    /// forked child with the rest of the heap): word 0 is the cached lane
    /// `(forkCount << 16) | (lane + 1)`, word 1 the pid that claimed it.
    @usableFromInline let local: UnsafeMutableRawPointer
    @usableFromInline let laneCount: Int
    @usableFromInline let slotMask: UInt64
    @usableFromInline let slotsPerLane: UInt64
    @usableFromInline let laneTable: UnsafeMutableRawPointer
    @usableFromInline let lanes: UnsafeMutableRawPointer
    @usableFromInline let strings: StringTable

    init(base: UnsafeMutableRawPointer, layout: RingFormat.Layout) {
        self.base = base
        local = UnsafeMutableRawPointer.allocate(byteCount: 64, alignment: 64)
        local.initializeMemory(as: UInt64.self, repeating: 0, count: 8)
        laneCount = Int(layout.laneCount)
        slotsPerLane = layout.slotsPerLane
        slotMask = layout.slotsPerLane - 1
        laneTable = base + Int(layout.laneTableOffset)
        lanes = base + Int(layout.lanesOffset)
        strings = StringTable(base: base, layout: layout)
    }

    /// Publishes with the current monotonic time.
    @inline(__always) @discardableResult
    public func publish(
        _ kind: EventKind, generation: UInt32 = 0,
        _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0
    ) -> DropCause? {
        publish(rawKind: kind.rawValue, at: Clock.monotonicNanoseconds(), generation: generation, a0, a1, a2, a3)
    }

    /// Publishes with a time the caller already has (or 0): the publish
    /// itself then reads no clock.
    @inline(__always) @discardableResult
    public func publish(
        _ kind: EventKind, at time: UInt64, generation: UInt32 = 0,
        _ a0: UInt64 = 0, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0
    ) -> DropCause? {
        publish(rawKind: kind.rawValue, at: time, generation: generation, a0, a1, a2, a3)
    }

    /// The raw form, for the C ABI (kinds checked by the caller).
    @inline(__always) @discardableResult
    public func publish(
        rawKind: UInt16, at time: UInt64, generation: UInt32,
        _ a0: UInt64, _ a1: UInt64, _ a2: UInt64, _ a3: UInt64
    ) -> DropCause? {
        let forks = fks_fork_count()
        var cached = fks_load_relaxed_u64(local)
        if cached >> 16 != forks || cached & 0xFFFF == 0 {
            // First publish in this process (or first after any fork): claim a lane.
            cached = claimLane(forkCount: forks)
            if cached == 0 {
                _ = fks_fetch_add_relaxed_u64(base + RingFormat.Header.laneExhaustedDrops, 1)
                return .laneExhausted
            }
        }
        let lane = Int(cached & 0xFFFF) - 1
        let entry = laneTable + lane * RingFormat.laneEntrySize
        let sequence = fks_fetch_add_u64(entry + RingFormat.Lane.head, 1)
        let slot = lanes + (lane &* Int(slotsPerLane) &+ Int(sequence & slotMask)) &* RingFormat.slotSize
        // Claim the slot: its stamp must be the previous occupant's
        // (sequence - slotsPerLane) committed stamp. This is a
        // compare-and-swap whose compare and swap cannot be separated by
        // another writer, so it is done as load-compare-store (a locked
        // cmpxchg costs ~5 ns here, half the publish): only the writer of
        // `sequence` expects that value (each sequence has one writer, and
        // a slot's stamps only grow), and the next writer of this slot
        // expects our own committed stamp, which does not exist yet. A
        // signal handler interrupting us between the load and the store
        // publishes other sequences; one that maps to this slot expects
        // our committed stamp too, so it drops instead of writing.
        let expected: UInt64 = sequence >= slotsPerLane ? RingFormat.committedStamp(sequence - slotsPerLane) : 0
        var seen = fks_load_acquire_u64(slot)
        if seen == expected {
            fks_store_relaxed_u64(slot, RingFormat.writingStamp(sequence))
            // The odd stamp is visible before any payload store (seqlock).
            fks_fence_release()
        } else {
            // Held by a writer that never committed. If it was a previous,
            // dead owner of this lane (its sequence is below the reclaim
            // floor), the slot is ours to take; otherwise drop, never wait.
            let floor = fks_load_acquire_u64(entry + RingFormat.Lane.reclaimFloor)
            let heldByDeadOwner = seen & 1 == 1 && (seen - 1) / 2 < floor && seen < RingFormat.writingStamp(sequence)
            if !(heldByDeadOwner && fks_cas_u64(slot, &seen, RingFormat.writingStamp(sequence))) {
                _ = fks_fetch_add_relaxed_u64(entry + RingFormat.Lane.busyDrops, 1)
                return .slotBusy
            }
        }
        #if DEBUG
        if fks_debug_stall_pid() == Int32(truncatingIfNeeded: fks_load_relaxed_u64(local + 8)) {
            // Tests: stop inside the publish, with the odd stamp visible.
            Glibc.raise(SIGSTOP)
        }
        #endif
        slot.storeBytes(of: time, toByteOffset: RingFormat.Slot.time, as: UInt64.self)
        slot.storeBytes(of: UInt32(truncatingIfNeeded: fks_load_relaxed_u64(local + 8)), toByteOffset: RingFormat.Slot.pid, as: UInt32.self)
        slot.storeBytes(of: UInt32(bitPattern: fks_cached_tid()), toByteOffset: RingFormat.Slot.tid, as: UInt32.self)
        slot.storeBytes(of: generation, toByteOffset: RingFormat.Slot.generation, as: UInt32.self)
        slot.storeBytes(of: rawKind, toByteOffset: RingFormat.Slot.kind, as: UInt16.self)
        slot.storeBytes(of: UInt16(0), toByteOffset: RingFormat.Slot.flags, as: UInt16.self)
        slot.storeBytes(of: a0, toByteOffset: RingFormat.Slot.args, as: UInt64.self)
        slot.storeBytes(of: a1, toByteOffset: RingFormat.Slot.args + 8, as: UInt64.self)
        slot.storeBytes(of: a2, toByteOffset: RingFormat.Slot.args + 16, as: UInt64.self)
        slot.storeBytes(of: a3, toByteOffset: RingFormat.Slot.args + 24, as: UInt64.self)
        // Release: the payload above is visible before the even stamp is.
        fks_store_release_u64(slot, RingFormat.committedStamp(sequence))
        return nil
    }

    /// Claims a free lane, else one whose owner is dead; returns the new
    /// cache word, or 0 when every lane belongs to a live process. The slow
    /// path, once per process: it may read /proc, but still takes no lock.
    @usableFromInline
    func claimLane(forkCount: UInt64) -> UInt64 {
        let observed = fks_load_relaxed_u64(local)
        let pid = getpid()
        let start = ProcessControl.startTime(of: pid) ?? 0
        var claimed = -1
        for lane in 0..<laneCount where claimed < 0 {
            var free: UInt32 = 0
            if fks_cas_u32(laneTable + lane * RingFormat.laneEntrySize, &free, UInt32(bitPattern: pid)) { claimed = lane }
        }
        for lane in 0..<laneCount where claimed < 0 {
            let entry = laneTable + lane * RingFormat.laneEntrySize
            var owner = fks_load_acquire_u32(entry)
            let ownerStart = fks_load_acquire_u64(entry + RingFormat.Lane.ownerStart)
            // Dead: the owner's (pid, start time) no longer runs — which
            // includes a predecessor that had our own pid before it was reused.
            let isUs = owner == UInt32(bitPattern: pid) && ownerStart == start
            if !isUs, !ProcessControl.isAlive(pid: pid_t(bitPattern: owner), startTime: ownerStart),
               fks_cas_u32(entry, &owner, UInt32(bitPattern: pid)) {
                claimed = lane
            }
        }
        guard claimed >= 0 else { return 0 }
        let entry = laneTable + claimed * RingFormat.laneEntrySize
        fks_store_release_u64(entry + RingFormat.Lane.ownerStart, start)
        fks_store_release_u64(entry + RingFormat.Lane.reclaimFloor, fks_load_acquire_u64(entry + RingFormat.Lane.head))
        _ = fks_fetch_add_u64(entry + RingFormat.Lane.claims, 1)
        fks_store_relaxed_u64(local + 8, UInt64(UInt32(bitPattern: pid)))
        let word = (forkCount << 16) | UInt64(claimed + 1)
        var seen = observed
        if fks_cas_u64(local, &seen, word) { return word }
        // Another thread of this process claimed first: give ours back.
        fks_store_release_u32(entry, 0)
        return seen
    }

    /// Interns `string` in the ring's string table; events carry the offset.
    public func intern(_ string: String) -> UInt64 { strings.intern(string) }

    /// Interns raw UTF-8 bytes (for the C ABI; no String is built).
    public func intern(bytes: UnsafeRawBufferPointer) -> UInt64 { strings.intern(bytes: bytes) }
}

