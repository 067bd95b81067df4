import EventRing

/// Everything one frame shows. The renderer reads it and nothing else: no
/// clock, no files, no terminal, so a test renders a fixed frame exactly.
public struct DashboardFrame: Sendable {
    public enum Source: Sendable, Equatable {
        /// A live ring (its processes may still publish).
        case live
        /// A live ring whose processes have all ended.
        case ended
        /// A saved copy, or a ring written during another boot.
        case saved
    }

    public var model: DashboardModel
    public var view: ViewState
    public var logs: LogSnapshot
    /// Monotonic ns (for a saved ring: its last event time).
    public var now: UInt64
    public var source: Source
    /// What the title names (the ring or session path).
    public var title: String
    public var glyphs: Glyphs
    /// Events read since the view was paused (shown while paused).
    public var eventsWhilePaused: Int
    /// Set while a saved ring is replayed: the title shows its clock.
    public var replay: ReplayStatus? = nil

    public init(model: DashboardModel, view: ViewState, logs: LogSnapshot = LogSnapshot(), now: UInt64,
                source: Source, title: String, glyphs: Glyphs, eventsWhilePaused: Int = 0) {
        self.model = model
        self.view = view
        self.logs = logs
        self.now = now
        self.source = source
        self.title = title
        self.glyphs = glyphs
        self.eventsWhilePaused = eventsWhilePaused
    }
}

/// Draws a frame into a `Canvas`: the one renderer behind curses, tests and
/// the benchmark.
public enum DashboardView {
    public static func render(_ frame: DashboardFrame, width: Int, height: Int) -> Canvas {
        var renderer = Renderer(frame: frame, width: width, height: height)
        renderer.draw()
        return renderer.canvas
    }
}

struct Renderer {
    let frame: DashboardFrame
    let layout: DashboardLayout
    let g: Glyphs
    var canvas: Canvas
    var model: DashboardModel { frame.model }
    var view: ViewState { frame.view }

    // Time window of the timeline.
    let perColumn: UInt64
    let windowEnd: UInt64
    let windowStart: UInt64

    init(frame: DashboardFrame, width: Int, height: Int) {
        self.frame = frame
        g = frame.glyphs
        layout = DashboardLayout(width: width, height: height, view: frame.view, model: frame.model)
        canvas = Canvas(width: width, height: height, unicode: frame.glyphs.unicode)
        perColumn = frame.view.nanosecondsPerColumn
        let span = perColumn * UInt64(max(0, layout.timelineWidth - 1))
        let origin = frame.model.origin.monotonic
        if frame.view.rightEdge == nil, frame.source != .live, frame.now >= origin, frame.now - origin <= span {
            // A saved ring that fits: its whole history, from the ring's start.
            windowStart = origin
            windowEnd = origin.addingReportingOverflow(span).overflow ? .max : origin + span
        } else {
            windowEnd = frame.view.rightEdge ?? frame.now
            windowStart = windowEnd > span ? windowEnd - span : 0
        }
    }

    /// The timeline column of `time` (may be outside 0..<timelineWidth).
    @inline(__always) func column(_ time: UInt64) -> Int {
        time >= windowStart ? Int(min((time - windowStart) / perColumn, 1 << 30)) : -1 - Int(min((windowStart - time) / perColumn, 1 << 30))
    }

    mutating func draw() {
        if layout.tooSmall {
            drawSizeMessage()
            return
        }
        let rows = view.rows(model)
        drawTitle()
        drawHeader()
        drawProcesses(rows)
        drawPanes(rows)
        if let row = layout.narrationRow, let narration = view.narration {
            canvas.fill(x: 0, y: row, width: layout.width, height: 1, style: .narration)
            canvas.text((g.unicode ? "▸ " : "> ") + narration, x: 1, y: row, limit: layout.width - 2, style: .narration)
        }
        drawStatus()
        drawOverlay()
    }

    // MARK: size message

    mutating func drawSizeMessage() {
        let text = "forkscope needs at least \(DashboardLayout.minimumWidth)x\(DashboardLayout.minimumHeight); this terminal is \(layout.width)x\(layout.height). Enlarge it, or press q to quit."
        let lines = wrap(text, width: max(1, layout.width - 2))
        let top = max(0, (layout.height - lines.count) / 2)
        for (n, line) in lines.enumerated() where top + n < layout.height {
            let x = max(0, (layout.width - line.unicodeScalars.count) / 2)
            canvas.text(line, x: x, y: top + n, style: n == 0 ? .bold : .normal)
        }
    }

    func wrap(_ text: String, width: Int) -> [String] {
        var lines: [String] = []
        var line = ""
        for word in text.split(separator: " ") {
            if line.isEmpty { line = String(word) } else if line.count + 1 + word.count <= width { line += " " + word } else {
                lines.append(line)
                line = String(word)
            }
            while line.count > width {
                lines.append(String(line.prefix(width)))
                line = String(line.dropFirst(width))
            }
        }
        if !line.isEmpty { lines.append(line) }
        return lines
    }

