import Glibc
import Posix

/// A cgroup-v1 pids controller group around one process, so its next fork()
/// fails with EAGAIN: the one way found here to make a real fork fail from
/// outside as root (RLIMIT_NPROC does not apply to root). Needs a writable
/// /sys/fs/cgroup/pids; the group is removed afterwards.
struct PidsLimit {
    static let root = "/sys/fs/cgroup/pids"
    let path: String

    init(around pid: pid_t) throws {
        guard FileSystem.exists(PidsLimit.root + "/cgroup.procs") else {
            throw ScenarioError("fork-failure needs the cgroup-v1 pids controller at \(PidsLimit.root) (not mounted here)")
        }
        path = PidsLimit.root + "/forkscope-\(getpid())-\(pid)"
        do { try FileSystem.makeDirectory(path, mode: 0o755) } catch {
            throw ScenarioError("cannot create the pids cgroup \(path): \(error) (root with a writable cgroup fs is needed)")
        }
        try write("cgroup.procs", String(pid))
    }

    /// pids.max = the group's current task count: no new thread or process.
    func freeze() throws {
        let current = String(decoding: (try? FileSystem.readFile(path + "/pids.current")) ?? [], as: UTF8.self)
            .filter { $0.isNumber }
        guard !current.isEmpty else { throw ScenarioError("cannot read \(path)/pids.current") }
        try write("pids.max", current)
    }

    func lift() throws { try write("pids.max", "max") }

    /// Moves what is left back to the root group and removes the group.
    func remove() {
        try? lift()
        let left = String(decoding: (try? FileSystem.readFile(path + "/cgroup.procs")) ?? [], as: UTF8.self)
        for pid in left.split(separator: "\n") {
            if let fd = try? FileDescriptor.open(PidsLimit.root + "/cgroup.procs", O_WRONLY | O_CLOEXEC) {
                try? fd.writeAll(String(pid))
                try? fd.close()
            }
        }
        try? FileSystem.removeDirectory(path)
    }

    private func write(_ file: String, _ value: String) throws {
        do {
            let fd = try FileDescriptor.open(path + "/" + file, O_WRONLY | O_CLOEXEC)
            defer { try? fd.close() }
            try fd.writeAll(value)
        } catch {
            throw ScenarioError("cannot write \(value) to \(path)/\(file): \(error)")
        }
    }
}
