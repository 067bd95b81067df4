import Glibc
import Posix

/// A session: one private directory holding the ring, the control socket
/// and per-process logs.
///
/// Location: `$XDG_RUNTIME_DIR/forkscope/<name>/`, else
/// `/dev/shm/forkscope-$UID/<name>/` (tmpfs), else `/tmp/forkscope-$UID/<name>/`.
/// Every directory we create is 0700, and every one we use is checked to be
/// a real directory (not a symlink) owned by us with no group/other access,
/// so no other user can swap a file in under us.
public struct SessionDirectory: Sendable, Equatable {
    public let path: String

    public init(path: String) { self.path = path }

    public var ringPath: String { path + "/ring" }
    public var controlSocketPath: String { path + "/control.sock" }
    public func logPath(_ name: String) -> String { path + "/" + name + ".log" }

    /// The directory that holds every session of this user.
    public static func root(environment: [String: String] = Environment.current) -> String {
        let uid = getuid()
        if let xdg = environment["XDG_RUNTIME_DIR"], !xdg.isEmpty, FileSystem.exists(xdg) {
            return xdg + "/forkscope"
        }
        if FileSystem.exists("/dev/shm") { return "/dev/shm/forkscope-\(uid)" }
        return "/tmp/forkscope-\(uid)"
    }

    /// Creates a new session directory under `root` (created if missing).
    public static func create(name: String? = nil, root: String = SessionDirectory.root()) throws(RingError) -> SessionDirectory {
        try ensurePrivateDirectory(root)
        let name = name ?? "\(Clock.realtimeNanoseconds() / 1_000_000)-\(getpid())"
        let session = SessionDirectory(path: root + "/" + name)
        do { try FileSystem.makeDirectory(session.path, mode: 0o700) } catch { throw .system(error) }
        try checkPrivate(session.path, directory: true)
        return session
    }

    /// Every session under `root`, newest first (by name, which starts with
    /// the creation time in milliseconds).
    public static func list(root: String = SessionDirectory.root()) -> [SessionDirectory] {
        guard let names = try? FileSystem.contents(ofDirectory: root) else { return [] }
        return names.sorted(by: >).map { SessionDirectory(path: root + "/" + $0) }
    }

    /// Creates `path` 0700 if missing; refuses it unless it is a directory we
    /// own with no group or other access.
    static func ensurePrivateDirectory(_ path: String) throws(RingError) {
        do {
            try FileSystem.makeDirectory(path, mode: 0o700)
        } catch where error.errno == .fileExists {
        } catch {
            throw .system(error)
        }
        try checkPrivate(path, directory: true)
    }

    /// Checks `path` itself (no symlink), its owner and its mode.
    public static func checkPrivate(_ path: String, directory: Bool) throws(RingError) {
        let status: FileStatus
        do { status = try FileSystem.linkStatus(path) } catch { throw .system(error) }
        if status.isSymbolicLink { throw .insecure(path: path, problem: "it is a symbolic link") }
        if directory && !status.isDirectory { throw .insecure(path: path, problem: "it is not a directory") }
        if status.ownerID != geteuid() { throw .notOwned(path: path, owner: status.ownerID, us: geteuid()) }
        if status.permissions & 0o077 != 0 {
            throw .insecure(path: path, problem: "mode \(String(status.permissions, radix: 8)) gives access to other users (want \(directory ? "0700" : "0600"))")
        }
    }
}

/// The process environment as a dictionary (read when asked, never cached:
/// a forked child may have changed it).
public enum Environment {
    public static var current: [String: String] {
        var result: [String: String] = [:]
        var pointer = environ
        while let entry = pointer.pointee {
            let text = String(cString: entry)
            if let eq = text.firstIndex(of: "=") {
                result[String(text[..<eq])] = String(text[text.index(after: eq)...])
            }
            pointer += 1
        }
        return result
    }
}