    // MARK: title and header

    mutating func drawTitle() {
        let y = layout.titleRow
        canvas.fill(x: 0, y: y, width: layout.width, height: 1, style: .title)
        let mode: String
        if let replay = frame.replay {
            mode = replay.caption(unicode: g.unicode)
        } else if view.paused {
            mode = "PAUSED" + (frame.eventsWhilePaused > 0 ? " +\(Format.count(frame.eventsWhilePaused))" : "")
        } else {
            switch frame.source {
            case .live: mode = "LIVE"
            case .ended: mode = "ENDED"
            case .saved: mode = "SAVED"
            }
        }
        let bar = " " + g.vertical.description + " "
        let alive = model.processes.filter { !$0.state.isEnded }.count
        let loss = lossSummary()
        // Segments by priority: each is shown only if it fits after the
        // ones before it (the loss figures before the counts: they matter).
        var x = canvas.text(" forkscope" + bar + mode, x: 0, y: y, style: .title)
        var segments: [(String, Style)] = []
        if !loss.text.isEmpty { segments.append((bar + loss.text, loss.bad ? .warning : .title)) }
        segments.append((bar + "\(model.processes.count) proc (\(alive) up)", .title))
        segments.append((bar + "\(Format.count(model.eventCount)) events", .title))
        for (text, style) in segments {
            guard x + text.unicodeScalars.count < layout.width else { break }
            x += canvas.text(text, x: x, y: y, style: style)
        }
        // Right: the zoom, then the source (its end, when it does not fit).
        var right = Format.duration(perColumn, unicode: g.unicode) + "/col" + (view.rightEdge == nil ? "" : " panned") + " "
        var room = layout.width - x - 2
        guard right.unicodeScalars.count <= room else { return }
        room -= right.unicodeScalars.count
        let title = frame.title.unicodeScalars
        if room >= 12 {
            let cut = title.count + 3 <= room ? frame.title : g.ellipsis + String(String.UnicodeScalarView(title.suffix(room - 4)))
            right += g.vertical.description + " " + cut + " "
        }
        canvas.text(right, x: layout.width - right.unicodeScalars.count, y: y, style: .title)
    }

    /// The ring's accounting, honestly: what was lost and how.
    func lossSummary() -> (text: String, bad: Bool) {
        guard let accounting = model.accounting else { return ("", false) }
        let t = accounting.total
        var parts: [String] = []
        if t.overwritten > 0 { parts.append("overwritten \(Format.count(t.overwritten))") }
        if t.torn > 0 { parts.append("torn \(Format.count(t.torn))") }
        if t.abandoned > 0 { parts.append("abandoned \(Format.count(t.abandoned))") }
        if accounting.laneExhausted > 0 { parts.append("laneExhausted \(Format.count(accounting.laneExhausted))") }
        if t.busyDrops > 0 { parts.append("busy \(Format.count(t.busyDrops))") }
        if model.log.dropped > 0 { parts.append("log trimmed \(Format.count(model.log.dropped))") }
        let pending = t.pending > 0 ? " pending \(t.pending)" : ""
        if parts.isEmpty { return ("lost 0" + pending, false) }
        return ("LOST " + parts.joined(separator: " ") + pending, true)
    }

    mutating func drawHeader() {
        let y = layout.headerRow
        canvas.fill(x: 0, y: y, width: layout.width, height: 1, style: .header)
        var x = 0
        canvas.text("PROCESS", x: x, y: y, limit: layout.nameWidth, style: .header)
        x += layout.nameWidth + 1
        canvas.text("STATE", x: x, y: y, limit: layout.stateWidth, style: .header)
        x += layout.stateWidth + 1
        if layout.generationWidth > 0 {
            canvas.text("GEN", x: x, y: y, limit: layout.generationWidth, style: .header)
            x += layout.generationWidth + 1
        }
        if layout.sendWidth > 0 {
            canvas.text("SEND", x: x, y: y, limit: layout.sendWidth, style: .header)
        }
        canvas.put(g.vertical, x: layout.tableWidth, y: y, style: .header)
        drawAxis(y: y)
    }

