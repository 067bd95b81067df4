import CPosix
import Glibc

/// An open file descriptor. A plain value: closing is explicit, as in
/// swift-system, so a descriptor inherited across fork() is never closed by
/// a deinit the program did not ask for.
public struct FileDescriptor: RawRepresentable, Hashable, Sendable {
    public let rawValue: CInt
    public init(rawValue: CInt) { self.rawValue = rawValue }

    public static let standardInput = FileDescriptor(rawValue: 0)
    public static let standardOutput = FileDescriptor(rawValue: 1)
    public static let standardError = FileDescriptor(rawValue: 2)

    /// Opens `path`. The corresponding C function is `open`.
    public static func open(
        _ path: String, _ flags: CInt, mode: mode_t = 0, retryOnInterrupt: Bool = true
    ) throws(SystemError) -> FileDescriptor {
        try _open(path, flags, mode: mode, retryOnInterrupt: retryOnInterrupt).get("open", path: path)
    }

    @usableFromInline
    static func _open(_ path: String, _ flags: CInt, mode: mode_t, retryOnInterrupt: Bool) -> Result<FileDescriptor, Errno> {
        Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(path.withCString { system_open($0, flags, mode) })
        }.map(FileDescriptor.init(rawValue:))
    }

    /// Closes the descriptor. Not retried on `EINTR`: on Linux the
    /// descriptor is released even then, and a retry could close a reused
    /// number. The corresponding C function is `close`.
    public func close() throws(SystemError) {
        try nothingOrErrno(system_close(rawValue)).get("close")
    }

    /// Reads up to `buffer.count` bytes; 0 means end of file.
    /// The corresponding C function is `read`.
    public func read(into buffer: UnsafeMutableRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try _read(into: buffer, retryOnInterrupt: retryOnInterrupt).get("read")
    }

    @usableFromInline
    func _read(into buffer: UnsafeMutableRawBufferPointer, retryOnInterrupt: Bool) -> Result<Int, Errno> {
        Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_read(rawValue, buffer.baseAddress, buffer.count))
        }
    }

    /// Reads at `offset` without moving the file position.
    /// The corresponding C function is `pread`.
    public func read(fromAbsoluteOffset offset: Int64, into buffer: UnsafeMutableRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_pread(rawValue, buffer.baseAddress, buffer.count, off_t(offset)))
        }.get("pread")
    }

    /// Writes some of `buffer`; returns how many bytes were written.
    /// The corresponding C function is `write`.
    public func write(_ buffer: UnsafeRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_write(rawValue, buffer.baseAddress, buffer.count))
        }.get("write")
    }

    /// Writes all of `buffer`, continuing after short writes.
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            done += try write(UnsafeRawBufferPointer(rebasing: buffer[done...]))
        }
    }

    /// Writes all bytes of `text` (UTF-8).
    public func writeAll(_ text: String) throws(SystemError) {
        let bytes = Array(text.utf8)
        // withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try writeAll(raw) } }.get()
    }

    /// Reads until end of file, at most `limit` bytes.
    public func readAll(limit: Int = 1 << 26) throws(SystemError) -> [UInt8] {
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let n = try chunk.withUnsafeMutableBytes { raw in _read(into: raw, retryOnInterrupt: true) }.get("read")
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<min(n, limit - result.count)])
        }
        return result
    }

    /// Sets the file's length. The corresponding C function is `ftruncate`.
    public func truncate(to length: Int64) throws(SystemError) {
        try Posix.retryOnInterrupt(true) { nothingOrErrno(system_ftruncate(rawValue, off_t(length))) }.get("ftruncate")
    }

    /// The file's status. The corresponding C function is `fstat`.
    public func status() throws(SystemError) -> FileStatus {
        var st = stat()
        try nothingOrErrno(system_fstat(rawValue, &st)).get("fstat")
        return FileStatus(st)
    }

    /// Sets permission bits. The corresponding C function is `fchmod`.
    public func setPermissions(_ mode: mode_t) throws(SystemError) {
        try nothingOrErrno(system_fchmod(rawValue, mode)).get("fchmod")
    }

    /// Makes `target` refer to this file. The corresponding C function is `dup2`.
    public func duplicate(as target: FileDescriptor) throws(SystemError) {
        _ = try Posix.retryOnInterrupt(true) { valueOrErrno(system_dup2(rawValue, target.rawValue)) }.get("dup2")
    }

    /// Creates a pipe; both ends close on exec. The corresponding C function is `pipe2`.
    public static func pipe(flags: CInt = O_CLOEXEC) throws(SystemError) -> (read: FileDescriptor, write: FileDescriptor) {
        var fds: (CInt, CInt) = (-1, -1)
        try withUnsafeMutableBytes(of: &fds) { raw in
            nothingOrErrno(system_pipe2(raw.baseAddress!.assumingMemoryBound(to: CInt.self), flags))
        }.get("pipe2")
        return (FileDescriptor(rawValue: fds.0), FileDescriptor(rawValue: fds.1))
    }
}

