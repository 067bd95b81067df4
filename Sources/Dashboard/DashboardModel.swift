import EventRing

/// The clock pair a ring was created with: event times are monotonic
/// nanoseconds; `realtime` anchors them to the wall clock.
public struct RingOrigin: Sendable, Equatable {
    public var monotonic: UInt64
    public var realtime: UInt64

    public init(monotonic: UInt64, realtime: UInt64) {
        self.monotonic = monotonic
        self.realtime = realtime
    }

    public init(_ header: RingHeader) {
        self.init(monotonic: header.createdMonotonic, realtime: header.createdRealtime)
    }

    /// Nanoseconds since the ring was created (0 for an earlier time).
    @inline(__always) public func offset(_ time: UInt64) -> UInt64 { time >= monotonic ? time - monotonic : 0 }

    /// Wall-clock nanoseconds since the epoch.
    public func wall(_ time: UInt64) -> UInt64 { realtime &+ (time &- monotonic) }
}

/// An operator command a process reported (`operator.command`).
public struct OperatorNote: Equatable, Sendable {
    public var time: UInt64
    public var process: Int
    public var command: String
    public var target: Int32
}

/// A process in tree order, with what a renderer needs to draw its branch.
public struct TreeRow: Equatable, Sendable {
    public var index: Int
    public var depth: Int
    /// For each ancestor level below the root, whether that ancestor was the
    /// last of its siblings (no vertical line continues past it).
    public var ancestorIsLast: [Bool]
    /// Whether this process is the last of its siblings.
    public var isLast: Bool
}

/// The dashboard's state: every event folded into a process tree keyed by
/// (pid, start time), per-process exporter state and timelines, the recent
/// event log and the ring's accounting. A value: the view only reads it,
/// so a frozen copy (pause) or a fixed one (tests) renders the same way.
///
/// State folds, view draws, input returns an outcome (tokio-console's
/// split): nothing here performs I/O. Strings are resolved through the
/// lookup handed to `fold` and kept, so the model renders on its own.
public struct DashboardModel: Sendable, Equatable {
    public let origin: RingOrigin
    public private(set) var processes: [ProcessModel] = []
    public private(set) var arrows: [ForkArrow] = []
    public private(set) var log: EventLog
    /// Resolved string-table entries, by offset.
    public private(set) var strings: [UInt64: String] = [:]
    public private(set) var accounting: RingAccounting?
    public private(set) var eventCount = 0
    /// Events of a kind this build does not know (a newer writer).
    public private(set) var unknownKinds = 0
    public private(set) var firstTime: UInt64 = 0
    public private(set) var lastTime: UInt64 = 0
    public private(set) var operatorCommands: [OperatorNote] = []
    /// Changes whenever the model does, so a view can skip an unchanged frame.
    public private(set) var revision = 0

    private var index: [ProcessKey: Int] = [:]
    private var byPid: [Int32: Int] = [:]
    /// Lane → the process index that last published on it (-1: none).
    private var laneProcess: [Int] = []
    /// Lane → its owner as the reader last saw it (pid, start ticks).
    private var laneOwners: [ProcessKey] = []
    private var arrowPairs: Set<UInt64> = []
    private var badStrings: Set<UInt64> = []

    public init(origin: RingOrigin, logCapacity: Int = 100_000) {
        self.origin = origin
        log = EventLog(capacity: logCapacity)
    }

    // MARK: queries

    /// The newest incarnation with this key.
    public func process(_ key: ProcessKey) -> ProcessModel? {
        index[key].map { processes[$0] }
    }

    public func processIndex(_ key: ProcessKey) -> Int? { index[key] }

    /// The newest incarnation of `pid`.
    public func processIndex(pid: Int32) -> Int? { byPid[pid] }

    /// The string at `offset`, as resolved when its event was folded.
    public func string(at offset: UInt64) -> String? { strings[offset] }

    /// Accounting of the lane `process` publishes on.
    public func laneAccounting(of process: ProcessModel) -> LaneAccounting? {
        guard let accounting, process.lane >= 0, process.lane < accounting.lanes.count else { return nil }
        return accounting.lanes[process.lane]
    }

