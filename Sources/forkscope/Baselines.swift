import Glibc
import Posix

/// What the ring is compared with: a `write(2)` of the same 64 bytes to a
/// pipe (drained by a second thread), and an in-memory ring behind a
/// `pthread_mutex_t` (uncontended: the cheapest a locking design gets).
enum PipeBaseline {
    static func measure(events: Int, repeats: Int) -> Double {
        guard let (read, write) = try? FileDescriptor.pipe() else { return .nan }
        defer { try? write.close(); try? read.close() }
        var drainer = pthread_t()
        let context = UnsafeMutablePointer<CInt>.allocate(capacity: 1)
        context.pointee = read.rawValue
        guard pthread_create(&drainer, nil, drainPipe, context) == 0 else { return .nan }
        var slot = [UInt8](repeating: 0xAB, count: 64)
        var best = Double.infinity
        slot.withUnsafeMutableBytes { bytes in
            for _ in 0..<repeats {
                let start = Clock.monotonicNanoseconds()
                for _ in 0..<events { _ = try? write.write(UnsafeRawBufferPointer(bytes)) }
                best = min(best, Double(Clock.monotonicNanoseconds() - start) / Double(events))
            }
        }
        try? write.close()
        pthread_join(drainer, nil)
        context.deallocate()
        return best
    }
}

/// Thread entry points are nonisolated functions in ordinary files: a
/// closure written in main.swift would be main-actor isolated and trap.
nonisolated func drainPipe(_ context: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let fd = FileDescriptor(rawValue: context!.assumingMemoryBound(to: CInt.self).pointee)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 16)
    defer { buffer.deallocate() }
    while let n = try? fd.read(into: buffer), n > 0 {}
    return nil
}

enum MutexRingBaseline {
    static func measure(events: Int, repeats: Int) -> Double {
        let slots = 65536
        let storage = UnsafeMutableRawPointer.allocate(byteCount: slots * 64, alignment: 64)
        let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
        pthread_mutex_init(lock, nil)
        defer { pthread_mutex_destroy(lock); lock.deallocate(); storage.deallocate() }
        var head = 0
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = Clock.monotonicNanoseconds()
            for i in 0..<events {
                pthread_mutex_lock(lock)
                let slot = storage + (head & (slots - 1)) * 64
                slot.storeBytes(of: UInt64(i), as: UInt64.self)
                slot.storeBytes(of: UInt64(head), toByteOffset: 8, as: UInt64.self)
                slot.storeBytes(of: UInt64(i), toByteOffset: 32, as: UInt64.self)
                head += 1
                pthread_mutex_unlock(lock)
            }
            best = min(best, Double(Clock.monotonicNanoseconds() - start) / Double(events))
        }
        return best
    }
}
