import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix
import Terminal

/// `forkscope bench tui`: what the dashboard costs. Frame time (model →
/// canvas, the renderer curses and the tests share) for 4, 32 and 256
/// processes with 10 k events in the visible time window; fold rate; and
/// the idle CPU of a real `forkscope attach` in tmux.
///
/// The events are real: one template process history is published into a
/// scratch ring and read back through `RingReader`; the streams for N
/// processes are copies of it with their pid, lane and times shifted.
struct TUIBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tui",
        abstract: "Dashboard frame time (4/32/256 processes, 10k events on screen), fold rate, and idle CPU of attach."
    )

    @Option(help: "Events in the visible window for each frame measurement.")
    var events = 10_000

    @Option(help: "Frames rendered per measurement.")
    var frames = 200

    @Option(help: "Events folded for the ingest rate.")
    var ingest = 2_000_000

    @Option(help: "Seconds over which the idle CPU of attach is measured (0 skips it).")
    var idleSeconds = 10.0

    @Flag(help: "Run even in a debug build (figures are then meaningless).")
    var allowDebug = false

    func run() throws {
        #if DEBUG
        if !allowDebug {
            Failure.exit("this is a debug build: its figures mean nothing. Run `swift run -c release forkscope bench tui` (or pass --allow-debug)", code: 2)
        }
        warn("WARNING: debug build — these figures are not the product's")
        #endif
        let scratch = try BenchScratch()
        defer { scratch.remove() }
        let ring = try Ring.create(at: scratch.session.ringPath, configuration: RingConfiguration(laneCount: 8, slotsPerLane: 1024, stringBytes: 64 * 1024))
        defer { ring.unmap() }
        let template = try TemplateHistory(ring: ring)

        print("forkscope bench tui — frames rendered into the Canvas (what curses draws), best and median of \(frames)")
        print(pad("processes", 11) + pad("events", 9, right: true) + pad("size", 9, right: true) + pad("rows shown", 12, right: true)
              + pad("best ms", 10, right: true) + pad("median ms", 11, right: true))
        var json: [String] = []
        for count in [4, 32, 256] {
            let model = template.model(processes: count, events: events)
            for (width, height) in [(120, 40), (200, 60)] {
                let (best, median, rows) = measureFrames(model, width: width, height: height)
                print(pad("\(count)", 11) + pad(Format.count(model.eventCount), 9, right: true) + pad("\(width)x\(height)", 9, right: true)
                      + pad("\(rows)", 12, right: true) + pad(fixed(best * 1000, 3), 10, right: true) + pad(fixed(median * 1000, 3), 11, right: true))
                json.append("\"frame_ms_\(count)p_\(width)x\(height)\":\(fixed(median * 1000, 3))")
            }
        }

        let rate = measureIngest(template)
        print("fold: \(fixed(rate / 1e6, 2)) M events/s (\(Format.count(ingest)) events, 32 processes, best of 3)")
        json.append("\"fold_events_per_s\":\(Int(rate))")

        if idleSeconds > 0 {
            if let cpu = try measureIdle(session: scratch.session) {
                print("idle CPU of `forkscope attach` in tmux 120x40 over \(fixed(idleSeconds, 0)) s: \(fixed(cpu.percent, 2)) % (\(cpu.ticks) ticks, \(cpu.frames))")
                json.append("\"idle_cpu_percent\":\(fixed(cpu.percent, 2))")
            } else {
                print("idle CPU: skipped (no tmux in PATH)")
            }
        }
        print("targets: frame < 2 ms for 32 processes, fold >= 1 M events/s, idle CPU < 1 %")
        print("{\"bench\":\"tui\",\"events\":\(events),\(json.joined(separator: ","))}")
    }

    /// Renders the frame `frames` times; best and median seconds, rows shown.
    func measureFrames(_ model: DashboardModel, width: Int, height: Int) -> (Double, Double, Int) {
        var view = ViewState(controlsAvailable: true)
        let layout = DashboardLayout(width: width, height: height, view: view, model: model)
        view.fit(span: model.lastTime - model.firstTime, columns: layout.timelineWidth)
        view.rightEdge = model.lastTime
        let frame = DashboardFrame(model: model, view: view, now: model.lastTime, source: .live, title: "bench", glyphs: .utf8)
        var times: [Double] = []
        var sink = 0
        for _ in 0..<frames {
            let start = Clock.monotonicNanoseconds()
            let canvas = DashboardView.render(frame, width: width, height: height)
            times.append(Double(Clock.monotonicNanoseconds() - start) / 1e9)
            sink &+= Int(canvas.cells[width + 1].scalar.value)
        }
        if sink == -1 { print("") }  // keeps the renders from being optimised away
        times.sort()
        return (times[0], times[times.count / 2], min(layout.processRows.count, view.rows(model).count))
    }

    func measureIngest(_ template: TemplateHistory) -> Double {
        let stream = template.stream(processes: 32, events: ingest)
        var best = 0.0
        for _ in 0..<3 {
            var model = DashboardModel(origin: template.origin)
            let start = Clock.monotonicNanoseconds()
            model.fold(stream) { template.strings[$0] }
            let seconds = Double(Clock.monotonicNanoseconds() - start) / 1e9
            precondition(model.eventCount == stream.count)
            best = max(best, Double(stream.count) / seconds)
        }
        return best
    }

    /// Starts `forkscope attach` on the bench's live ring in a private tmux
    /// server, lets it settle, and reads its CPU time over `idleSeconds`.
    func measureIdle(session: SessionDirectory) throws -> (percent: Double, ticks: UInt64, frames: String)? {
        guard let tmux = TUIBench.which("tmux") else { return nil }
        let socket = "forkscope-bench-\(getpid())"
        let me = try ProcessControl.currentExecutablePath()
        var environment = Environment.current
        environment["LANG"] = "C.UTF-8"
        let env = environment.map { "\($0.key)=\($0.value)" }
        func tmuxRun(_ arguments: [String]) throws -> String {
            let out = try FileDescriptor.pipe()
            let pid = try Spawn.run(tmux, arguments: ["tmux", "-L", socket] + arguments, environment: env,
                                    fileActions: [.duplicate(out.write, as: .standardOutput), .nullDevice(as: .standardError)])
            try out.write.close()
            let text = String(decoding: try out.read.readAll(limit: 1 << 20), as: UTF8.self)
            try out.read.close()
            _ = try ProcessControl.wait(for: pid)
            return text
        }
        _ = try tmuxRun(["new-session", "-d", "-s", "bench", "-x", "120", "-y", "40", "exec '\(me)' attach '\(session.path)'"])
        defer { _ = try? tmuxRun(["kill-server"]) }
        guard let pid = pid_t(try tmuxRun(["list-panes", "-t", "bench", "-F", "#{pane_pid}"]).split(separator: "\n").first ?? "") else {
            throw Failure(message: "tmux started no pane", code: 2)
        }
        let deadline = Deadline(seconds: 15)
        while !(try tmuxRun(["capture-pane", "-p", "-t", "bench"])).contains("forkscope") {
            if deadline.hasPassed { throw Failure(message: "forkscope attach drew nothing in tmux within 15 s", code: 2) }
            var none: [pollfd] = []
            _ = try? poll(&none, timeoutMilliseconds: 50)
        }
        var none: [pollfd] = []
        _ = try? poll(&none, timeoutMilliseconds: 1000)  // settle: first frames, log tail
        let before = TUIBench.cpuTicks(pid)
        let start = Clock.monotonicNanoseconds()
        _ = try? poll(&none, timeoutMilliseconds: Int32(idleSeconds * 1000))
        let after = TUIBench.cpuTicks(pid)
        let seconds = Double(Clock.monotonicNanoseconds() - start) / 1e9
        guard let before, let after else { throw Failure(message: "forkscope attach (pid \(pid)) ended during the measurement", code: 2) }
        let hz = Double(sysconf(Int32(_SC_CLK_TCK)))
        let ticks = after - before
        return (Double(ticks) / hz / seconds * 100, ticks, "live ring, nothing published")
    }

    /// utime + stime of `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat).
    static func cpuTicks(_ pid: pid_t) -> UInt64? {
        guard let bytes = try? FileSystem.readFile("/proc/\(pid)/stat", limit: 4096),
              let close = bytes.lastIndex(of: UInt8(ascii: ")")) else { return nil }
        let fields = bytes[(close + 2)...].split(separator: UInt8(ascii: " "))
        // fields[0] is field 3 (state): utime is field 14, stime 15.
        guard fields.count > 13, let user = UInt64(String(decoding: fields[11], as: UTF8.self)),
              let system = UInt64(String(decoding: fields[12], as: UTF8.self)) else { return nil }
        return user + system
    }

    static func which(_ name: String) -> String? {
        for directory in (Environment.current["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
            let path = "\(directory)/\(name)"
            if access(path, X_OK) == 0 { return path }
        }
        return nil
    }
}