    /// Tick marks and labels, at round multiples of a 1-2-5 interval
    /// (seconds since the ring began), at least 12 columns apart.
    mutating func drawAxis(y: Int) {
        guard layout.timelineWidth > 0 else { return }
        let minimum = perColumn * 10
        var interval: UInt64 = 100_000
        let steps: [UInt64] = [1, 2, 5]
        var n = 0
        while interval * steps[n % 3] < minimum { n += 1; if n % 3 == 0 { interval *= 10 } }
        interval *= steps[n % 3]
        let origin = model.origin.monotonic
        let startOffset = windowStart > origin ? windowStart - origin : 0
        var tick = startOffset / interval * interval
        if tick < startOffset { tick += interval }
        while true {
            // A hostile header can put the origin near the end of the clock.
            let (time, wrapped) = origin.addingReportingOverflow(tick)
            if wrapped { break }
            let c = column(time)
            if c >= layout.timelineWidth { break }
            if c >= 0 {
                canvas.put(g.axisTick, x: layout.timelineX + c, y: y, style: .axis)
                let label = Format.axisLabel(tick, interval: interval)
                let room = layout.timelineWidth - c - 1
                if label.count <= room { canvas.text(label, x: layout.timelineX + c + 1, y: y, style: .axis) }
            }
            let (next, overflow) = tick.addingReportingOverflow(interval)
            if overflow { break }
            tick = next
        }
    }

    // MARK: process rows

    mutating func drawProcesses(_ rows: [TreeRow]) {
        let visible = layout.processRows
        guard !visible.isEmpty else { return }
        let selectedPosition = view.selectedPosition(in: rows, model)
        // The first visible row: the view's, moved just enough to show the selection.
        var top = min(view.processTop, max(0, rows.count - visible.count))
        if let s = selectedPosition {
            if s < top { top = s }
            if s >= top + visible.count { top = s - visible.count + 1 }
        }
        var rowOf: [Int: Int] = [:]
        for (n, row) in rows.enumerated().dropFirst(top).prefix(visible.count) {
            let y = visible.lowerBound + (n - top)
            rowOf[row.index] = y
            drawTable(row, y: y, selected: n == selectedPosition)
            canvas.put(g.vertical, x: layout.tableWidth, y: y, style: .border)
            drawTimeline(model.processes[row.index], y: y)
        }
        if rows.isEmpty {
            canvas.text(model.eventCount == 0 ? "waiting for events…" : "no process matches the filter (\\ to change it)",
                        x: 1, y: visible.lowerBound, style: .dim)
        }
        drawArrows(rowOf: rowOf, rows: rows, top: top)
        if top > 0 { canvas.text(g.up, x: layout.tableWidth - g.up.count, y: visible.lowerBound, style: .dim) }
        if top + visible.count < rows.count {
            canvas.text(g.down, x: layout.tableWidth - g.down.count, y: visible.upperBound - 1, style: .dim)
        }
    }

    mutating func drawTable(_ row: TreeRow, y: Int, selected: Bool) {
        let p = model.processes[row.index]
        var prefix = ""
        if row.depth > 0 {
            for ancestorLast in row.ancestorIsLast { prefix += ancestorLast ? g.treeBlank : g.treeContinue }
            prefix += row.isLast ? g.treeLast : g.treeBranch
        }
        let base: Style = selected ? .selected : p.state.isEnded ? .exited : .normal
        if selected { canvas.fill(x: 0, y: y, width: layout.tableWidth, height: 1, style: .selected) }
        var x = canvas.text(prefix, x: 0, y: y, limit: layout.nameWidth, style: selected ? .selected : .dim)
        x += canvas.text("\(p.key.pid) ", x: x, y: y, limit: layout.nameWidth - x, style: base)
        canvas.text(p.displayName, x: x, y: y, limit: layout.nameWidth - x, style: selected ? .selected : p.state.isEnded ? .exited : .bold)
        x = layout.nameWidth + 1
        let stateStyle: Style
        switch p.state {
        case .starting: stateStyle = .dim
        case .running: stateStyle = .normal
        case .quiescing: stateStyle = .quiesce
        case .inFork: stateStyle = .forkMark
        case .exited(let status, let signal): stateStyle = signal != 0 || status != 0 ? .error : .exited
        case .gone: stateStyle = .error
        }
        canvas.text(p.state.label, x: x, y: y, limit: layout.stateWidth, style: selected ? .selected : stateStyle)
        x += layout.stateWidth + 1
        if layout.generationWidth > 0 {
            canvas.text("g\(p.runtimeGeneration)", x: x, y: y, limit: layout.generationWidth, style: base)
            x += layout.generationWidth + 1
        }
        if layout.sendWidth > 0 {
            if let send = p.inFlight {
                let age = frame.now > send.start ? frame.now - send.start : 0
                canvas.text(Format.pad(Format.duration(age, unicode: g.unicode), layout.sendWidth, right: true), x: x, y: y,
                            limit: layout.sendWidth, style: selected ? .selected : .sendInFlight)
            } else {
                canvas.text(Format.pad(g.unicode ? "·" : ".", layout.sendWidth, right: true), x: x, y: y, limit: layout.sendWidth, style: selected ? .selected : .dim)
            }
        }
    }