    /// Whether events of this process were lost before its first one seen
    /// (its lane was overwritten and its first event was not the lane's first).
    public func historyLost(_ process: ProcessModel) -> Bool {
        guard let lane = laneAccounting(of: process) else { return false }
        return lane.overwritten &+ lane.torn &+ lane.abandoned > 0 && !process.sawStart
    }

    /// Every process in tree order: roots by first sight, children by first
    /// sight under their parent.
    public func tree() -> [TreeRow] {
        var rows: [TreeRow] = []
        rows.reserveCapacity(processes.count)
        func order(_ a: Int, _ b: Int) -> Bool {
            (processes[a].firstSeen, processes[a].key.pid, a) < (processes[b].firstSeen, processes[b].key.pid, b)
        }
        func visit(_ i: Int, depth: Int, ancestors: [Bool], isLast: Bool) {
            rows.append(TreeRow(index: i, depth: depth, ancestorIsLast: ancestors, isLast: isLast))
            let kids = processes[i].children.sorted(by: order)
            let next = depth == 0 ? [] : ancestors + [isLast]
            for (n, child) in kids.enumerated() {
                visit(child, depth: depth + 1, ancestors: next, isLast: n == kids.count - 1)
            }
        }
        let roots = processes.indices.filter { processes[$0].parent == nil }.sorted(by: order)
        for (n, root) in roots.enumerated() { visit(root, depth: 0, ancestors: [], isLast: n == roots.count - 1) }
        return rows
    }

    // MARK: folding

    /// Records the reader's accounting (before folding the events of the
    /// same read: lane owners tell incarnations of one pid apart).
    public mutating func record(_ accounting: RingAccounting) {
        if self.accounting != accounting {
            self.accounting = accounting
            revision &+= 1
        }
        if laneOwners.count < accounting.lanes.count {
            laneOwners += Array(repeating: ProcessKey(pid: 0, start: 0), count: accounting.lanes.count - laneOwners.count)
        }
        for lane in accounting.lanes where lane.lane >= 0 && lane.lane < laneOwners.count {
            laneOwners[lane.lane] = ProcessKey(pid: lane.ownerPid, start: lane.ownerStart)
        }
    }

    /// Folds events merged by time (`RingReader.merge`); `strings` resolves
    /// string-table offsets (`RingReader.string(at:)`).
    public mutating func fold<S: Sequence>(_ events: S, strings resolve: (UInt64) -> String?) where S.Element == Event {
        let masks = DashboardModel.stringArgumentMasks
        var folded = false
        for event in events {
            folded = true
            if Int(event.rawKind) < masks.count, masks[Int(event.rawKind)] != 0 {
                cacheStrings(event, mask: masks[Int(event.rawKind)], resolve)
            }
            apply(event)
        }
        if folded { revision &+= 1 }
    }

    /// Marks processes that are no longer alive but published no exit:
    /// `isAlive` answers for a key, or nil when it cannot tell. A process
    /// found gone ends at its last event, the last sign of life there is.
    public mutating func observeLiveness(isAlive: (ProcessKey) -> Bool?) {
        var changed = false
        for i in processes.indices where !processes[i].state.isEnded {
            guard isAlive(processes[i].key) == false else { continue }
            end(i, state: .gone, at: processes[i].lastSeen)
            changed = true
        }
        if changed { revision &+= 1 }
    }

    /// For each kind, a bit per argument that is a string-table offset.
    static let stringArgumentMasks: [UInt8] = {
        let top = Int(EventKind.allCases.map(\.rawValue).max() ?? 0)
        var masks = [UInt8](repeating: 0, count: top + 1)
        for kind in EventKind.allCases {
            for (n, argument) in kind.arguments.enumerated() where argument.type == .string {
                masks[Int(kind.rawValue)] |= 1 << n
            }
        }
        return masks
    }()

    private mutating func cacheStrings(_ event: Event, mask: UInt8, _ resolve: (UInt64) -> String?) {
        for n in 0..<4 where mask & (1 << n) != 0 {
            let offset = n == 0 ? event.a0 : n == 1 ? event.a1 : n == 2 ? event.a2 : event.a3
            if strings[offset] != nil || badStrings.contains(offset) { continue }
            if let text = resolve(offset) { strings[offset] = text } else { badStrings.insert(offset) }
        }
    }

    private func text(_ offset: UInt64) -> String {
        strings[offset] ?? "<bad string offset \(offset)>"
    }

