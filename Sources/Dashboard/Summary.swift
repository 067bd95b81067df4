import EventRing

/// The per-process summary printed when there is no terminal
/// (`forkscope attach` with stdout not a TTY, or `--headless`).
public enum ProcessSummary {
    public static func text(_ model: DashboardModel, source: String, live: Bool) -> String {
        var lines: [String] = []
        var header = "forkscope: \(source) (\(live ? "live" : "saved")): \(model.processes.count) processes, \(Format.count(model.eventCount)) events"
        if let accounting = model.accounting {
            let t = accounting.total
            header += "; lost: overwritten \(t.overwritten) torn \(t.torn) abandoned \(t.abandoned) laneExhausted \(accounting.laneExhausted) busy \(t.busyDrops); pending \(t.pending)"
        }
        lines.append(header)
        let columns = ["PID", "START", "ROLE", "STATE", "GEN", "SENDS ok/cxl/fail", "SPANS sent/requeued/dropped", "NAME"]
        let widths = [9, 10, 8, 10, 4, 18, 28]
        func row(_ cells: [String]) -> String {
            var text = ""
            for (n, cell) in cells.enumerated() { text += n < widths.count ? Format.pad(cell, widths[n]) + " " : cell }
            while text.last == " " { text.removeLast() }
            return text
        }
        lines.append(row(columns))
        for tree in model.tree() {
            let p = model.processes[tree.index]
            let indent = String(repeating: " ", count: min(tree.depth, 4))
            let gauge = p.gauge
            let dropped = gauge.droppedByReason.values.reduce(0, &+)
            lines.append(row([
                indent + String(p.key.pid), p.key.start == 0 ? "?" : String(p.key.start), p.role.name, p.state.label,
                "g\(p.runtimeGeneration)", "\(p.sendsOK)/\(p.sendsCancelled)/\(p.sendsFailed)",
                "\(gauge.sent)/\(gauge.requeuedSpans)/\(max(gauge.dropped, dropped))", p.displayName,
            ]))
        }
        for p in model.processes {
            if let send = p.inFlight { lines.append("  \(p.key.pid): send #\(send.id) in flight since \(EventText.seconds(model.origin.offset(send.start)))") }
            if let error = p.lastError { lines.append("  \(p.key.pid): last error \(EventText.seconds(model.origin.offset(error.time))) \(error.text)") }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
