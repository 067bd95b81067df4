import CPosix
import Glibc

extension ProcessControl {
    /// The path of the running executable, so a process can spawn another
    /// copy of itself (`/proc/self/exe`; it ends in " (deleted)" if the
    /// file was replaced). The corresponding C function is `readlink`.
    public static func currentExecutablePath() throws(SystemError) -> String {
        try FileSystem.readSymbolicLink("/proc/self/exe")
    }

    /// Each live process and its parent, read from `/proc/*/stat`. A process
    /// that ends during the scan is left out. The corresponding C functions
    /// are `opendir`, `readdir`, `open` and `read`.
    public static func parentsByProcess() throws(SystemError) -> [pid_t: pid_t] {
        var parents: [pid_t: pid_t] = [:]
        for name in try FileSystem.contents(ofDirectory: "/proc") {
            guard let pid = pid_t(name), let parent = parentID(of: pid) else { continue }
            parents[pid] = parent
        }
        return parents
    }

    /// The direct children of `pid`, in pid order (a scan of `/proc`, as
    /// `parentsByProcess`).
    public static func children(of pid: pid_t) throws(SystemError) -> [pid_t] {
        try parentsByProcess().filter { $0.value == pid }.keys.sorted()
    }

    /// Every process below `pid`, parents before their children.
    /// A snapshot: a process forked after the scan is not in it. A scan of
    /// `/proc`, as `parentsByProcess`.
    public static func descendants(of pid: pid_t) throws(SystemError) -> [pid_t] {
        descendants(of: pid, in: try parentsByProcess())
    }

    static func descendants(of root: pid_t, in parents: [pid_t: pid_t]) -> [pid_t] {
        var childrenByParent: [pid_t: [pid_t]] = [:]
        for (pid, parent) in parents where pid != parent {
            childrenByParent[parent, default: []].append(pid)
        }
        var found: [pid_t] = []
        var seen: Set<pid_t> = [root]
        var next = 0
        var frontier = [root]
        // Breadth first; `seen` guards against a cycle in a torn snapshot
        // (a pid reused between two reads).
        while next < frontier.count {
            for child in (childrenByParent[frontier[next]] ?? []).sorted() where seen.insert(child).inserted {
                found.append(child)
                frontier.append(child)
            }
            next += 1
        }
        return found
    }

    /// Sends `signal` to every descendant of `root` (and to `root` itself
    /// when `includingRoot`), parents first; returns the pids signalled.
    /// This process is never signalled, so a subreaper may pass its own pid.
    /// A process that is already gone is skipped. Other failures (EPERM) do
    /// not stop the walk: the first is thrown once every process was tried.
    /// Processes forked during the walk are missed: a child subreaper calls
    /// this again until `descendants(of:)` is empty.
    /// The corresponding C function is `kill`.
    @discardableResult
    public static func killTree(root: pid_t, signal: CInt, includingRoot: Bool = true) throws(SystemError) -> [pid_t] {
        let targets = (includingRoot ? [root] : []) + (try descendants(of: root))
        var signalled: [pid_t] = []
        var firstFailure: SystemError?
        let this = getpid()
        for pid in targets where pid != this {
            switch nothingOrErrno(system_kill(pid, signal)) {
            case .success: signalled.append(pid)
            case .failure(.noSuchProcess): continue
            case .failure(let errno): if firstFailure == nil { firstFailure = SystemError("kill(\(pid), \(signal))", errno) }
            }
        }
        if let firstFailure { throw firstFailure }
        return signalled
    }
}
