import CPosix
import Glibc

/// A program to start with `posix_spawn`: how the TUI, scenarios and tests
/// start processes, never with fork() (see DESIGN, fork-safety rules).
public struct Spawn: Sendable {
    /// What the child does to its descriptors before exec, in order.
    public enum FileAction: Equatable, Sendable {
        /// `dup2(source, target)`: the child's `target` refers to `source`'s
        /// file (the copy does not close on exec, even if `source` does).
        case duplicate(FileDescriptor, as: FileDescriptor)
        /// Opens `path` as the child's `target`. `O_CLOEXEC` is dropped from
        /// `flags`: it would close the descriptor this action exists to set up.
        case open(String, flags: CInt, mode: mode_t, as: FileDescriptor)
        /// Closes the child's `target`.
        case close(FileDescriptor)

        /// `/dev/null` as the child's `target`, read-write.
        public static func nullDevice(as target: FileDescriptor) -> FileAction {
            .open("/dev/null", flags: O_RDWR, mode: 0, as: target)
        }

        /// A log file (created 0600, appended to, never through a symlink)
        /// as the child's `target`: a spawned process never writes to the
        /// TUI's terminal.
        public static func appendingLog(_ path: String, as target: FileDescriptor) -> FileAction {
            .open(path, flags: O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, mode: 0o600, as: target)
        }
    }

    /// The program; not searched in `PATH`.
    public var path: String
    /// The whole argument vector, `argv[0]` included.
    public var arguments: [String]
    /// `"KEY=VALUE"` entries; nil inherits this process's `environ`.
    public var environment: [String]?
    public var fileActions: [FileAction]
    /// Puts the child in a new process group (its pid), so a signal to the
    /// group reaches it and its children but not this process.
    public var newProcessGroup: Bool
    /// Gives the child an empty signal mask and default dispositions, so it
    /// does not inherit signals this thread blocks or this process ignores
    /// (neither is reset by exec).
    public var resetsSignals: Bool

    public init(
        path: String,
        arguments: [String]? = nil,
        environment: [String]? = nil,
        fileActions: [FileAction] = [],
        newProcessGroup: Bool = false,
        resetsSignals: Bool = true
    ) {
        self.path = path
        self.arguments = arguments ?? [path]
        self.environment = environment
        self.fileActions = fileActions
        self.newProcessGroup = newProcessGroup
        self.resetsSignals = resetsSignals
    }

    /// Starts the program; returns its pid. The caller reaps it
    /// (`ProcessControl.wait`). An exec failure (a missing or
    /// non-executable `path`) is reported here, as glibc's spawn waits for
    /// the exec. The corresponding C function is `posix_spawn`.
    public func run() throws(SystemError) -> pid_t {
        // The posix_spawn_* setup calls only fill memory in this process;
        // posix_spawn itself is the one call that enters the kernel, and it
        // goes through its system_ shim.
        var actions = posix_spawn_file_actions_t()
        try nothingOrErrorNumber(posix_spawn_file_actions_init(&actions)).get("posix_spawn_file_actions_init")
        defer { posix_spawn_file_actions_destroy(&actions) }
        for action in fileActions {
            switch action {
            case .duplicate(let source, let target):
                try nothingOrErrorNumber(posix_spawn_file_actions_adddup2(&actions, source.rawValue, target.rawValue))
                    .get("posix_spawn_file_actions_adddup2")
            case .open(let file, let flags, let mode, let target):
                try nothingOrErrorNumber(posix_spawn_file_actions_addopen(&actions, target.rawValue, file, flags & ~O_CLOEXEC, mode))
                    .get("posix_spawn_file_actions_addopen", path: file)
            case .close(let target):
                try nothingOrErrorNumber(posix_spawn_file_actions_addclose(&actions, target.rawValue))
                    .get("posix_spawn_file_actions_addclose")
            }
        }

        var attributes = posix_spawnattr_t()
        try nothingOrErrorNumber(posix_spawnattr_init(&attributes)).get("posix_spawnattr_init")
        defer { posix_spawnattr_destroy(&attributes) }
        var flags: CInt = 0
        if newProcessGroup {
            flags |= POSIX_SPAWN_SETPGROUP
            try nothingOrErrorNumber(posix_spawnattr_setpgroup(&attributes, 0)).get("posix_spawnattr_setpgroup")
        }
        if resetsSignals {
            flags |= POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF
            var empty = SignalSet().raw
            var all = SignalSet.all.raw
            try nothingOrErrorNumber(posix_spawnattr_setsigmask(&attributes, &empty)).get("posix_spawnattr_setsigmask")
            try nothingOrErrorNumber(posix_spawnattr_setsigdefault(&attributes, &all)).get("posix_spawnattr_setsigdefault")
        }
        try nothingOrErrorNumber(posix_spawnattr_setflags(&attributes, Int16(flags))).get("posix_spawnattr_setflags")

        var pid: pid_t = 0
        let result = withCStringArray(arguments) { cArgv in
            if let environment {
                return withCStringArray(environment) { cEnv in
                    nothingOrErrorNumber(system_posix_spawn(&pid, path, &actions, &attributes, cArgv, cEnv))
                }
            }
            return nothingOrErrorNumber(system_posix_spawn(&pid, path, &actions, &attributes, cArgv, fks_environ()))
        }
        try result.get("posix_spawn", path: path)
        return pid
    }
}

extension Spawn {
    /// Starts `path` with `arguments` (`argv[0]` included); returns its pid.
    /// The corresponding C function is `posix_spawn`.
    public static func run(
        _ path: String,
        arguments: [String]? = nil,
        environment: [String]? = nil,
        fileActions: [FileAction] = [],
        newProcessGroup: Bool = false,
        resetsSignals: Bool = true
    ) throws(SystemError) -> pid_t {
        try Spawn(
            path: path, arguments: arguments, environment: environment, fileActions: fileActions,
            newProcessGroup: newProcessGroup, resetsSignals: resetsSignals
        ).run()
    }
}

/// Calls `body` with a NULL-terminated array of C strings that live for the call.
private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { string in
        let bytes = string.utf8CString
        let copy = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        bytes.withUnsafeBufferPointer { copy.initialize(from: $0.baseAddress!, count: $0.count) }
        return copy
    }
    pointers.append(nil)
    defer { for pointer in pointers { pointer?.deallocate() } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}