/// One process's history published into a ring and read back, and streams
/// for many processes made of copies of it.
struct TemplateHistory {
    let origin: RingOrigin
    let strings: [UInt64: String]
    /// Header (start, fork child, rebuild, thread), the master's fork of a
    /// child (before, parent, spawned), then repeated units (a send and its
    /// outcome, a gauge every fourth).
    let header: [Event]
    let fork: [Event]
    let units: [[Event]]
    /// Spacing of the units.
    static let unitNanoseconds: UInt64 = 20_000_000

    init(ring: Ring) throws {
        let w = ring.writer
        let reader = try RingReader(path: ring.path)
        let t0 = reader.header.createdMonotonic
        let name = w.intern("bench worker"), url = w.intern("http://127.0.0.1:8126"), flush = w.intern("fks-flush0")
        let error = w.intern("connection refused"), reason = w.intern("fork child hook")
        w.publish(.processStart, at: t0, generation: 0, 1, ProcessRole.worker.rawValue, name, 1)
        w.publish(.forkChild, at: t0 + 1000, generation: 1, 1, 1)
        w.publish(.runtimeRebuild, at: t0 + 2000, generation: 2, 1, 2, reason)
        w.publish(.transportOpen, at: t0 + 3000, generation: 2, 1, url, ForkPolicy.cancel.rawValue)
        w.publish(.threadStart, at: t0 + 4000, generation: 2, 1, flush)
        w.publish(.forkBeforeStart, at: t0 + 5000, generation: 0, 1, ForkPolicy.cancel.rawValue)
        w.publish(.forkParent, at: t0 + 6000, generation: 0, 2, 500)
        w.publish(.workerSpawned, at: t0 + 7000, generation: 0, 2, 0)
        for n in 0..<64 {
            let t = t0 + 10_000 + UInt64(n) * TemplateHistory.unitNanoseconds
            let id = UInt64(n + 1)
            w.publish(.sendStart, at: t, generation: 2, id, 12, 3000, 1)
            switch n % 9 {
            case 4: w.publish(.sendCancel, at: t + 4_000_000, generation: 2, id, CancelReason.fork.rawValue, 4000, 12)
            case 7: w.publish(.sendFail, at: t + 6_000_000, generation: 2, id, error, 6000, UInt64(ECONNREFUSED))
            default: w.publish(.sendComplete, at: t + 2_000_000, generation: 2, id, 200, 2000, 12)
            }
            if n % 4 == 3 {
                w.publish(.writerGauge, at: t + 9_000_000, generation: 2, 0, UInt64(n * 12), UInt64(n * 12), 0)
                w.publish(.writerLosses, at: t + 9_000_000, generation: 2, 1, 0, 1, 1)
            }
        }
        var events: [Event] = []
        try reader.readNew(into: &events)
        RingReader.merge(&events)
        origin = RingOrigin(reader.header)
        var strings: [UInt64: String] = [:]
        for offset in [name, url, flush, error, reason] { strings[offset] = reader.string(at: offset) }
        self.strings = strings
        header = Array(events.prefix(5))
        fork = Array(events[5..<8])
        var units: [[Event]] = []
        var current: [Event] = []
        for event in events.dropFirst(8) {
            if event.kind == .sendStart, !current.isEmpty { units.append(current); current = [] }
            current.append(event)
        }
        units.append(current)
        self.units = units
    }

