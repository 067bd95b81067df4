import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix
import Terminal

/// `forkscope logs`: the end of a process's log file in a session.
struct Logs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the end of a process's log file in a session (what the processes it started wrote).",
        discussion: "Without PROCESS, lists the session's log files. PROCESS is a pid (its log is found by pid, then by role and name), a log name (agent, master) or a file name."
    )

    @Argument(help: "A pid, a log name or a file name; none lists the log files.")
    var process: String?

    @Option(help: "The session directory (default: the newest session).")
    var session: String?

    @Option(name: [.customShort("n"), .long], help: "How many lines to print.")
    var lines = 20

    @Flag(name: .shortAndLong, help: "Keep printing lines as they are written (Ctrl-C stops).")
    var follow = false

    func validate() throws {
        guard lines >= 0 else { throw ValidationError("--lines must be 0 or more") }
    }

    func run() throws {
        let directory = try sessionPath()
        let tail = LogTail(directory: directory)
        tail.refresh()
        let files = tail.snapshot.files
        guard let process else {
            if files.isEmpty { print("no log files in \(directory)") }
            for file in files { print("\(Format.pad(file.name, 24)) \(Format.bytes(UInt64(max(0, file.size))))") }
            return
        }
        guard let n = Logs.find(process, in: tail.snapshot, ringPath: SessionDirectory(path: directory).ringPath) else {
            let names = files.map(\.name).joined(separator: ", ")
            Failure.exit("no log file for \(process) in \(directory) (files: \(names.isEmpty ? "none" : names))", code: 1)
        }
        let path = directory + "/" + files[n].name
        var output = ""
        for line in files[n].lines.suffix(lines) { output += line + "\n" }
        try? FileDescriptor.standardOutput.writeAll(output)
        if follow { Logs.follow(path, from: files[n].size) }
    }

    private func sessionPath() throws -> String {
        if let session { return session }
        guard let newest = SessionDirectory.list().first else {
            throw ValidationError("no session found under \(SessionDirectory.root()); pass --session DIR")
        }
        return newest.path
    }

    /// The log file for a pid, a name or a file name.
    static func find(_ process: String, in snapshot: LogSnapshot, ringPath: String) -> Int? {
        let files = snapshot.files
        if let n = files.firstIndex(where: { $0.name == process || $0.name == process + ".log" }) { return n }
        if let pid = Int32(process) {
            if let model = try? RingFeed(path: ringPath, mode: .snapshot, logCapacity: 1), (try? model.poll()) != nil,
               let i = model.model.processIndex(pid: pid), let n = snapshot.preferredFile(for: model.model.processes[i]) {
                return n
            }
            return files.firstIndex { $0.name.split(whereSeparator: { !$0.isNumber }).contains(Substring(process)) }
        }
        return files.firstIndex { $0.name.lowercased().contains(process.lowercased()) }
    }

    /// Prints what is appended to `path` (from `offset`) until interrupted.
    static func follow(_ path: String, from offset: Int64) {
        var position = offset
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            var none: [pollfd] = []
            _ = try? poll(&none, timeoutMilliseconds: 200)
            guard let status = try? FileSystem.linkStatus(path) else { continue }
            if status.size < position { position = 0 }  // truncated or replaced: start over
            guard status.size > position, let fd = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) else { continue }
            while true {
                let n = buffer.withUnsafeMutableBytes { (try? fd.read(fromAbsoluteOffset: position, into: $0)) ?? 0 }
                if n <= 0 { break }
                position += Int64(n)
                let written: Bool = buffer.withUnsafeBytes { raw in
                    (try? FileDescriptor.standardOutput.writeAll(UnsafeRawBufferPointer(rebasing: raw[..<n]))) != nil
                }
                if !written {
                    try? fd.close()
                    return  // the reader of our stdout went away
                }
            }
            try? fd.close()
        }
    }
}