    private mutating func apply(_ e: Event) {
        eventCount += 1
        if firstTime == 0 || e.time < firstTime { firstTime = e.time }
        if e.time > lastTime { lastTime = e.time }
        log.append(e)
        let kind = e.kind
        let i = processIndex(for: e, kind: kind)
        processes[i].events += 1
        if e.time > processes[i].lastSeen { processes[i].lastSeen = e.time }
        guard let kind else {
            unknownKinds += 1
            return
        }
        let t = e.time
        switch kind {
        case .processStart:
            processes[i].sawStart = true
            processes[i].ppid = Int32(truncatingIfNeeded: e.a0)
            if let role = ProcessRole(rawValue: e.a1), role != .unknown { processes[i].role = role }
            let name = text(e.a2)
            if !name.isEmpty { processes[i].name = name }
            if processes[i].parent == nil, e.a0 > 0, let parent = byPid[Int32(truncatingIfNeeded: e.a0)] {
                link(child: i, parent: parent, arrowAt: nil)
            }
            processes[i].timeline.add(Mark(time: t, kind: .processStart))
        case .processExit:
            end(i, state: .exited(status: Int32(truncatingIfNeeded: e.a0), signal: Int32(truncatingIfNeeded: e.a1)), at: t)
        case .forkBeforeStart:
            if !processes[i].state.isEnded { processes[i].state = .quiescing }
            if let policy = ForkPolicy(rawValue: e.a1) { processes[i].policy = policy }
            processes[i].timeline.openQuiesce(at: t)
            processes[i].timeline.add(Mark(time: t, kind: .forkBefore))
        case .forkBeforeEnd:
            if e.a0 == Outcome.ok.rawValue {
                if !processes[i].state.isEnded { processes[i].state = .inFork }
            } else {
                if !processes[i].state.isEnded { processes[i].state = .running }
                processes[i].timeline.closeQuiesce(at: t)
                processes[i].lastError = ErrorNote(time: t, text: "fork not performed: \(e.a2) before hook(s) failed")
            }
        case .forkParent:
            if !processes[i].state.isEnded { processes[i].state = .running }
            processes[i].timeline.closeQuiesce(at: t)
            processes[i].timeline.add(Mark(time: t, kind: .forkParent))
            if e.a0 > 0 { _ = child(pid: Int32(truncatingIfNeeded: e.a0), of: i, at: t) }
        case .forkChild:
            processes[i].forkGeneration = UInt32(truncatingIfNeeded: e.a1)
            if processes[i].parent == nil, e.a0 > 0, let parent = byPid[Int32(truncatingIfNeeded: e.a0)], parent != i {
                link(child: i, parent: parent, arrowAt: t)
            }
            processes[i].timeline.add(Mark(time: t, kind: .forkChild))
        case .forkFailed:
            if !processes[i].state.isEnded { processes[i].state = .running }
            processes[i].timeline.closeQuiesce(at: t)
            processes[i].timeline.add(Mark(time: t, kind: .forkFailed))
            let stage = ForkStage(rawValue: e.a1)?.name ?? "?"
            let cause = e.a0 == 0 ? "a hook failed" : EventText.errnoName(e.a0)
            processes[i].lastError = ErrorNote(time: t, text: "fork failed in \(stage): \(cause)")
        case .forkDetectedWithoutHooks:
            processes[i].timeline.add(Mark(time: t, kind: .unhookedFork))
            if processes[i].parent == nil, e.a0 > 0, let parent = byPid[Int32(truncatingIfNeeded: e.a0)], parent != i {
                link(child: i, parent: parent, arrowAt: t)
            }
            processes[i].lastError = ErrorNote(time: t, text: "forked without the at-fork hooks (detected by the fork counter)")
        case .hookRun:
            let outcome = Outcome(rawValue: e.a2) ?? .failed
            let name = text(e.a1)
            processes[i].noteHook(HookRun(time: t, stage: ForkStage(rawValue: e.a0), name: name, outcome: outcome, micros: e.a3))
            if outcome != .ok {
                processes[i].lastError = ErrorNote(time: t, text: "hook \(quoted(name)) \(outcome.name) in \(ForkStage(rawValue: e.a0)?.name ?? "?")")
            }
        case .hookRegistered:
            processes[i].registeredHooks += 1
        case .hookRemoved:
            if e.a2 != 0 { processes[i].registeredHooks = max(0, processes[i].registeredHooks - 1) }
        case .runtimeQuiesce:
            processes[i].runtimeGeneration = UInt32(truncatingIfNeeded: e.a0)
            if !processes[i].state.isEnded, processes[i].state != .inFork { processes[i].state = .quiescing }
            processes[i].timeline.openQuiesce(at: t)
        case .runtimeRebuild:
            let generation = UInt32(truncatingIfNeeded: e.a1)
            processes[i].runtimeGeneration = generation
            processes[i].timeline.add(Mark(time: t, kind: .rebuild(generation: generation)))
            processes[i].threadsDeferred = true
            processes[i].markRunning()
        case .runtimeResume:
            processes[i].runtimeGeneration = UInt32(truncatingIfNeeded: e.a0)
            processes[i].threadsDeferred = e.a1 == 0
            if !processes[i].state.isEnded { processes[i].state = .running }
            processes[i].timeline.closeQuiesce(at: t)
        case .threadStart:
            processes[i].threads += 1
            processes[i].threadsDeferred = false
            processes[i].markRunning()
        case .threadStop:
            processes[i].threads = max(0, processes[i].threads - 1)
        case .sendStart:
            processes[i].markRunning()
            let send = Send(id: e.a0, start: t, end: nil, spans: e.a1, bytes: e.a2, attempt: e.a3, outcome: .inFlight)
            processes[i].timeline.inFlight.append(send)
        case .sendComplete:
            finishSend(i, id: e.a0, at: t, micros: e.a2, spans: e.a3, outcome: .completed(status: UInt16(truncatingIfNeeded: e.a1)))
            if (200..<300).contains(e.a1) { processes[i].sendsOK += 1 } else {
                processes[i].sendsFailed += 1
                processes[i].lastError = ErrorNote(time: t, text: "agent answered HTTP \(e.a1) to send #\(e.a0)")
            }
        case .sendCancel:
            finishSend(i, id: e.a0, at: t, micros: e.a2, spans: e.a3, outcome: .cancelled(CancelReason(rawValue: e.a1)))
            processes[i].sendsCancelled += 1
        case .sendFail:
            let message = text(e.a1)
            if e.a0 != 0 || processes[i].timeline.inFlight.contains(where: { $0.id == 0 }) {
                finishSend(i, id: e.a0, at: t, micros: e.a2, spans: nil, outcome: .failed(message))
                processes[i].sendsFailed += 1
            }
            processes[i].lastError = ErrorNote(time: t, text: e.a0 == 0 ? message : "send #\(e.a0) failed: \(message)")
        case .spanRequeued:
            processes[i].gauge.requeuedSpans &+= e.a0
        case .spanDropped:
            let reason = DropReason(rawValue: e.a1) ?? .closed
            processes[i].gauge.droppedByReason[reason, default: 0] &+= e.a0
        case .transportOpen:
            processes[i].transport = text(e.a1)
            if let policy = ForkPolicy(rawValue: e.a2) { processes[i].policy = policy }
        case .transportClose:
            break
        case .operatorCommand:
            let note = OperatorNote(time: t, process: i, command: text(e.a0), target: Int32(truncatingIfNeeded: e.a3))
            operatorCommands.append(note)
            if operatorCommands.count > 64 { operatorCommands.removeFirst(operatorCommands.count - 64) }
            processes[i].timeline.add(Mark(time: t, kind: .operatorCommand))
        case .workerSpawned:
            guard e.a0 > 0, let worker = child(pid: Int32(truncatingIfNeeded: e.a0), of: i, at: t) else { break }
            if processes[worker].role == .unknown { processes[worker].role = .worker }
            processes[worker].workerIndex = e.a1
        case .workerExited:
            guard e.a0 > 0, let worker = byPid[Int32(truncatingIfNeeded: e.a0)], worker != i else { break }
            if processes[worker].parent == nil { link(child: worker, parent: i, arrowAt: nil) }
            guard processes[worker].parent == i, !processes[worker].state.isEnded else { break }
            end(worker, state: .exited(status: Int32(truncatingIfNeeded: e.a1), signal: Int32(truncatingIfNeeded: e.a2)), at: t)
        case .serverHook:
            processes[i].noteHook(HookRun(time: t, stage: nil, name: text(e.a0), outcome: .ok, micros: 0))
            processes[i].markRunning()
        case .writerGauge:
            processes[i].gauge.buffered = e.a0
            processes[i].gauge.accepted = e.a1
            processes[i].gauge.sent = e.a2
            processes[i].gauge.lockHolder = e.a3
            processes[i].gauge.updated = t
            processes[i].markRunning()
        case .writerLosses:
            processes[i].gauge.requeued = e.a0
            processes[i].gauge.dropped = e.a1
            processes[i].gauge.cancelled = e.a2
            processes[i].gauge.failed = e.a3
            processes[i].gauge.updated = t
        case .cancelRequested:
            processes[i].cancelRequests += 1
            if e.a2 != 0, let n = processes[i].timeline.inFlight.firstIndex(where: { $0.id == e.a0 }) {
                processes[i].timeline.inFlight[n].cancelRequestedAt = t
            }
        case .drainWait:
            processes[i].lastDrain = DrainNote(outcome: Outcome(rawValue: e.a2) ?? .failed, micros: e.a3)
        case .agentRequest:
            processes[i].timeline.add(Mark(time: t, kind: .agentRequest))
            processes[i].agentRequests += 1
            processes[i].agentDelayMilliseconds = e.a3
            processes[i].markRunning()
        case .mark:
            break
        }
    }