    /// `processes` copies (pid 100000 + k on lane k, process 0 the parent
    /// of the others), `events` events in all, merged by time.
    func stream(processes: Int, events total: Int) -> [Event] {
        let perProcess = max(header.count + 2, total / processes)
        var result: [Event] = []
        result.reserveCapacity(total + processes * 8)
        let parentPid: Int32 = 100_000
        for k in 0..<processes {
            let pid = parentPid + Int32(k)
            let offset = UInt64(k) * 1_000_000
            var mine: [Event] = []
            func add(_ template: Event, shift: UInt64, _ patch: (inout Event) -> Void = { _ in }) {
                var e = template
                e.pid = pid
                e.tid = pid
                e.lane = k
                e.sequence = UInt64(mine.count)
                e.time = template.time + offset + shift
                patch(&e)
                mine.append(e)
            }
            for e in header {
                add(e, shift: 0) { e in
                    if e.kind == .processStart || e.kind == .forkChild { e.a0 = UInt64(parentPid) }
                    if e.kind == .forkChild && k == 0 { e.a0 = 1 }
                }
            }
            if k == 0 {
                for child in 1..<max(1, processes) {
                    for e in fork {
                        add(e, shift: UInt64(child) * 1_000_000) { e in if e.kind != .forkBeforeStart { e.a0 = UInt64(parentPid + Int32(child)) } }
                    }
                }
            }
            var round: UInt64 = 0
            while mine.count < perProcess {
                for unit in units {
                    for e in unit where mine.count < perProcess {
                        add(e, shift: round * UInt64(units.count) * TemplateHistory.unitNanoseconds) { e in
                            if e.kind == .sendStart || e.kind == .sendComplete || e.kind == .sendCancel || e.kind == .sendFail {
                                e.a0 += round * UInt64(units.count)
                            }
                        }
                    }
                }
                round += 1
            }
            result += mine
        }
        RingReader.merge(&result)
        return result
    }

    func model(processes: Int, events: Int) -> DashboardModel {
        var model = DashboardModel(origin: origin)
        model.fold(stream(processes: processes, events: events)) { strings[$0] }
        return model
    }
}
