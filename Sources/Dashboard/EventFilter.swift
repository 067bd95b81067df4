import EventRing

/// The `\` filter: whitespace-separated tokens.
///  - a number, or `pid:N`: that process;
///  - `kind:PREFIX`, a token with a dot, or an event family (`send`,
///    `fork`, `runtime`, …): events whose kind starts with it;
///  - anything else (`role:worker`, `unicorn`): processes whose name or
///    role contains it.
/// Process tokens also narrow the process rows; kind tokens only the log.
public struct EventFilter: Equatable, Sendable {
    public var pids: Set<Int32> = []
    public var kinds: [String] = []
    public var words: [String] = []

    public init() {}

    public init(parsing text: String) {
        let families = Set(EventKind.allCases.map { String($0.name.split(separator: ".").first ?? "") })
        for token in text.split(whereSeparator: { $0 == " " || $0 == "," }).map({ String($0).lowercased() }) {
            if let pid = Int32(token) {
                pids.insert(pid)
            } else if token.hasPrefix("pid:"), let pid = Int32(token.dropFirst(4)) {
                pids.insert(pid)
            } else if token.hasPrefix("kind:") {
                kinds.append(String(token.dropFirst(5)))
            } else if token.hasPrefix("role:") || token.hasPrefix("name:") {
                words.append(String(token.dropFirst(5)))
            } else if token.contains(".") || families.contains(token) {
                kinds.append(token)
            } else {
                words.append(token)
            }
        }
    }

    public var isEmpty: Bool { pids.isEmpty && kinds.isEmpty && words.isEmpty }
    public var narrowsProcesses: Bool { !pids.isEmpty || !words.isEmpty }

    /// `pid 12 · kind send · "worker"`
    public var summary: String {
        var parts: [String] = []
        if !pids.isEmpty { parts.append("pid " + pids.sorted().map(String.init).joined(separator: ",")) }
        if !kinds.isEmpty { parts.append("kind " + kinds.joined(separator: ",")) }
        if !words.isEmpty { parts.append(words.map { "\"\($0)\"" }.joined(separator: ",")) }
        return parts.joined(separator: " · ")
    }

    public func matches(process: ProcessModel) -> Bool {
        if !pids.isEmpty && !pids.contains(process.key.pid) { return false }
        if !words.isEmpty {
            let name = process.displayName.lowercased(), role = process.role.name
            if !words.contains(where: { name.contains($0) || role.contains($0) }) { return false }
        }
        return true
    }

    public func matches(_ event: Event, in model: DashboardModel) -> Bool {
        if !pids.isEmpty && !pids.contains(event.pid) { return false }
        if !kinds.isEmpty {
            let name = event.kind?.name ?? "unknown"
            if !kinds.contains(where: { name.hasPrefix($0) }) { return false }
        }
        if !words.isEmpty {
            guard let i = model.processIndex(pid: event.pid) else { return false }
            let process = model.processes[i]
            let name = process.displayName.lowercased(), role = process.role.name
            if !words.contains(where: { name.contains($0) || role.contains($0) }) { return false }
        }
        return true
    }
}

/// The processes' log output the view shows (read by the terminal layer
/// from the session directory: the view itself does no I/O).
public struct LogSnapshot: Equatable, Sendable {
    public struct File: Equatable, Sendable {
        public var name: String
        /// The last lines of the file, oldest first.
        public var lines: [String]
        public var size: Int64

        public init(name: String, lines: [String], size: Int64) {
            self.name = name
            self.lines = lines
            self.size = size
        }
    }

    public var files: [File]
    /// Where the files are (for the pane's title).
    public var directory: String?

    public init(files: [File] = [], directory: String? = nil) {
        self.files = files
        self.directory = directory
    }

    /// The file that belongs to `process`: one whose name holds its pid,
    /// else its role (`agent.log` for the agent, `master`, `worker`), else
    /// one that shares a word with its name; nil when none does.
    public func preferredFile(for process: ProcessModel?) -> Int? {
        guard let process else { return nil }
        let pid = String(process.key.pid)
        if let n = files.firstIndex(where: { $0.name.split(whereSeparator: { !$0.isNumber }).contains(Substring(pid)) }) { return n }
        if process.role != .unknown, let n = files.firstIndex(where: { $0.name.lowercased().contains(process.role.name) }) { return n }
        let words = process.displayName.lowercased().split(separator: " ").filter { $0.count > 2 }
        return files.firstIndex { file in words.contains { file.name.lowercased().contains($0) } }
    }
}
