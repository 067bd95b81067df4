import CPosix

/// A recording: events read from another ring written into a new ring file,
/// each keeping its own pid, tid, generation and time, so a capture longer
/// than the source ring's window is read, validated, dumped, exported and
/// replayed like any ring. Each recorded process (pid, start time) gets a
/// lane of its own; string arguments are re-interned in the new table.
///
/// One writer (the recording process): slots are written in order with the
/// same stamp protocol as `RingWriter.publish`, so readers need nothing new.
public final class RingRecording {
    public let ring: Ring
    private var lanes: [LaneKey: Int] = [:]
    private struct LaneKey: Hashable { let pid: Int32; let start: UInt64 }

    /// Events not kept because every lane was taken by another process.
    public private(set) var dropped = 0
    public private(set) var recorded = 0

    /// `source`'s clock pair becomes the recording's, so event times keep
    /// their offsets from the source ring's creation.
    public init(ring: Ring, clockOf source: RingHeader) {
        self.ring = ring
        ring.region.base.storeBytes(of: source.createdMonotonic, toByteOffset: RingFormat.Header.createdMonotonic, as: UInt64.self)
        ring.region.base.storeBytes(of: source.createdRealtime, toByteOffset: RingFormat.Header.createdRealtime, as: UInt64.self)
    }

    /// Appends `event`; `ownerStart` is its process's start time (0 when
    /// unknown); `string` resolves the source ring's string offsets.
    @discardableResult
    public func append(_ event: Event, ownerStart: UInt64, string: (UInt64) -> String?) -> Bool {
        let writer = ring.writer
        let key = LaneKey(pid: event.pid, start: ownerStart)
        let lane: Int
        if let known = lanes[key] {
            lane = known
        } else {
            guard lanes.count < writer.laneCount else {
                dropped += 1
                return false
            }
            lane = lanes.count
            lanes[key] = lane
            let entry = writer.laneTable + lane * RingFormat.laneEntrySize
            fks_store_release_u64(entry + RingFormat.Lane.ownerStart, ownerStart)
            _ = fks_fetch_add_u64(entry + RingFormat.Lane.claims, 1)
            fks_store_release_u32(entry, UInt32(bitPattern: event.pid))
        }
        var args = event.args
        if let kind = event.kind {
            for (index, argument) in kind.arguments.enumerated() where argument.type == .string {
                args[index] = writer.intern(string(args[index]) ?? "<bad string offset \(args[index])>")
            }
        }
        let entry = writer.laneTable + lane * RingFormat.laneEntrySize
        let sequence = fks_fetch_add_u64(entry + RingFormat.Lane.head, 1)
        let slot = writer.lanes + (lane &* Int(writer.slotsPerLane) &+ Int(sequence & writer.slotMask)) &* RingFormat.slotSize
        fks_store_relaxed_u64(slot, RingFormat.writingStamp(sequence))
        fks_fence_release()
        slot.storeBytes(of: event.time, toByteOffset: RingFormat.Slot.time, as: UInt64.self)
        slot.storeBytes(of: UInt32(bitPattern: event.pid), toByteOffset: RingFormat.Slot.pid, as: UInt32.self)
        slot.storeBytes(of: UInt32(bitPattern: event.tid), toByteOffset: RingFormat.Slot.tid, as: UInt32.self)
        slot.storeBytes(of: event.generation, toByteOffset: RingFormat.Slot.generation, as: UInt32.self)
        slot.storeBytes(of: event.rawKind, toByteOffset: RingFormat.Slot.kind, as: UInt16.self)
        slot.storeBytes(of: event.flags, toByteOffset: RingFormat.Slot.flags, as: UInt16.self)
        for (index, value) in args.enumerated() {
            slot.storeBytes(of: value, toByteOffset: RingFormat.Slot.args + index * 8, as: UInt64.self)
        }
        fks_store_release_u64(slot, RingFormat.committedStamp(sequence))
        recorded += 1
        return true
    }
}
