import EventRing

/// A message on the status line until a given time.
public struct StatusMessage: Equatable, Sendable {
    public enum Kind: Sendable { case info, error }
    public var text: String
    public var kind: Kind
    /// Monotonic ns after which the status line shows the keys again.
    public var until: UInt64
}

/// What the main loop must do after a key: the input handler changes only
/// view state and says what else is needed; only the loop performs side
/// effects (tokio-console's `UpdateKind`, htop's action flags).
public enum InputOutcome: Equatable, Sendable {
    /// The key is not bound (or did nothing).
    case ignored
    case redraw
    case quit
    /// Hand this to the controller.
    case control(ControlCommand)
    /// Write the events held to a file.
    case export
    /// Save the ring's bytes to a file (a recording).
    case record
    /// Move the replay clock (a saved ring played back; else nothing).
    case replay(Action)
}

/// Everything about the view that is not the data: selection, scrolling,
/// zoom, pause, search, filter, open prompt or overlay, status message.
public struct ViewState: Equatable, Sendable {
    public enum Pane: Equatable, Sendable { case details, events, logs }
    public enum Prompt: Equatable, Sendable { case search, filter, burst, agentDelay }
    public enum Overlay: Equatable, Sendable {
        case help
        /// The sequence diagram of the events held (`s`).
        case sequence
        case signalChooser(target: ProcessKey, choice: Int)
        case policyChooser(choice: Int)
    }

    /// Nanoseconds per timeline column, from fine to coarse.
    public static let zoomLevels: [UInt64] = [
        100_000, 200_000, 500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 20_000_000, 50_000_000,
        100_000_000, 200_000_000, 500_000_000, 1_000_000_000, 2_000_000_000, 5_000_000_000, 10_000_000_000,
        30_000_000_000, 60_000_000_000,
    ]
    public static let defaultZoom = 8  // 50 ms per column
    static let statusSeconds: UInt64 = 4

    public var selected: ProcessKey?
    public var processTop = 0
    /// The lower pane shown beside the details (or alone when narrow).
    public var pane: Pane = .events
    /// Log lines scrolled back from the newest (0: follow new lines).
    public var logOffset = 0
    public var zoom = ViewState.defaultZoom
    /// The time at the right edge of the timeline; nil follows now.
    public var rightEdge: UInt64?
    public var paused = false
    public var search = ""
    public var filterText = ""
    public var filter = EventFilter()
    public var prompt: Prompt?
    public var promptText = ""
    public var overlay: Overlay?
    public var helpTop = 0
    /// Scroll of the sequence diagram: first line and first column shown.
    public var sequenceTop = 0
    public var sequenceLeft = 0
    public var status: StatusMessage?
    /// The scenario narration line (nil: none).
    public var narration: String?
    /// Whether a controller is attached; otherwise why not (shown when a
    /// control key is refused).
    public var controlsAvailable: Bool
    public var readOnlyReason: String
    /// The log file shown in the log pane (nil: the selected process's own).
    public var logFile: Int?
    public var burstRequests = 200
    public var agentDelayMilliseconds = 1000

    public init(controlsAvailable: Bool, readOnlyReason: String = "no controller") {
        self.controlsAvailable = controlsAvailable
        self.readOnlyReason = readOnlyReason
    }

    public var nanosecondsPerColumn: UInt64 { ViewState.zoomLevels[max(0, min(zoom, ViewState.zoomLevels.count - 1))] }

    /// Chooses the finest zoom at which `span` nanoseconds fit in `columns`.
    public mutating func fit(span: UInt64, columns: Int) {
        guard columns > 0 else { return }
        zoom = ViewState.zoomLevels.firstIndex { $0 * UInt64(columns) >= span } ?? ViewState.zoomLevels.count - 1
    }

    public mutating func say(_ text: String, error: Bool = false, now: UInt64) {
        status = StatusMessage(text: text, kind: error ? .error : .info, until: now &+ ViewState.statusSeconds * 1_000_000_000)
    }

