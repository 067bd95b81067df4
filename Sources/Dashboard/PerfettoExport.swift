import EventRing

/// Renders ring events as Chrome/Perfetto trace-event JSON (the object form:
/// `{"traceEvents":[…],"displayTimeUnit":"ms"}`), for ui.perfetto.dev or
/// chrome://tracing.
///
/// - Every process *incarnation* — (pid, start time) — gets its own
///   synthetic pid, so a reused pid never merges two processes' tracks.
/// - Every ring event becomes exactly one `b`, `e` or `i` event (names from
///   `EventKind`, arguments rendered by `EventText`), so counts round-trip:
///   sends are async `b`/`e` pairs keyed by `pid.send`, everything else
///   (fork stages, hooks, gauges) an instant. A send whose start or end the
///   ring no longer holds gets a synthetic partner marked `"synthetic":true`.
/// - Each fork adds a flow `s` (at the parent's `fork.parent`) and `f` (at
///   the child's first event), and an `X` slice over the parent's fork
///   window (`fork.before.start` … `fork.parent`) that the flow starts from.
/// - `M` metadata names every process and thread.
public struct PerfettoExport {
    public struct Counts: Equatable, Sendable {
        /// `b` + `e` + `i` that stand for a ring event.
        public var fromRing = 0
        /// `b`/`e` added for a send whose other end the ring lost.
        public var synthetic = 0
        public var flows = 0
        public var processes = 0
        public var threads = 0
    }

    /// One process incarnation and its synthetic pid.
    struct Incarnation {
        var pid: Int32
        var start: UInt64
        var syntheticPid: Int
        var name: String?
        var role: ProcessRole = .unknown
        var ended = false
        var firstEvent: Int
        var lastTime: UInt64
        var tids: [Int32] = []
    }

    private struct Output {
        var time: UInt64
        var order: Int
        var json: String
    }

    public private(set) var counts = Counts()
    private let origin: RingOrigin
    private let text: EventText

    public init(origin: RingOrigin, lookup: @escaping EventText.StringLookup) {
        self.origin = origin
        text = EventText(origin: origin, lookup: lookup)
    }

