import EventRing

/// A vertical sequence diagram as text: one column per process, time
/// downwards, each hook and stage by its real name, and fork arrows from
/// the parent's column to the new child's — the form in which startup
/// orders are taught. Sends, gauges and the agent are left out: the diagram
/// is about the lifecycle.
public enum SequenceDiagram {
    static let columnWidth = 24

    /// `events` merged by time; `model` names the processes.
    public static func render(events: [Event], model: DashboardModel, lookup: (UInt64) -> String?, ascii: Bool = false) -> String {
        let bar = ascii ? "|" : "│", line = ascii ? "-" : "─", head = ascii ? ">" : "▶"
        var columns: [Int32] = []
        var rows: [(time: UInt64, column: Int, label: String, arrowTo: Int32?)] = []
        var alive: [Int32: (first: UInt64, last: UInt64)] = [:]
        // Children a fork.parent announced: a worker.spawned for any other child was a fork() the exporter never saw.
        let hooked = Set(events.filter { $0.kind == .forkParent }.map { Int32(truncatingIfNeeded: $0.a0) })
        for event in events {
            guard let kind = event.kind else { continue }
            let rawFork = kind == .workerSpawned && !hooked.contains(Int32(truncatingIfNeeded: event.a0))
            guard var label = rawFork ? "raw fork() → \(event.a0)" : label(event, kind, lookup) else { continue }
            if ascii { label = label.replacingArrows() }
            if let i = model.processIndex(pid: event.pid), [.agent, .tool].contains(model.processes[i].role) { continue }
            if !columns.contains(event.pid) { columns.append(event.pid) }
            // The child's column comes right after its fork, even if it published first.
            let child = kind == .forkParent || rawFork ? Int32(truncatingIfNeeded: event.a0) : nil
            if let child, !columns.contains(child) { columns.append(child) }
            let column = columns.firstIndex(of: event.pid)!
            let span = alive[event.pid] ?? (event.time, event.time)
            alive[event.pid] = (span.first, kind == .processExit ? event.time : max(span.last, .max - 1))
            rows.append((event.time, column, label, child))
        }
        func name(_ pid: Int32) -> String {
            guard let i = model.processIndex(pid: pid) else { return "pid \(pid)" }
            return "\(model.processes[i].displayName) \(pid)"
        }
        func cell(_ text: String) -> String {
            let clipped = String(text.prefix(columnWidth - 1))
            return clipped + String(repeating: " ", count: columnWidth - clipped.count)
        }
        var out = [String(cell("time").prefix(11)) + columns.map { cell(name($0)) }.joined()]
        let origin = model.origin
        for row in rows {
            var text = EventText.seconds(origin.offset(row.time))
            text += String(repeating: " ", count: max(1, 11 - text.count))
            let target = row.arrowTo.flatMap { columns.firstIndex(of: $0) }
            for (n, pid) in columns.enumerated() {
                let live = alive[pid].map { row.time >= $0.first && row.time <= $0.last } ?? false
                if n == row.column {
                    text += cell("\(bar) " + row.label)
                } else if let target, (min(row.column, target)...max(row.column, target)).contains(n) {
                    // The arrow passes through (or ends at) this column.
                    let edge = n == target ? (target > row.column ? head + bar : bar + head) : ""
                    text += target > row.column
                        ? String(repeating: line, count: columnWidth - edge.count) + edge
                        : edge + String(repeating: line, count: columnWidth - edge.count)
                } else {
                    text += cell(live ? bar : "")
                }
            }
            while text.hasSuffix(" ") { text.removeLast() }
            out.append(text)
        }
        return out.joined(separator: "\n")
    }

    /// The label a lifecycle event gets, or nil to leave it out.
    static func label(_ e: Event, _ kind: EventKind, _ lookup: (UInt64) -> String?) -> String? {
        switch kind {
        case .processStart: return "start"
        case .processExit: return "exit"
        case .serverHook: return lookup(e.a0) ?? "server hook"
        case .hookRun:
            // "transport http://127.0.0.1:8126" → "transport": the column is narrow.
            let name = (lookup(e.a1) ?? "?").split(separator: " ").first.map(String.init) ?? "?"
            return "\(ForkStage(rawValue: e.a0)?.name ?? "?"): \(name)"
        case .forkBeforeStart: return "fork: before"
        case .forkParent: return "fork → \(e.a0)"
        case .forkChild: return "fork: child"
        case .forkFailed: return "fork failed"
        case .forkDetectedWithoutHooks: return "fork detected (no hooks)"
        case .runtimeRebuild: return "runtime rebuilt g\(e.a1)"
        case .drainWait: return "drain \(Outcome(rawValue: e.a2)?.name ?? "?")"
        case .sendCancel: return "send cancelled"
        case .transportOpen: return "transport open"
        case .transportClose: return "transport close"
        default: return nil
        }
    }
}

private extension String {
    /// The one non-ASCII glyph labels use, for terminals without UTF-8.
    func replacingArrows() -> String {
        var out = ""
        for character in self { out += character == "→" ? "->" : String(character) }
        return out
    }
}

extension SequenceDiagram {
    /// Two diagrams next to each other (e.g. preload with and without
    /// hooks), each under its title, separated by a gutter.
    public static func sideBySide(_ left: String, _ right: String, titles: (String, String)) -> String {
        let a = [titles.0, ""] + left.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let b = [titles.1, ""] + right.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let width = a.map(\.count).max() ?? 0
        var lines: [String] = []
        for n in 0..<max(a.count, b.count) {
            let l = n < a.count ? a[n] : ""
            let r = n < b.count ? b[n] : ""
            var line = l + String(repeating: " ", count: width - l.count) + "   ┃ " + r
            while line.hasSuffix(" ") { line.removeLast() }
            lines.append(line)
        }
        return lines.joined(separator: "\n")
    }
}