    // MARK: derived views of the model

    /// The process rows shown: the tree, narrowed by the filter (a match's
    /// ancestors stay, so its branch still reads).
    public func rows(_ model: DashboardModel) -> [TreeRow] {
        let tree = model.tree()
        guard filter.narrowsProcesses else { return tree }
        var keep = Set<Int>()
        for row in tree where filter.matches(process: model.processes[row.index]) {
            var current: Int? = row.index
            while let c = current, keep.insert(c).inserted { current = model.processes[c].parent }
        }
        return tree.filter { keep.contains($0.index) }
    }

    /// The selected row's position in `rows` (the first row when nothing, or
    /// something no longer shown, is selected).
    public func selectedPosition(in rows: [TreeRow], _ model: DashboardModel) -> Int? {
        guard !rows.isEmpty else { return nil }
        if let selected, let i = model.processIndex(selected), let n = rows.firstIndex(where: { $0.index == i }) { return n }
        return 0
    }

    public func selectedProcess(_ model: DashboardModel) -> ProcessModel? {
        let rows = rows(model)
        guard let n = selectedPosition(in: rows, model) else { return nil }
        return model.processes[rows[n].index]
    }

    /// Events the log pane shows, oldest first (indices into `model.log`).
    public func logIndices(_ model: DashboardModel) -> [Int] {
        if filter.isEmpty { return Array(model.log.indices) }
        return model.log.indices.filter { filter.matches(model.log[$0], in: model) }
    }

    // MARK: input

    /// Applies a key. `now` is the monotonic time (status messages expire).
    public mutating func handle(_ key: Key, model: DashboardModel, layout: DashboardLayout, now: UInt64) -> InputOutcome {
        if prompt != nil { return handlePrompt(key, model: model, now: now) }
        switch overlay {
        case .help?:
            switch key {
            case .up: helpTop = max(0, helpTop - 1); return .redraw
            case .down: helpTop += 1; return .redraw
            case .pageUp: helpTop = max(0, helpTop - 10); return .redraw
            case .pageDown: helpTop += 10; return .redraw
            case .character("q"): overlay = nil; return .quit
            default: overlay = nil; return .redraw  // any other key closes help, as in htop
            }
        case .sequence?:
            switch key {
            case .up: sequenceTop = max(0, sequenceTop - 1); return .redraw
            case .down: sequenceTop += 1; return .redraw
            case .pageUp: sequenceTop = max(0, sequenceTop - 10); return .redraw
            case .pageDown: sequenceTop += 10; return .redraw
            case .left: sequenceLeft = max(0, sequenceLeft - 12); return .redraw
            case .right: sequenceLeft += 12; return .redraw
            case .character("q"): overlay = nil; return .quit
            default: overlay = nil; return .redraw  // any other key closes it, like help
            }
        case .signalChooser(let target, let choice)?:
            switch key {
            case .up: overlay = .signalChooser(target: target, choice: max(0, choice - 1)); return .redraw
            case .down: overlay = .signalChooser(target: target, choice: min(SignalChoice.signals.count - 1, choice + 1)); return .redraw
            case .enter:
                overlay = nil
                return .control(.kill(target: target, signal: SignalChoice.signals[choice]))
            case .escape, .character("q"), .character("k"): overlay = nil; return .redraw
            default: return .ignored
            }
        case .policyChooser(let choice)?:
            let count = ForkPolicySetting.allCases.count
            switch key {
            case .up: overlay = .policyChooser(choice: max(0, choice - 1)); return .redraw
            case .down: overlay = .policyChooser(choice: min(count - 1, choice + 1)); return .redraw
            case .enter:
                overlay = nil
                return .control(.forkPolicy(ForkPolicySetting.allCases[choice]))
            case .escape, .character("q"), .character("p"): overlay = nil; return .redraw
            default: return .ignored
            }
        case nil:
            break
        }
        if key == .escape {
            if status != nil || !search.isEmpty {
                status = nil
                search = ""
                return .redraw
            }
            return .ignored
        }
        guard let action = KeyTable.action(for: key) else { return .ignored }
        return perform(action, model: model, layout: layout, now: now)
    }