    /// Ends the send `id` (or, when its start was lost, records it with the
    /// start its duration implies).
    private mutating func finishSend(_ i: Int, id: UInt64, at t: UInt64, micros: UInt64, spans: UInt64?, outcome: SendOutcome) {
        var send: Send
        if let n = processes[i].timeline.inFlight.firstIndex(where: { $0.id == id }) {
            send = processes[i].timeline.inFlight.remove(at: n)
        } else {
            let duration = micros &* 1000
            send = Send(id: id, start: duration <= t ? t - duration : t, end: nil, spans: spans ?? 0, bytes: 0, attempt: 0, outcome: .inFlight)
            send.startReconstructed = true
        }
        send.end = max(t, send.start)
        send.outcome = outcome
        processes[i].timeline.finish(send)
        processes[i].lastSend = send
    }

    /// Ends a process: its state, its open quiesce window, its sends.
    private mutating func end(_ i: Int, state: ProcessState, at t: UInt64) {
        if case .exited = processes[i].state, state == .gone { return }
        processes[i].state = state
        processes[i].endedAt = t
        processes[i].timeline.closeQuiesce(at: t)
        for var send in processes[i].timeline.inFlight {
            send.end = max(t, send.start)
            send.outcome = .unfinished
            processes[i].timeline.finish(send)
        }
        processes[i].timeline.inFlight.removeAll()
        var signaled = false
        if case .exited(_, let signal) = state { signaled = signal != 0 }
        processes[i].timeline.add(Mark(time: t, kind: .exit(signaled: signaled)))
    }