    /// One process's timeline: lifeline, quiesce windows, send bars, marks.
    mutating func drawTimeline(_ p: ProcessModel, y: Int) {
        let width = layout.timelineWidth
        guard width > 0 else { return }
        let x0 = layout.timelineX
        // Nothing open (a lifeline, a send in flight, a quiesce window)
        // is drawn past now.
        let present = min(windowEnd, frame.now)
        let end = p.endedAt ?? present
        // Lifeline: from first sight to the end (or now).
        let from = max(0, column(p.firstSeen)), to = min(width - 1, column(end))
        if from <= to {
            for c in from...to { canvas[x: x0 + c, y: y] = Cell(g.lifeline, .lifeline) }
        }
        if model.historyLost(p), column(p.firstSeen) >= 0, column(p.firstSeen) < width {
            canvas[x: x0 + max(0, column(p.firstSeen) - 1), y: y] = Cell(g.historyLost, .warning)
        }
        // Quiesce windows.
        func shade(_ start: UInt64, _ stop: UInt64) {
            let a = max(0, column(start)), b = min(width - 1, column(stop))
            guard a <= b else { return }
            for c in a...b { canvas[x: x0 + c, y: y] = Cell(g.quiesce, .quiesce) }
        }
        for window in p.timeline.windows where (window.end ?? present) >= windowStart && window.start <= windowEnd {
            shade(window.start, window.end ?? present)
        }
        if let open = p.timeline.openWindow, open.start <= windowEnd { shade(open.start, min(end, present)) }

        // Sends: the worse outcome wins a shared cell.
        var priority = [UInt8](repeating: 0, count: width)
        func bar(_ send: Send) {
            let stop = send.end ?? min(end, present)
            let a = column(send.start), b = column(stop)
            guard b >= 0, a < width, a <= b else { return }
            let rank: UInt8
            let style: Style
            let body: Unicode.Scalar
            let head: Unicode.Scalar
            switch send.outcome {
            case .completed(let status) where status >= 200 && status < 300:
                (rank, style, body, head) = (1, .sendOK, g.sendOK, g.sendOK)
            case .inFlight:
                (rank, style, body, head) = (2, .sendInFlight, g.sendInFlight, g.sendInFlightHead)
            case .cancelled:
                (rank, style, body, head) = (3, .sendCancelled, g.sendOK, g.sendCancelled)
            case .completed, .failed, .unfinished:
                (rank, style, body, head) = (4, .sendFailed, g.sendOK, g.sendFailed)
            }
            for c in max(0, a)...min(width - 1, b) where priority[c] <= rank {
                priority[c] = rank
                canvas[x: x0 + c, y: y] = Cell(c == b ? head : body, style)
            }
        }
        let sends = p.timeline.sends
        let earliest = windowStart > p.timeline.longestSend ? windowStart - p.timeline.longestSend : 0
        var low = 0, high = sends.count
        while low < high {
            let mid = (low + high) / 2
            if sends[mid].start < earliest { low = mid + 1 } else { high = mid }
        }
        var n = low
        while n < sends.count, sends[n].start <= windowEnd {
            bar(sends[n])
            n += 1
        }
        for send in p.timeline.inFlight where send.start <= windowEnd { bar(send) }

        // Marks: fork stages, rebuild ticks, exits. A mark whose cell is
        // taken by another mark moves right (up to 3 cells), so `b` and `p`
        // of one fork both show at coarse zoom.
        var taken = Set<Int>()
        let marks = p.timeline.marks
        low = 0
        high = marks.count
        while low < high {
            let mid = (low + high) / 2
            if marks[mid].time < windowStart { low = mid + 1 } else { high = mid }
        }
        n = low
        while n < marks.count, marks[n].time <= windowEnd {
            let mark = marks[n]
            n += 1
            if case .processStart = mark.kind { continue }
            var c = column(mark.time)
            var shifts = 0
            while taken.contains(c), shifts < 3 { c += 1; shifts += 1 }
            guard c >= 0, c < width else { continue }
            taken.insert(c)
            let style: Style
            switch mark.kind {
            case .forkBefore, .forkParent, .forkChild: style = .forkMark
            case .forkFailed, .unhookedFork: style = .forkFailed
            case .rebuild: style = .rebuild
            case .exit(let signaled): style = signaled ? .error : .exited
            case .operatorCommand: style = .warning
            case .agentRequest: style = .sendOK
            case .processStart: style = .dim
            }
            canvas[x: x0 + c, y: y] = Cell(g.mark(mark.kind), style)
        }
    }

