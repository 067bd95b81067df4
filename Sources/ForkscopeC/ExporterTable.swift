import CForkscope
import CPosix
import ForkSafety
import Glibc
import TraceTransport

/// One exporter behind a handle: the writer (buffer, flush thread,
/// transport, fork participant) of this process.
final class Exporter: @unchecked Sendable {
    let writer: TraceWriter

    init(writer: TraceWriter) { self.writer = writer }

    var participant: ForkParticipant { writer.transport.participant }
}

/// Handles, not pointers: a handle is `(generation << 32) | (index + 1)`.
/// A slot's generation grows each time it is reused, so a closed handle
/// stays "closed" (never someone else's exporter) and a handle this
/// process never issued is recognised. The state word a signal handler
/// reads lives in C (`forkscope_slots.h`); the Swift objects live here,
/// under `lock`.
///
/// Fork: the host's `before` stage takes `lock` and holds it across fork()
/// (as the registry lock is held), so no thread is mid-lookup when the
/// child is made; the child re-initialises it. After a fork that bypassed
/// the stages, the first call in the child re-initialises it too (fork
/// counter), since a thread of the parent may have held it.
enum ExporterTable {
    static let lock = Lock()
    nonisolated(unsafe) private static var exporters = [Exporter?](repeating: nil, count: Int(FKSC_SLOT_COUNT))
    /// The fork count this process's lock is known good for.
    nonisolated(unsafe) private static let forkCountSeen: UnsafeMutablePointer<UInt64> = {
        _ = fks_install_fork_counter()
        let word = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        word.initialize(to: fks_fork_count())
        return word
    }()

    private static func decode(_ handle: UInt64) -> (index: Int, generation: UInt64)? {
        let index = handle & 0xFFFF_FFFF
        let generation = handle >> 32
        guard index >= 1, index <= UInt64(FKSC_SLOT_COUNT), generation >= 1 else { return nil }
        return (Int(index - 1), generation)
    }

    /// Takes the lock, first repairing it if this process is a child of a
    /// fork that bypassed the stages.
    private static func withLock<T>(_ body: () throws(ABIFailure) -> T) throws(ABIFailure) -> T {
        recoverAfterUnhookedFork()
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    static func recoverAfterUnhookedFork() {
        let now = fks_fork_count()
        var seen = fks_load_acquire_u64(forkCountSeen)
        guard seen != now, fks_cas_u64(forkCountSeen, &seen, now) else { return }
        lock.reinitializeInChild()
        fksc_slots_forget_users()
    }

    /// In the child stage of a hooked fork (the lock was held across it).
    static func reinitializeInChild() {
        lock.reinitializeInChild()
        fksc_slots_forget_users()
        fks_store_release_u64(forkCountSeen, fks_fork_count())
    }

    static func insert(_ exporter: Exporter) throws(ABIFailure) -> UInt64 {
        try withLock { () throws(ABIFailure) -> UInt64 in
            // A slot whose generation would no longer fit the handle's 32
            // bits is retired, so no handle is ever issued twice.
            guard let index = exporters.indices.first(where: {
                exporters[$0] == nil && fksc_slot_state(UInt32($0)) >> 1 < UInt64(UInt32.max)
            }) else {
                throw ABIFailure(FORKSCOPE_E_LIMIT, "\(FKSC_SLOT_COUNT) exporters are open in this process; close one first")
            }
            let generation = (fksc_slot_state(UInt32(index)) >> 1) + 1
            exporters[index] = exporter
            fksc_slot_open(UInt32(index), generation, exporter.participant.cancellation.signalSafeState)
            return generation << 32 | UInt64(index + 1)
        }
    }

    /// The exporter behind `handle`, or why there is none.
    static func lookup(_ handle: UInt64) throws(ABIFailure) -> Exporter {
        guard let (index, generation) = decode(handle) else { throw badHandle(handle) }
        return try withLock { () throws(ABIFailure) -> Exporter in
            let state = fksc_slot_state(UInt32(index))
            if state == (generation << 1 | 1), let exporter = exporters[index] { return exporter }
            throw (state >> 1) >= generation ? closed(handle) : badHandle(handle)
        }
    }

    /// Removes `handle` from the table (a second remove fails as closed),
    /// waiting for any signal-safe cancel still inside it.
    static func remove(_ handle: UInt64) throws(ABIFailure) -> Exporter {
        guard let (index, generation) = decode(handle) else { throw badHandle(handle) }
        let exporter = try withLock { () throws(ABIFailure) -> Exporter in
            let state = fksc_slot_state(UInt32(index))
            guard state == (generation << 1 | 1), let exporter = exporters[index] else {
                throw (state >> 1) >= generation ? closed(handle) : badHandle(handle)
            }
            exporters[index] = nil
            fksc_slot_close(UInt32(index))
            return exporter
        }
        return exporter
    }

    private static func badHandle(_ handle: UInt64) -> ABIFailure {
        ABIFailure(FORKSCOPE_E_BAD_HANDLE, handle == 0 ? "the exporter handle is 0 (never valid)" : "exporter handle \(handle) was never issued by this process")
    }

    private static func closed(_ handle: UInt64) -> ABIFailure {
        ABIFailure(FORKSCOPE_E_CLOSED, "exporter handle \(handle) is closed")
    }
}