    // MARK: identity

    /// The process an event belongs to. The fast path: the lane's current
    /// process with the event's pid. A pid seen again as a new incarnation
    /// (a second `process.start`, or events on another lane after an exit,
    /// or a lane owner with another start time) becomes a new process.
    @inline(__always)
    private mutating func processIndex(for e: Event, kind: EventKind?) -> Int {
        if e.lane >= 0, e.lane < laneProcess.count {
            let i = laneProcess[e.lane]
            if i >= 0, processes[i].key.pid == e.pid, !processes[i].state.isEnded,
               !(kind == .processStart && processes[i].sawStart) {
                return i
            }
        }
        return resolveProcess(for: e, kind: kind)
    }

    private func laneOwnerStart(_ lane: Int, pid: Int32) -> UInt64? {
        guard lane >= 0, lane < laneOwners.count, laneOwners[lane].pid == pid, laneOwners[lane].start != 0 else { return nil }
        return laneOwners[lane].start
    }

    private mutating func resolveProcess(for e: Event, kind: EventKind?) -> Int {
        let lane = e.lane
        let ownerStart = laneOwnerStart(lane, pid: e.pid)
        let announcedStart: UInt64? = kind == .processStart && e.a3 != 0 ? e.a3 : nil
        var chosen: Int?
        if let i = byPid[e.pid] {
            let p = processes[i]
            let same: Bool
            if kind == .processStart && p.state.isEnded {
                // A start after an end: a new incarnation, even when the
                // start times match (they are clock ticks, 10 ms apart:
                // a pid reused at once can repeat one).
                same = false
            } else if kind == .processStart && p.sawStart {
                // A second start: the same incarnation only if it says so.
                same = announcedStart != nil && announcedStart == p.key.start
            } else if p.state.isEnded {
                // A late event of the ended process on its own lane, unless
                // the lane now belongs to another incarnation.
                same = p.lane == lane && kind != .processStart
                    && (ownerStart == nil || p.key.start == 0 || ownerStart == p.key.start)
            } else if p.lane >= 0 && p.lane != lane {
                // A second lane of the same process, or a pid reused after a
                // death nobody reported: the start times tell them apart.
                if let start = announcedStart ?? ownerStart, p.key.start != 0 { same = start == p.key.start } else { same = true }
            } else {
                same = true
            }
            if same {
                chosen = i
            } else if !p.state.isEnded {
                end(i, state: .gone, at: p.lastSeen)
            }
        }
        let i: Int
        if let chosen {
            i = chosen
            processes[i].placeholder = false
        } else {
            i = create(ProcessKey(pid: e.pid, start: announcedStart ?? ownerStart ?? 0), at: e.time)
        }
        if let start = announcedStart ?? ownerStart, processes[i].key.start != start,
           processes[i].key.start == 0 || announcedStart != nil {
            rekey(i, start: start)
        }
        if lane >= 0 {
            processes[i].lane = lane
            if lane >= laneProcess.count { laneProcess += Array(repeating: -1, count: lane + 1 - laneProcess.count) }
            laneProcess[lane] = i
        }
        return i
    }