    /// A vertical arrow from the parent's row down to the child's, in the
    /// column of the fork; it only crosses empty or lifeline cells.
    mutating func drawArrows(rowOf: [Int: Int], rows: [TreeRow], top: Int) {
        let arrows = model.arrows
        guard !arrows.isEmpty, layout.timelineWidth > 0 else { return }
        var position: [Int: Int] = [:]
        for (n, row) in rows.enumerated() { position[row.index] = n }
        let firstRow = layout.processRows.lowerBound, lastRow = layout.processRows.upperBound - 1
        var low = 0, high = arrows.count
        while low < high {
            let mid = (low + high) / 2
            if arrows[mid].time < windowStart { low = mid + 1 } else { high = mid }
        }
        for arrow in arrows[low...] {
            if arrow.time > windowEnd { break }
            guard let parentAt = position[arrow.parent], let childAt = position[arrow.child], childAt > parentAt else { continue }
            let c = column(arrow.time)
            guard c >= 0, c < layout.timelineWidth else { continue }
            let x = layout.timelineX + c
            let from = rowOf[arrow.parent] ?? (parentAt < top ? firstRow - 1 : lastRow + 1)
            let to = rowOf[arrow.child] ?? (childAt < top ? firstRow - 1 : lastRow + 1)
            let low = max(firstRow, from + 1), high = min(lastRow, to)
            guard low <= high else { continue }
            for y in low...high {
                let cell = canvas[x: x, y: y]
                guard cell.scalar == " " || cell.style == .lifeline || cell.style == .quiesce else { continue }
                canvas[x: x, y: y] = Cell(y == to ? g.arrowDown : g.arrowLine, .forkMark)
            }
        }
    }

    // MARK: lower panes

    mutating func drawPanes(_ rows: [TreeRow]) {
        guard let titleRow = layout.paneTitleRow else { return }
        canvas.fill(x: 0, y: titleRow, width: layout.width, height: 1, g.horizontal, style: .border)
        let selected = view.selectedProcess(model)
        if layout.detailsWidth > 0 {
            let w = layout.detailsWidth
            drawDetails(selected, x: 0, width: w - 1, titleRow: titleRow)
            for y in titleRow..<layout.paneRows.upperBound { canvas.put(g.vertical, x: w - 1, y: y, style: .border) }
            if view.pane == .logs {
                drawLogs(selected, x: w, width: layout.width - w, titleRow: titleRow)
            } else {
                drawEvents(x: w, width: layout.width - w, titleRow: titleRow)
            }
        } else {
            switch view.pane {
            case .details: drawDetails(selected, x: 0, width: layout.width, titleRow: titleRow)
            case .events: drawEvents(x: 0, width: layout.width, titleRow: titleRow)
            case .logs: drawLogs(selected, x: 0, width: layout.width, titleRow: titleRow)
            }
        }
    }

    mutating func paneTitle(_ text: String, x: Int, width: Int, y: Int) {
        canvas.text(" " + text + " ", x: x + 1, y: y, limit: width - 2, style: .title)
    }