    /// `events` merged by time (`RingReader.merge`).
    public mutating func render(_ events: [Event]) -> String {
        counts = Counts()
        // Pass 1: which incarnation each event belongs to. A `process.start`
        // with another start time, or any event after the pid's exit, begins
        // a new incarnation of that pid.
        var incarnations: [Incarnation] = []
        var current: [Int32: Int] = [:]
        var owner = [Int](repeating: 0, count: events.count)
        for (n, event) in events.enumerated() {
            var index = current[event.pid]
            let kind = event.kind
            if let i = index {
                let startTicks = kind == .processStart ? event.a3 : 0
                let restarted = incarnations[i].ended
                    || (kind == .processStart && startTicks != 0 && incarnations[i].start != 0 && startTicks != incarnations[i].start)
                if restarted { index = nil }
            }
            let i: Int
            if let index { i = index } else {
                i = incarnations.count
                incarnations.append(Incarnation(pid: event.pid, start: 0, syntheticPid: i + 1, firstEvent: n, lastTime: event.time))
                current[event.pid] = i
            }
            owner[n] = i
            incarnations[i].lastTime = max(incarnations[i].lastTime, event.time)
            if !incarnations[i].tids.contains(event.tid) { incarnations[i].tids.append(event.tid) }
            switch kind {
            case .processStart?:
                if event.a3 != 0 { incarnations[i].start = event.a3 }
                if let name = text.lookup(event.a2), !name.isEmpty { incarnations[i].name = name }
                if let role = ProcessRole(rawValue: event.a1), role != .unknown { incarnations[i].role = role }
            case .processExit?:
                incarnations[i].ended = true
            default: break
            }
        }

        var out: [Output] = []
        var order = 0
        func emit(_ time: UInt64, _ json: String) {
            out.append(Output(time: time, order: order, json: json))
            order += 1
        }
        func ts(_ time: UInt64) -> String { micros(origin.offset(time)) }
        func micros(_ ns: UInt64) -> String {
            let fraction = String(ns % 1000)
            return "\(ns / 1000).\(String(repeating: "0", count: 3 - fraction.count))\(fraction)"
        }

        // Pass 2: one trace event per ring event.
        var openSends: [String: (pid: Int, tid: Int32, time: UInt64)] = [:]
        var lastEnd: [String: UInt64] = [:]
        var forkWindowStart: [Int: UInt64] = [:]
        var flowID = 0
        for (n, event) in events.enumerated() {
            let i = owner[n]
            let pid = incarnations[i].syntheticPid
            let where_ = "\"pid\":\(pid),\"tid\":\(event.tid),\"ts\":\(ts(event.time))"
            let name = event.kind?.name ?? "unknown(\(event.rawKind))"
            let args = arguments(event)
            switch event.kind {
            case .sendStart?:
                let id = "\(incarnations[i].syntheticPid).\(event.a0)"
                if let previous = openSends[id] {
                    // The same send id started again without an end (a lost end, or a hostile ring): close the first.
                    emit(event.time, "{\"ph\":\"e\",\"cat\":\"send\",\"id\":\(quoted(id)),\"name\":\"send #\(event.a0)\",\"pid\":\(previous.pid),\"tid\":\(previous.tid),\"ts\":\(ts(event.time)),\"args\":{\"synthetic\":true,\"unfinished\":true}}")
                    counts.synthetic += 1
                }
                openSends[id] = (pid, event.tid, event.time)
                emit(event.time, "{\"ph\":\"b\",\"cat\":\"send\",\"id\":\(quoted(id)),\"name\":\"send #\(event.a0)\",\(where_),\"args\":\(args)}")
            case .sendComplete?, .sendCancel?, .sendFail?:
                let id = "\(incarnations[i].syntheticPid).\(event.a0)"
                if openSends.removeValue(forKey: id) == nil {
                    // The start was overwritten: reconstruct it from the duration, never before
                    // the previous send of that id ended (the pairs of one id must not overlap).
                    let duration = event.a2 &* 1000
                    let start = max(duration <= event.time ? event.time - duration : event.time, lastEnd[id] ?? 0)
                    emit(start, "{\"ph\":\"b\",\"cat\":\"send\",\"id\":\(quoted(id)),\"name\":\"send #\(event.a0)\",\"pid\":\(pid),\"tid\":\(event.tid),\"ts\":\(ts(start)),\"args\":{\"synthetic\":true}}")
                    counts.synthetic += 1
                }
                emit(event.time, "{\"ph\":\"e\",\"cat\":\"send\",\"id\":\(quoted(id)),\"name\":\"send #\(event.a0)\",\(where_),\"args\":\(args)}")
                lastEnd[id] = event.time
            default:
                let group = event.kind.map { category(of: $0) } ?? "unknown"
                emit(event.time, "{\"ph\":\"i\",\"s\":\"t\",\"cat\":\"\(group)\",\"name\":\(quoted(instantName(event, name))),\(where_),\"args\":\(args)}")
            }
            counts.fromRing += 1

            // The parent's fork window and the flow to the child.
            if event.kind == .forkBeforeStart { forkWindowStart[i] = event.time }
            if event.kind == .forkParent, event.a0 > 0 {
                let childPid = Int32(truncatingIfNeeded: event.a0)
                let since = forkWindowStart[i] ?? event.time
                if let start = forkWindowStart.removeValue(forKey: i) {
                    let dur = micros(event.time - min(start, event.time))
                    emit(start, "{\"ph\":\"X\",\"cat\":\"fork\",\"name\":\"fork → \(childPid)\",\"pid\":\(pid),\"tid\":\(event.tid),\"ts\":\(ts(start)),\"dur\":\(dur)}")
                }
                // The child: the incarnation of that pid whose first event came after the fork began.
                if let child = incarnations.first(where: { $0.pid == childPid && events[$0.firstEvent].time >= since }) {
                    let first = events[child.firstEvent]
                    flowID += 1
                    // Both ends sit on an event of their own thread (the fork's start in the parent, the child's
                    // first event), so the viewer binds the arrow to those slices.
                    emit(since, "{\"ph\":\"s\",\"cat\":\"fork\",\"id\":\(flowID),\"name\":\"fork\",\"pid\":\(pid),\"tid\":\(event.tid),\"ts\":\(ts(since))}")
                    emit(first.time, "{\"ph\":\"f\",\"bp\":\"e\",\"cat\":\"fork\",\"id\":\(flowID),\"name\":\"fork\",\"pid\":\(child.syntheticPid),\"tid\":\(first.tid),\"ts\":\(ts(first.time))}")
                    counts.flows += 1
                }
            }
        }
        // Sends still open at the end of the window: end them at their
        // process's last event so every `b` has its `e`.
        for (id, open) in openSends.sorted(by: { $0.key < $1.key }) {
            let last = incarnations[open.pid - 1].lastTime
            let time = max(last, open.time)
            emit(time, "{\"ph\":\"e\",\"cat\":\"send\",\"id\":\(quoted(id)),\"name\":\"send\",\"pid\":\(open.pid),\"tid\":\(open.tid),\"ts\":\(ts(time)),\"args\":{\"synthetic\":true,\"unfinished\":true}}")
            counts.synthetic += 1
        }

        // Time order (stable), so `ts` is monotonic on every track.
        out.sort { ($0.time, $0.order) < ($1.time, $1.order) }

        var lines: [String] = []
        for incarnation in incarnations {
            let label = "\(incarnation.name ?? incarnation.role.name) (pid \(incarnation.pid))"
            lines.append("{\"ph\":\"M\",\"name\":\"process_name\",\"pid\":\(incarnation.syntheticPid),\"tid\":0,\"args\":{\"name\":\(quoted(label))}}")
            lines.append("{\"ph\":\"M\",\"name\":\"process_sort_index\",\"pid\":\(incarnation.syntheticPid),\"tid\":0,\"args\":{\"sort_index\":\(incarnation.syntheticPid)}}")
            counts.processes += 1
            for tid in incarnation.tids {
                let threadName = tid == incarnation.pid ? "main (tid \(tid))" : "tid \(tid)"
                lines.append("{\"ph\":\"M\",\"name\":\"thread_name\",\"pid\":\(incarnation.syntheticPid),\"tid\":\(tid),\"args\":{\"name\":\(quoted(threadName))}}")
                counts.threads += 1
            }
        }
        lines += out.map(\.json)
        return "{\"displayTimeUnit\":\"ms\",\"otherData\":{\"generator\":\"forkscope export\",\"ring_events\":\(counts.fromRing)},\"traceEvents\":[\n"
            + lines.joined(separator: ",\n") + "\n]}\n"
    }

