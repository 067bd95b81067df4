import CPosix
import Glibc

/// Path-based calls. Each error names the call and the path.
public enum FileSystem {
    /// The status of `path` itself (a symlink is not followed).
    /// The corresponding C function is `lstat`.
    public static func linkStatus(_ path: String) throws(SystemError) -> FileStatus {
        var st = stat()
        try path.withCString { nothingOrErrno(system_lstat($0, &st)) }.get("lstat", path: path)
        return FileStatus(st)
    }

    /// Creates a directory. The corresponding C function is `mkdir`.
    public static func makeDirectory(_ path: String, mode: mode_t) throws(SystemError) {
        try path.withCString { nothingOrErrno(system_mkdir($0, mode)) }.get("mkdir", path: path)
    }

    /// Removes a file. The corresponding C function is `unlink`.
    public static func remove(_ path: String) throws(SystemError) {
        try path.withCString { nothingOrErrno(system_unlink($0)) }.get("unlink", path: path)
    }

    /// Removes an empty directory. The corresponding C function is `rmdir`.
    public static func removeDirectory(_ path: String) throws(SystemError) {
        try path.withCString { nothingOrErrno(system_rmdir($0)) }.get("rmdir", path: path)
    }

    /// The names in a directory, without `.` and `..`.
    /// The corresponding C functions are `opendir` and `readdir`.
    public static func contents(ofDirectory path: String) throws(SystemError) -> [String] {
        guard let dir = path.withCString({ system_opendir($0) }) else { throw SystemError("opendir", path: path, .current) }
        defer { _ = system_closedir(dir) }
        var names: [String] = []
        while true {
            // readdir returns nil both at the end and on failure; only errno tells them apart.
            fks_set_errno(0)
            guard let entry = system_readdir(dir) else {
                let errno = Errno.current
                if errno.rawValue != 0 { throw SystemError("readdir", path: path, errno) }
                return names
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
    }

    /// The target a symbolic link holds (not resolved further).
    /// The corresponding C function is `readlink`.
    public static func readSymbolicLink(_ path: String) throws(SystemError) -> String {
        var capacity = 256
        while true {
            // readlink truncates silently: a result that fills the buffer may be cut, so grow and retry.
            let result: Result<String?, Errno> = withUnsafeTemporaryAllocation(of: CChar.self, capacity: capacity) { buffer in
                valueOrErrno(path.withCString { system_readlink($0, buffer.baseAddress!, capacity) }).map { count in
                    count < capacity
                        ? String(decoding: UnsafeRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buffer)[..<count]), as: UTF8.self)
                        : nil
                }
            }
            if let target = try result.get("readlink", path: path) { return target }
            capacity *= 4
        }
    }

    /// Creates a symbolic link at `path` holding `target`.
    /// The corresponding C function is `symlink`.
    public static func createSymbolicLink(at path: String, to target: String) throws(SystemError) {
        try path.withCString { cPath in target.withCString { nothingOrErrno(system_symlink($0, cPath)) } }
            .get("symlink", path: path)
    }

    /// Creates a new directory, mode 0700, named `prefix` plus six random
    /// characters inside `parent`; returns its path.
    /// The corresponding C function is `mkdtemp`.
    public static func makeTemporaryDirectory(in parent: String = "/tmp", prefix: String = "forkscope-") throws(SystemError) -> String {
        let pattern = parent + "/" + prefix + "XXXXXX"
        var template = Array(pattern.utf8CString)
        // On failure the template holds whatever name was last tried: report the pattern.
        guard template.withUnsafeMutableBufferPointer({ system_mkdtemp($0.baseAddress!) != nil }) else {
            throw SystemError("mkdtemp", path: pattern, .current)
        }
        return String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Whether something exists at `path` (without following a final symlink).
    public static func exists(_ path: String) -> Bool {
        (try? linkStatus(path)) != nil
    }

    /// Reads a small file whole (procfs, sysfs, configuration).
    public static func readFile(_ path: String, limit: Int = 1 << 26) throws(SystemError) -> [UInt8] {
        let fd = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC)
        defer { try? fd.close() }
        do { return try fd.readAll(limit: limit) } catch { throw SystemError(error.call, path: path, error.errno) }
    }

    /// Removes a directory tree that this program created (no symlinks followed).
    public static func removeTree(_ path: String) throws(SystemError) {
        let st = try linkStatus(path)
        if st.isDirectory {
            for name in try contents(ofDirectory: path) { try removeTree(path + "/" + name) }
            try removeDirectory(path)
        } else {
            try remove(path)
        }
    }
}

/// A memory mapping. Like `FileDescriptor`, unmapping is explicit: a mapping
/// shared with forked children must not vanish because a value went away.
public struct MappedRegion: @unchecked Sendable {
    public let base: UnsafeMutableRawPointer
    public let length: Int

    /// Maps `length` bytes of `fd` from offset 0.
    /// The corresponding C function is `mmap`.
    public static func map(
        _ fd: FileDescriptor, length: Int, writable: Bool, shared: Bool = true, populate: Bool = false
    ) throws(SystemError) -> MappedRegion {
        let prot = writable ? (PROT_READ | PROT_WRITE) : PROT_READ
        var flags = shared ? MAP_SHARED : MAP_PRIVATE
        if populate { flags |= MAP_POPULATE }
        let address = system_mmap(nil, length, prot, flags, fd.rawValue, 0)
        guard let address, address != MAP_FAILED else { throw SystemError("mmap", .current) }
        return MappedRegion(base: address, length: length)
    }

    /// Anonymous memory (private, or shared with forked children), zeroed.
    /// `populate` faults every page in now, in one pass in the kernel:
    /// memory that will all be written anyway then costs no fault per page.
    /// `hugePages` asks for transparent huge pages (`MADV_HUGEPAGE`) before
    /// any page is faulted in: a table of tens of MiB read at random then
    /// costs a TLB walk per access far less often. Advice only: without
    /// THP the memory is ordinary pages.
    public static func anonymous(length: Int, shared: Bool, populate: Bool = false, hugePages: Bool = false) throws(SystemError) -> MappedRegion {
        var flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS
        // MAP_POPULATE would fault small pages in before the advice applies.
        if populate && !hugePages { flags |= MAP_POPULATE }
        let address = system_mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0)
        guard let address, address != MAP_FAILED else { throw SystemError("mmap", .current) }
        if hugePages {
            _ = system_madvise(address, length, MADV_HUGEPAGE)
            // MAP_POPULATE's work after the advice (Linux 5.14); an older kernel faults on first use.
            if populate { _ = system_madvise(address, length, MADV_POPULATE_WRITE) }
        }
        return MappedRegion(base: address, length: length)
    }

    /// Makes the lowest `bytes` inaccessible (a stack's guard page: running
    /// off the end faults instead of overwriting what lies below).
    /// The corresponding C function is `mprotect`.
    public func guardLowest(_ bytes: Int) throws(SystemError) {
        try nothingOrErrno(system_mprotect(base, bytes, PROT_NONE)).get("mprotect")
    }

    /// The corresponding C function is `munmap`.
    public func unmap() throws(SystemError) {
        try nothingOrErrno(system_munmap(base, length)).get("munmap")
    }
}