    mutating func drawDetails(_ p: ProcessModel?, x: Int, width: Int, titleRow: Int) {
        guard let p else {
            paneTitle("Details", x: x, width: width, y: titleRow)
            return
        }
        paneTitle("\(p.key.pid) \(p.displayName)", x: x, width: width, y: titleRow)
        var lines: [(String, Style)] = []
        let dot = g.unicode ? " · " : " - "
        var identity = "\(p.role.name)" + dot + "start \(p.key.start == 0 ? "?" : String(p.key.start))"
        if let parent = p.parent { identity += dot + "parent \(model.processes[parent].key.pid)" } else if p.ppid > 0 { identity += dot + "ppid \(p.ppid)" }
        if !p.children.isEmpty { identity += dot + "\(p.children.count) child" + (p.children.count == 1 ? "" : "ren") }
        lines.append((identity, .normal))
        var state = "\(p.state.label)" + dot + "runtime g\(p.runtimeGeneration)" + dot + "fork depth \(p.forkGeneration)"
        if p.threads > 0 { state += dot + "\(p.threads) thr" } else if p.threadsDeferred { state += dot + "threads on first use" }
        lines.append((state, p.state == .gone ? .error : .normal))
        if let send = p.inFlight {
            let age = frame.now > send.start ? frame.now - send.start : 0
            var text = "send #\(send.id) in flight \(Format.duration(age, unicode: g.unicode)), \(send.spans) spans \(Format.bytes(send.bytes))"
            if send.cancelRequestedAt != nil { text += ", cancel asked" }
            lines.append((text, .sendInFlight))
        }
        if let last = p.lastSend {
            let took = (last.end ?? last.start) - last.start
            let style: Style
            switch last.outcome {
            case .completed(let s) where s >= 200 && s < 300: style = .sendOK
            case .cancelled: style = .sendCancelled
            default: style = .sendFailed
            }
            lines.append(("last #\(last.id) \(last.outcome.label) in \(Format.duration(took, unicode: g.unicode))\(last.startReconstructed ? " (start lost)" : "")", style))
        }
        if p.sendsOK + p.sendsCancelled + p.sendsFailed > 0 {
            lines.append(("sends ok \(p.sendsOK)" + dot + "cancelled \(p.sendsCancelled)" + dot + "failed \(p.sendsFailed)", .normal))
        }
        let gauge = p.gauge
        if gauge.updated > 0 || gauge.requeuedSpans > 0 || !gauge.droppedByReason.isEmpty {
            lines.append(("writer buffered \(gauge.buffered)" + dot + "accepted \(gauge.accepted)" + dot + "sent \(gauge.sent)", .normal))
            lines.append(("re-queued \(gauge.requeued)" + dot + "cancelled \(gauge.cancelled)" + dot + "failed \(gauge.failed)", .normal))
            let dropped = gauge.droppedByReason.sorted { $0.key.rawValue < $1.key.rawValue }
            if dropped.isEmpty {
                lines.append(("dropped \(gauge.dropped)", gauge.dropped > 0 ? .warning : .normal))
            } else {
                lines.append(("dropped \(gauge.dropped): " + dropped.map { "\($0.key.name) \($0.value)" }.joined(separator: ", "), .warning))
            }
            if gauge.lockHolder != 0 { lines.append(("send lock held by tid \(gauge.lockHolder)", .normal)) }
        }
        var setup: [String] = []
        if let policy = p.policy { setup.append("policy \(policy.name)") }
        if p.registeredHooks > 0 { setup.append("\(p.registeredHooks) hooks") }
        if let drain = p.lastDrain { setup.append("drain \(drain.outcome.name) \(Format.micros(drain.micros, unicode: g.unicode))") }
        if p.agentRequests > 0 { setup.append("\(p.agentRequests) requests, delay \(p.agentDelayMilliseconds)ms") }
        if !setup.isEmpty { lines.append((setup.joined(separator: dot), .normal)) }
        for hook in p.hooks.suffix(3).reversed() {
            let stage = hook.stage?.name ?? "server"
            let took = hook.stage == nil ? "" : " \(hook.outcome.name) \(Format.micros(hook.micros, unicode: g.unicode))"
            lines.append(("hook \(stage) \(hook.name)\(took)", hook.outcome == .ok ? .dim : .error))
        }
        if let error = p.lastError {
            lines.append(("error \(EventText.seconds(model.origin.offset(error.time))) \(error.text)", .error))
        }
        if let lane = model.laneAccounting(of: p) {
            let lost = lane.overwritten &+ lane.torn &+ lane.abandoned
            lines.append(("lane \(lane.lane): \(p.events) events" + (lost > 0 ? ", lane lost \(lost)" : ""), lost > 0 ? .warning : .dim))
        }
        for (n, line) in lines.prefix(layout.paneRows.count).enumerated() {
            canvas.text(line.0, x: x + 1, y: layout.paneRows.lowerBound + n, limit: width - 1, style: line.1)
        }
    }

    mutating func drawEvents(x: Int, width: Int, titleRow: Int) {
        let rowsAvailable = layout.paneRows.count
        let text = EventText(model: model)
        var title = "Events \(Format.count(model.log.count))"
        if !view.filter.isEmpty { title += " · filter \(view.filter.summary)" }
        if !view.search.isEmpty { title += " · search \"\(view.search)\"" }
        if view.logOffset > 0 { title += " · \(view.logOffset) back" }
        paneTitle(title, x: x, width: width, y: titleRow)
        guard rowsAvailable > 0 else { return }
        // Walk back from the newest held event, collecting what the filter
        // lets through: only what is on screen is ever formatted.
        var shown: [Event] = []
        var skip = view.logOffset
        var n = model.log.count - 1
        while n >= 0, shown.count < rowsAvailable {
            let event = model.log[n]
            n -= 1
            if !view.filter.isEmpty && !view.filter.matches(event, in: model) { continue }
            if skip > 0 { skip -= 1; continue }
            shown.append(event)
        }
        let needle = view.search.lowercased()
        for (k, event) in shown.reversed().enumerated() {
            let y = layout.paneRows.lowerBound + k
            let line = text.compactLine(event)
            let style: Style = style(for: event)
            canvas.text(line, x: x + 1, y: y, limit: width - 1, style: style)
            let lower = line.lowercased()
            if !needle.isEmpty, let range = lower.unicodeScalars.firstRange(of: needle.unicodeScalars) {
                let start = lower.unicodeScalars.distance(from: lower.unicodeScalars.startIndex, to: range.lowerBound)
                canvas.setStyle(x: x + 1 + start, y: y, width: min(needle.unicodeScalars.count, width - 1 - start), style: .match)
            }
        }
    }