    /// Hooks and server hooks are named by their real name, so the timeline reads like the startup order.
    private func instantName(_ event: Event, _ name: String) -> String {
        switch event.kind {
        case .hookRun?: return "\(ForkStage(rawValue: event.a0)?.name ?? "?"): \(text.lookup(event.a1) ?? "?")"
        case .serverHook?: return text.lookup(event.a0) ?? name
        default: return name
        }
    }

    private func category(of kind: EventKind) -> String {
        switch kind {
        case .forkBeforeStart, .forkBeforeEnd, .forkParent, .forkChild, .forkFailed, .forkDetectedWithoutHooks, .drainWait: "fork"
        case .hookRun, .hookRegistered, .hookRemoved, .serverHook: "hook"
        case .runtimeQuiesce, .runtimeRebuild, .runtimeResume, .threadStart, .threadStop: "runtime"
        case .sendStart, .sendComplete, .sendCancel, .sendFail, .cancelRequested, .spanRequeued, .spanDropped: "send"
        case .writerGauge, .writerLosses: "gauge"
        case .processStart, .processExit, .workerSpawned, .workerExited: "process"
        case .transportOpen, .transportClose: "transport"
        case .operatorCommand: "operator"
        case .agentRequest: "agent"
        case .mark: "mark"
        }
    }

    /// The event's arguments as a JSON object, rendered like the JSONL dump,
    /// plus the ring coordinates that make each event identifiable.
    private func arguments(_ event: Event) -> String {
        let line = Array(text.json(event).utf8)
        // `EventText.json` ends with `"args":{…}}`; reuse that object rather than a second renderer.
        let marker = Array("\"args\":".utf8)
        guard line.count > marker.count,
              let at = (0...(line.count - marker.count)).reversed().first(where: { line[$0..<($0 + marker.count)].elementsEqual(marker) })
        else { return "{}" }
        var object = String(decoding: line[(at + marker.count)..<(line.count - 1)], as: UTF8.self)
        let extra = "\"real_pid\":\(event.pid),\"lane\":\(event.lane),\"seq\":\(event.sequence)"
        if object.hasPrefix("{") {
            object = object == "{}" ? "{\(extra)}" : "{\(extra)," + object.dropFirst()
        } else {
            object = "{\(extra),\"raw\":\(object)}"
        }
        return object
    }
}