    /// One action of the key table.
    public mutating func perform(_ action: Action, model: DashboardModel, layout: DashboardLayout, now: UInt64) -> InputOutcome {
        if action.isControl && !controlsAvailable {
            let binding = KeyTable.binding(for: action)
            let key = binding?.keys.first.map { $0.caption(.ascii) + " " } ?? ""
            say("read-only: \(key)(\(binding?.label ?? action.rawValue)) refused: \(readOnlyReason)", error: true, now: now)
            return .redraw
        }
        let rows = rows(model)
        let position = selectedPosition(in: rows, model)
        let visible = max(1, layout.processRows.count)
        func select(_ n: Int) {
            guard !rows.isEmpty else { return }
            let n = max(0, min(rows.count - 1, n))
            selected = model.processes[rows[n].index].key
            if n < processTop { processTop = n }
            if n >= processTop + visible { processTop = n - visible + 1 }
        }
        func target() -> ProcessKey? {
            guard let position else { return nil }
            return model.processes[rows[position].index].key
        }
        switch action {
        case .help:
            overlay = .help
            helpTop = 0
        case .quit:
            return .quit
        case .moveUp: select((position ?? 0) - 1)
        case .moveDown: select((position ?? -1) + 1)
        case .firstProcess: select(0)
        case .lastProcess: select(rows.count - 1)
        case .scrollLogUp:
            let page = max(1, layout.paneRows.count - 1)
            logOffset += page
        case .scrollLogDown:
            let page = max(1, layout.paneRows.count - 1)
            logOffset = max(0, logOffset - page)
        case .panLeft:
            let edge = rightEdge ?? now
            let step = nanosecondsPerColumn * UInt64(max(1, layout.timelineWidth / 4))
            rightEdge = edge > step ? edge - step : 0
        case .panRight:
            if let edge = rightEdge {
                let (next, overflow) = edge.addingReportingOverflow(nanosecondsPerColumn * UInt64(max(1, layout.timelineWidth / 4)))
                rightEdge = overflow || next >= now ? nil : next
            }
        case .zoomIn: zoom = max(0, zoom - 1)
        case .zoomOut: zoom = min(ViewState.zoomLevels.count - 1, zoom + 1)
        case .followLive:
            rightEdge = nil
            logOffset = 0
        case .togglePause:
            paused.toggle()
            say(paused ? "paused: the view is frozen, events are still read (Space resumes)" : "resumed", now: now)
        case .search:
            prompt = .search
            promptText = search
        case .nextMatch, .previousMatch:
            guard !search.isEmpty else {
                say("no search: press / first", error: true, now: now)
                return .redraw
            }
            jumpToMatch(older: action == .previousMatch, model: model, now: now)
        case .filter:
            prompt = .filter
            promptText = filterText
        case .switchPane:
            if layout.detailsWidth > 0 {
                pane = pane == .logs ? .events : .logs
            } else {
                pane = pane == .details ? .events : pane == .events ? .logs : .details
            }
            logOffset = 0
        case .nextLogFile:
            logFile = (logFile ?? -1) + 1
            if pane == .details || pane == .events { pane = .logs }
        case .export:
            return .export
        case .record:
            return .record
        case .sequence:
            overlay = .sequence
            sequenceTop = 0
            sequenceLeft = 0
        case .redraw:
            return .redraw
        case .fork:
            guard let key = target() else { return refuseNoTarget(now) }
            return .control(.fork(target: key))
        case .unsafeFork:
            guard let key = target() else { return refuseNoTarget(now) }
            return .control(.unsafeFork(target: key))
        case .cancelSend:
            guard let key = target(), let process = model.process(key) else { return refuseNoTarget(now) }
            if process.inFlight == nil {
                say("\(key.pid) has no send in flight to cancel (the command is sent anyway)", now: now)
            }
            return .control(.cancelSend(target: key))
        case .kill:
            guard let key = target() else { return refuseNoTarget(now) }
            if model.process(key)?.state.isEnded == true {
                say("\(key.pid) has already ended", error: true, now: now)
                return .redraw
            }
            overlay = .signalChooser(target: key, choice: 0)
        case .burst:
            prompt = .burst
            promptText = String(burstRequests)
        case .agentDelay:
            prompt = .agentDelay
            promptText = String(agentDelayMilliseconds)
        case .forkPolicy:
            overlay = .policyChooser(choice: 0)
        case .replayStep, .replaySlower, .replayFaster, .replaySeekBack, .replaySeekForward:
            return .replay(action)
        }
        return .redraw
    }