    private mutating func create(_ key: ProcessKey, at time: UInt64) -> Int {
        let i = processes.count
        processes.append(ProcessModel(key: key, time: time))
        index[key] = i
        byPid[key.pid] = i
        return i
    }

    private mutating func rekey(_ i: Int, start: UInt64) {
        let old = processes[i].key
        if index[old] == i { index[old] = nil }
        processes[i].key.start = start
        index[processes[i].key] = i
    }

    /// The process a parent reports as its new child (`fork.parent`,
    /// `worker.spawned`): the child's own incarnation when it already
    /// published, else a placeholder until it does.
    private mutating func child(pid: Int32, of parent: Int, at t: UInt64) -> Int? {
        guard pid != processes[parent].key.pid else { return nil }  // a hostile or garbled event
        if let i = byPid[pid], i != parent {
            let p = processes[i]
            if p.parent == parent {
                addArrow(parent: parent, child: i, at: t)
                return i
            }
            if p.parent == nil, !p.state.isEnded, !isAncestor(i, of: parent) {
                link(child: i, parent: parent, arrowAt: t)
                return i
            }
            if !p.state.isEnded { end(i, state: .gone, at: max(p.lastSeen, t)) }
        }
        let i = create(ProcessKey(pid: pid, start: 0), at: t)
        processes[i].placeholder = true
        processes[i].forkGeneration = processes[parent].forkGeneration &+ 1
        link(child: i, parent: parent, arrowAt: t)
        return i
    }

    private func isAncestor(_ candidate: Int, of i: Int) -> Bool {
        var current: Int? = i
        var steps = 0
        while let c = current, steps < processes.count {
            if c == candidate { return true }
            current = processes[c].parent
            steps += 1
        }
        return false
    }

    private mutating func link(child: Int, parent: Int, arrowAt time: UInt64?) {
        guard child != parent, processes[child].parent == nil, !isAncestor(child, of: parent) else { return }
        processes[child].parent = parent
        processes[parent].children.append(child)
        if let time { addArrow(parent: parent, child: child, at: time) }
    }

    private mutating func addArrow(parent: Int, child: Int, at time: UInt64) {
        let pair = UInt64(UInt32(parent)) << 32 | UInt64(UInt32(child))
        guard arrowPairs.insert(pair).inserted else { return }
        insertSorted(&arrows, ForkArrow(time: time, parent: parent, child: child)) { $0.time }
    }
}