    func style(for event: Event) -> Style {
        switch event.kind {
        case .sendComplete?: return .sendOK
        case .sendCancel?, .cancelRequested?: return .sendCancelled
        case .sendFail?, .forkFailed?, .forkDetectedWithoutHooks?, .spanDropped?: return .sendFailed
        case .forkBeforeStart?, .forkBeforeEnd?, .forkParent?, .forkChild?: return .forkMark
        case .runtimeRebuild?: return .rebuild
        case .writerGauge?, .writerLosses?: return .dim
        case nil: return .warning
        default: return .normal
        }
    }

    mutating func drawLogs(_ selected: ProcessModel?, x: Int, width: Int, titleRow: Int) {
        let files = frame.logs.files
        guard !files.isEmpty else {
            paneTitle("Log output", x: x, width: width, y: titleRow)
            canvas.text(frame.logs.directory.map { "no *.log files in \($0)" } ?? "no session directory: no log output",
                        x: x + 1, y: layout.paneRows.lowerBound, limit: width - 1, style: .dim)
            return
        }
        let chosen = view.logFile.map { $0 % files.count } ?? frame.logs.preferredFile(for: selected) ?? 0
        let file = files[chosen]
        paneTitle("Log \(file.name) (\(chosen + 1)/\(files.count), L next)" + (view.logOffset > 0 ? " · \(view.logOffset) back" : ""), x: x, width: width, y: titleRow)
        let rowsAvailable = layout.paneRows.count
        let end = max(0, file.lines.count - view.logOffset)
        let start = max(0, end - rowsAvailable)
        let needle = view.search.lowercased()
        for (k, line) in file.lines[start..<end].enumerated() {
            let y = layout.paneRows.lowerBound + k
            canvas.text(line, x: x + 1, y: y, limit: width - 1)
            if !needle.isEmpty, line.lowercased().contains(needle) { canvas.setStyle(x: x + 1, y: y, width: width - 1, style: .match) }
        }
    }

    // MARK: status line and overlays

    mutating func drawStatus() {
        let y = layout.statusRow
        canvas.fill(x: 0, y: y, width: layout.width, height: 1, style: .status)
        if let prompt = view.prompt {
            let label: String
            switch prompt {
            case .search: label = "/ search: "
            case .filter: label = "\\ filter (pid, kind, name; empty clears): "
            case .burst: label = "burst requests: "
            case .agentDelay: label = "agent delay (ms): "
            }
            var x = canvas.text(label, x: 0, y: y, style: .statusKey)
            x += canvas.text(view.promptText, x: x, y: y, style: .prompt)
            canvas.put(g.unicode ? "█" : "_", x: x, y: y, style: .prompt)
            let hint = "  Enter apply  Esc cancel"
            if x + 1 + hint.count < layout.width { canvas.text(hint, x: x + 1, y: y, style: .status) }
            return
        }
        if let status = view.status, frame.now < status.until {
            canvas.text(" " + status.text, x: 0, y: y, style: status.kind == .error ? .error : .status)
            return
        }
        var keys: [(String, String)] = []
        switch view.overlay {
        case .help?: keys = [(g.unicode ? "↑↓" : "Up/Dn", "scroll"), ("Esc", "close")]
        case .sequence?: keys = [(g.unicode ? "↑↓←→" : "arrows", "scroll"), ("Esc", "close")]
        case .signalChooser?, .policyChooser?: keys = [(g.unicode ? "↑↓" : "Up/Dn", "choose"), ("Enter", "send"), ("Esc", "cancel")]
        case nil:
            keys = [("F1", "help"), ("q", "quit"), (g.unicode ? "↑↓" : "Up/Dn", "select"), (g.unicode ? "←→" : "<-/->", "pan"), ("+-", "zoom"),
                    ("Space", view.paused ? "resume" : "pause"),
                    ("/", "search"), ("\\", "filter"), ("Tab", layout.detailsWidth > 0 ? (view.pane == .logs ? "events" : "logs") : "pane"),
                    ("e", "export")]
            if view.controlsAvailable {
                keys += [("f", "fork"), ("u", "unsafe"), ("c", "cancel"), ("k", "kill"), ("b", "burst"), ("d", "delay"), ("p", "policy")]
            }
        }
        var x = 0
        if !view.controlsAvailable && view.overlay == nil {
            x += canvas.text(" READ-ONLY ", x: x, y: y, style: .warning)
        }
        for (key, label) in keys {
            let width = key.unicodeScalars.count + label.count + 2
            if x + width > layout.width { break }
            x += canvas.text(" " + key, x: x, y: y, style: .statusKey)
            x += canvas.text(" " + label, x: x, y: y, style: .status)
        }
    }