    private mutating func refuseNoTarget(_ now: UInt64) -> InputOutcome {
        say("no process selected", error: true, now: now)
        return .redraw
    }

    private mutating func handlePrompt(_ key: Key, model: DashboardModel, now: UInt64) -> InputOutcome {
        guard let prompt else { return .ignored }
        switch key {
        case .escape:
            self.prompt = nil
            if prompt == .search { search = "" }
            return .redraw
        case .backspace:
            if !promptText.isEmpty { promptText.removeLast() }
        case .enter:
            self.prompt = nil
            switch prompt {
            case .search:
                search = promptText
                logOffset = 0
                pane = .events  // the search is the event log's
                if !search.isEmpty { jumpToMatch(older: true, model: model, now: now, fromNewest: true) }
            case .filter:
                filterText = promptText
                filter = EventFilter(parsing: promptText)
                logOffset = 0
                processTop = 0
                say(filter.isEmpty ? "filter cleared" : "filter: \(filter.summary)", now: now)
            case .burst:
                guard let n = Int(promptText), (1...100_000).contains(n) else {
                    say("burst: give a number of requests, 1 to 100000", error: true, now: now)
                    return .redraw
                }
                burstRequests = n
                return .control(.burst(requests: n))
            case .agentDelay:
                guard let ms = Int(promptText), (0...600_000).contains(ms) else {
                    say("agent delay: give milliseconds, 0 to 600000", error: true, now: now)
                    return .redraw
                }
                agentDelayMilliseconds = ms
                return .control(.agentDelay(milliseconds: ms))
            }
            return .redraw
        case .character(let c):
            if prompt == .burst || prompt == .agentDelay {
                guard c.properties.numericType != nil, c.isASCII else { return .ignored }
            }
            if promptText.unicodeScalars.count < 200 { promptText.unicodeScalars.append(c) }
        default:
            return .ignored
        }
        if prompt == .search { search = promptText }
        return .redraw
    }

    /// Scrolls the log so the next older (or newer) line containing the
    /// search text is at the bottom.
    mutating func jumpToMatch(older: Bool, model: DashboardModel, now: UInt64, fromNewest: Bool = false) {
        let indices = logIndices(model)
        guard !indices.isEmpty else { return }
        let text = EventText(model: model)
        let bottom = fromNewest ? indices.count : indices.count - 1 - min(logOffset, indices.count - 1)
        let needle = search.lowercased()
        let candidates: StrideTo<Int> = older ? stride(from: bottom - 1, to: -1, by: -1) : stride(from: bottom + 1, to: indices.count, by: 1)
        for n in candidates where text.compactLine(model.log[indices[n]]).lowercased().contains(needle) {
            logOffset = indices.count - 1 - n
            return
        }
        say("\"\(search)\": no \(older ? "older" : "newer") match", error: true, now: now)
    }
}
