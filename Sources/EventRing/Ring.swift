import CPosix
import Glibc
import Posix

/// The shape of a new ring.
public struct RingConfiguration: Sendable, Equatable {
    public var laneCount: UInt32 = 64
    public var slotsPerLane: UInt32 = 4096
    public var stringBytes: UInt64 = 256 * 1024

    public init(laneCount: UInt32 = 64, slotsPerLane: UInt32 = 4096, stringBytes: UInt64 = 256 * 1024) {
        self.laneCount = laneCount
        self.slotsPerLane = slotsPerLane
        self.stringBytes = stringBytes
    }
}

/// A ring file mapped `MAP_SHARED` for writing. Forked children inherit the
/// mapping and keep publishing into it (each into a lane of its own).
public struct Ring: @unchecked Sendable {
    public let path: String
    public let region: MappedRegion
    public let writer: RingWriter

    /// Creates a new ring file: `O_CREAT|O_EXCL|O_NOFOLLOW|O_CLOEXEC`, mode
    /// 0600, inside a private directory; sized, pre-faulted and mapped.
    ///
    /// `privateDirectory: false` is for a recording the user names (any
    /// directory; the file itself is still created exclusively, 0600, never
    /// through a symlink).
    public static func create(
        at path: String, configuration: RingConfiguration = RingConfiguration(), privateDirectory: Bool = true
    ) throws(RingError) -> Ring {
        guard let layout = RingFormat.Layout(
            laneCount: UInt64(configuration.laneCount),
            slotsPerLane: UInt64(configuration.slotsPerLane),
            stringsCapacity: (configuration.stringBytes + 7) & ~7
        ) else {
            throw .invalid(path: path, problem: "unsupported shape \(configuration) (lanes 1...\(RingFormat.maxLanes), slots per lane a power of two in \(RingFormat.minSlotsPerLane)...\(RingFormat.maxSlotsPerLane))")
        }
        if privateDirectory { try SessionDirectory.checkPrivate(parentDirectory(of: path), directory: true) }
        try installForkCounter()
        let fd: FileDescriptor
        do {
            fd = try FileDescriptor.open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
        } catch { throw .system(error) }
        defer { try? fd.close() }
        let region: MappedRegion
        do throws(SystemError) {
            try fd.setPermissions(0o600)  // the umask may have removed bits; never added
            try fd.truncate(to: Int64(layout.fileSize))
            region = try MappedRegion.map(fd, length: Int(layout.fileSize), writable: true, populate: true)
        } catch {
            _ = try? FileSystem.remove(path)
            throw .system(error.at(path))
        }
        writeHeader(region.base, layout: layout)
        let writer = RingWriter(base: region.base, layout: layout)
        writer.strings.initialize()
        // Last: a reader that sees the magic sees a complete header.
        fks_fence_release()
        region.base.copyMemory(from: RingFormat.magic, byteCount: 8)
        return Ring(path: path, region: region, writer: writer)
    }

    /// Opens an existing ring for writing (a host process joining a
    /// session). The header is validated as strictly as a reader does.
    public static func open(at path: String) throws(RingError) -> Ring {
        try installForkCounter()
        try SessionDirectory.checkPrivate(path, directory: false)
        let fd: FileDescriptor
        do { fd = try FileDescriptor.open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC) } catch { throw .system(error) }
        defer { try? fd.close() }
        let size: Int64
        do throws(SystemError) { size = try fd.status().size } catch { throw .system(error.at(path)) }
        let header = try RingHeader.read(path: path, fileSize: UInt64(size)) { (buffer) throws(RingError) in
            do throws(SystemError) { return try fd.read(fromAbsoluteOffset: 0, into: buffer) } catch { throw .system(error.at(path)) }
        }
        let region: MappedRegion
        do throws(SystemError) { region = try MappedRegion.map(fd, length: Int(header.layout.fileSize), writable: true) } catch {
            throw .system(error.at(path))
        }
        return Ring(path: path, region: region, writer: RingWriter(base: region.base, layout: header.layout))
    }

    /// Unmaps the ring from this process (the file stays).
    public func unmap() { try? region.unmap() }

    static func installForkCounter() throws(RingError) {
        let rc = fks_install_fork_counter()
        if rc != 0 { throw .system(SystemError("pthread_atfork", Errno(rawValue: rc))) }
    }

    static func parentDirectory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        return slash == path.startIndex ? "/" : String(path[..<slash])
    }

    private static func writeHeader(_ base: UnsafeMutableRawPointer, layout: RingFormat.Layout) {
        typealias H = RingFormat.Header
        base.storeBytes(of: RingFormat.version, toByteOffset: H.version, as: UInt32.self)
        base.storeBytes(of: RingFormat.byteOrderMark, toByteOffset: H.byteOrder, as: UInt32.self)
        base.storeBytes(of: UInt32(RingFormat.headerSize), toByteOffset: H.headerSize, as: UInt32.self)
        base.storeBytes(of: UInt32(RingFormat.slotSize), toByteOffset: H.slotSize, as: UInt32.self)
        base.storeBytes(of: UInt32(layout.laneCount), toByteOffset: H.laneCount, as: UInt32.self)
        base.storeBytes(of: UInt32(layout.slotsPerLane), toByteOffset: H.slotsPerLane, as: UInt32.self)
        let boot = BootID.current
        withUnsafeBytes(of: boot) { (base + H.bootID).copyMemory(from: $0.baseAddress!, byteCount: 16) }
        // The clock pair, read back to back: maps ring times to wall time.
        base.storeBytes(of: Clock.monotonicNanoseconds(), toByteOffset: H.createdMonotonic, as: UInt64.self)
        base.storeBytes(of: Clock.realtimeNanoseconds(), toByteOffset: H.createdRealtime, as: UInt64.self)
        base.storeBytes(of: layout.laneTableOffset, toByteOffset: H.laneTableOffset, as: UInt64.self)
        base.storeBytes(of: layout.lanesOffset, toByteOffset: H.lanesOffset, as: UInt64.self)
        base.storeBytes(of: layout.stringsOffset, toByteOffset: H.stringsOffset, as: UInt64.self)
        base.storeBytes(of: layout.stringsCapacity, toByteOffset: H.stringsCapacity, as: UInt64.self)
        base.storeBytes(of: layout.stringIndexOffset, toByteOffset: H.stringIndexOffset, as: UInt64.self)
        base.storeBytes(of: layout.stringIndexSlots, toByteOffset: H.stringIndexSlots, as: UInt64.self)
        base.storeBytes(of: layout.fileSize, toByteOffset: H.fileSize, as: UInt64.self)
        base.storeBytes(of: UInt32(bitPattern: getpid()), toByteOffset: H.creatorPid, as: UInt32.self)
    }
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`) as 16 bytes: owner
/// liveness in a ring only means something within the boot that wrote it.
public enum BootID {
    public static var current: (UInt64, UInt64) {
        guard let bytes = try? FileSystem.readFile("/proc/sys/kernel/random/boot_id", limit: 64) else { return (0, 0) }
        var nibbles: [UInt8] = []
        for c in bytes {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): nibbles.append(c - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): nibbles.append(c - 87)
            default: continue
            }
        }
        guard nibbles.count == 32 else { return (0, 0) }
        var hi: UInt64 = 0, lo: UInt64 = 0
        for i in 0..<16 { hi = hi << 4 | UInt64(nibbles[i]) }
        for i in 16..<32 { lo = lo << 4 | UInt64(nibbles[i]) }
        return (hi, lo)
    }
}