    mutating func drawOverlay() {
        switch view.overlay {
        case .help?: drawHelp()
        case .sequence?: drawSequence()
        case .signalChooser(let target, let choice)?:
            let name = model.process(target)?.displayName ?? "?"
            let items = SignalChoice.signals.map { SignalName.name($0) + ($0 == 15 ? " (default)" : "") }
            drawChooser(title: "Signal to \(target.pid) \(name)", items: items, choice: choice)
        case .policyChooser(let choice)?:
            let items = ForkPolicySetting.allCases.map { Format.pad($0.text, 10) + " " + $0.explanation }
            drawChooser(title: "Fork policy", items: items, choice: choice)
        case nil: break
        }
    }

    mutating func box(x: Int, y: Int, width: Int, height: Int, title: String) {
        canvas.fill(x: x, y: y, width: width, height: height, style: .normal)
        let (h, v): (Unicode.Scalar, Unicode.Scalar) = (g.horizontal, g.vertical)
        let corners: [Unicode.Scalar] = g.unicode ? ["┌", "┐", "└", "┘"] : ["+", "+", "+", "+"]
        for c in x..<(x + width) {
            canvas.put(h, x: c, y: y, style: .border)
            canvas.put(h, x: c, y: y + height - 1, style: .border)
        }
        for r in y..<(y + height) {
            canvas.put(v, x: x, y: r, style: .border)
            canvas.put(v, x: x + width - 1, y: r, style: .border)
        }
        canvas.put(corners[0], x: x, y: y, style: .border)
        canvas.put(corners[1], x: x + width - 1, y: y, style: .border)
        canvas.put(corners[2], x: x, y: y + height - 1, style: .border)
        canvas.put(corners[3], x: x + width - 1, y: y + height - 1, style: .border)
        canvas.text(" " + title + " ", x: x + 2, y: y, limit: width - 4, style: .title)
    }

    mutating func drawHelp() {
        var lines: [(String, Style)] = []
        for group in KeyBinding.Group.allCases {
            var heading = group.rawValue
            if group == .control && !view.controlsAvailable { heading += " (refused: \(view.readOnlyReason))" }
            lines.append((heading, .bold))
            for binding in KeyTable.bindings where binding.group == group {
                let keys = binding.keys.map { $0.caption(g) }.joined(separator: " ")
                let style: Style = group == .control && !view.controlsAvailable ? .dim : .normal
                lines.append(("  " + Format.pad(keys, 10) + binding.description, style))
            }
        }
        lines.append(("Timeline: \(g.sendOK) sent  \(g.sendInFlightHead) in flight  \(g.sendCancelled) cancelled  \(g.sendFailed) failed  \(g.quiesce) quiesced", .dim))
        lines.append(("          b/p/c fork before/parent/child  F fork failed  U unhooked fork  0-9 rebuild  \(g.exit) exit", .dim))
        let width = min(layout.width - 2, 86)
        let height = min(layout.height - 2, lines.count + 2)
        let x = (layout.width - width) / 2, y = max(1, (layout.height - height) / 2)
        box(x: x, y: y, width: width, height: height, title: "forkscope keys (any key closes)")
        let top = min(view.helpTop, max(0, lines.count - (height - 2)))
        for (n, line) in lines.dropFirst(top).prefix(height - 2).enumerated() {
            canvas.text(line.0, x: x + 2, y: y + 1 + n, limit: width - 4, style: line.1)
        }
    }

    /// The events held as a sequence diagram (`SequenceDiagram`), in a
    /// scrollable box over the dashboard.
    mutating func drawSequence() {
        let diagram = SequenceDiagram.render(events: Array(model.log), model: model, lookup: { model.strings[$0] }, ascii: !g.unicode)
        let lines = diagram.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        let width = layout.width - 2
        let height = layout.height - 2
        let x = 1, y = 1
        box(x: x, y: y, width: width, height: height, title: "sequence: hooks, fork stages, forks (arrows scroll, any key closes)")
        let top = min(view.sequenceTop, max(0, lines.count - (height - 2)))
        for (n, line) in lines.dropFirst(top).prefix(height - 2).enumerated() {
            canvas.text(String(line.dropFirst(view.sequenceLeft)), x: x + 2, y: y + 1 + n, limit: width - 4, style: .normal)
        }
    }

    mutating func drawChooser(title: String, items: [String], choice: Int) {
        let width = min(layout.width - 2, max(title.count + 6, (items.map(\.count).max() ?? 0) + 6))
        let height = min(layout.height - 2, items.count + 2)
        let x = (layout.width - width) / 2, y = max(1, (layout.height - height) / 2)
        box(x: x, y: y, width: width, height: height, title: title)
        let top = max(0, choice - (height - 3))
        for (n, item) in items.enumerated().dropFirst(top).prefix(height - 2) {
            let row = y + 1 + (n - top)
            if n == choice { canvas.fill(x: x + 1, y: row, width: width - 2, height: 1, style: .selected) }
            canvas.text(" " + item, x: x + 1, y: row, limit: width - 2, style: n == choice ? .selected : .normal)
        }
    }
}