/// The parts of `struct stat` this project reads.
public struct FileStatus: Sendable, Equatable {
    public var mode: mode_t
    public var ownerID: uid_t
    public var size: Int64
    public var device: UInt64
    public var inode: UInt64

    init(_ st: stat) {
        mode = st.st_mode
        ownerID = st.st_uid
        size = Int64(st.st_size)
        device = UInt64(st.st_dev)
        inode = UInt64(st.st_ino)
    }

    public var permissions: mode_t { mode & 0o7777 }
    public var isDirectory: Bool { mode & S_IFMT == S_IFDIR }
    public var isRegularFile: Bool { mode & S_IFMT == S_IFREG }
    public var isSymbolicLink: Bool { mode & S_IFMT == S_IFLNK }
}

// MARK: descriptor flags and readiness

extension FileDescriptor {
    /// Whether reads and writes return `EAGAIN` instead of blocking.
    /// The corresponding C function is `fcntl` (`F_GETFL`).
    public func isNonBlocking() throws(SystemError) -> Bool {
        try statusFlags() & O_NONBLOCK != 0
    }

    /// Turns `O_NONBLOCK` on or off, keeping the other status flags.
    /// The corresponding C function is `fcntl` (`F_GETFL`, `F_SETFL`).
    public func setNonBlocking(_ enabled: Bool = true) throws(SystemError) {
        let flags = try statusFlags()
        let wanted = enabled ? flags | O_NONBLOCK : flags & ~O_NONBLOCK
        if wanted != flags {
            try nothingOrErrno(system_fcntl(rawValue, F_SETFL, wanted)).get("fcntl(F_SETFL)")
        }
    }

    /// Whether the descriptor is closed when this process execs.
    /// The corresponding C function is `fcntl` (`F_GETFD`).
    public func closesOnExec() throws(SystemError) -> Bool {
        try descriptorFlags() & FD_CLOEXEC != 0
    }

    /// Turns `FD_CLOEXEC` on or off. A descriptor a spawned child must
    /// inherit is better handed over with a `Spawn` file action, which
    /// leaves this flag alone in the parent.
    /// The corresponding C function is `fcntl` (`F_GETFD`, `F_SETFD`).
    public func setCloseOnExec(_ enabled: Bool = true) throws(SystemError) {
        let flags = try descriptorFlags()
        let wanted = enabled ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC
        if wanted != flags {
            try nothingOrErrno(system_fcntl(rawValue, F_SETFD, wanted)).get("fcntl(F_SETFD)")
        }
    }

    func statusFlags() throws(SystemError) -> CInt {
        try valueOrErrno(system_fcntl(rawValue, F_GETFL)).get("fcntl(F_GETFL)")
    }

    func descriptorFlags() throws(SystemError) -> CInt {
        try valueOrErrno(system_fcntl(rawValue, F_GETFD)).get("fcntl(F_GETFD)")
    }

    /// Waits until this descriptor has one of `events` (`POLLIN`,
    /// `POLLOUT`) or `deadline` passes; returns the events seen, which may
    /// include `POLLHUP` and `POLLERR`, or 0 on timeout.
    /// The corresponding C function is `poll`.
    public func poll(for events: Int16, deadline: Deadline, retryOnInterrupt: Bool = true) throws(SystemError) -> Int16 {
        var fds = [pollfd(fd: rawValue, events: events, revents: 0)]
        let ready = try Posix.poll(&fds, deadline: deadline, retryOnInterrupt: retryOnInterrupt)
        return ready == 0 ? 0 : fds[0].revents
    }
}
