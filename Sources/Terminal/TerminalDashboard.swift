import CPosix
import Dashboard
import EventRing
import Glibc
import Posix
import Synchronization

/// How to run the dashboard.
public struct DashboardOptions: Sendable {
    /// The ring to show.
    public var ringPath: String
    /// The session directory (log output, exports); nil for a lone file.
    public var session: SessionDirectory?
    /// What the title bar names.
    public var title: String
    /// `.snapshot` reads a private copy (a saved file that may change).
    public var mode: RingReader.Mode = .live
    /// Why control keys are refused when there is no controller.
    public var readOnlyReason = "no controller"
    /// How often the ring is re-read.
    public var refreshMilliseconds = 100
    public var colour = true
    /// Reaps children while running and ends every descendant on quit.
    public var reaper: DescendantReaper?
    public var narration: String?
    /// Play a ring that is not live back in time (a saved file) instead of
    /// showing it all at once: see `ReplayFeed`.
    public var replay = false

    public init(ringPath: String, session: SessionDirectory? = nil, title: String? = nil) {
        self.ringPath = ringPath
        self.session = session
        self.title = title ?? session?.path ?? ringPath
    }
}

/// The curses dashboard: `run()` blocks until the user quits (`q`, or
/// SIGINT/SIGTERM/SIGHUP). The loop polls stdin and a wake pipe with a
/// timeout (no busy loop), re-reads the ring on a timer, and redraws only
/// when the model, the view, the visible time or the log output changed.
///
/// The demo wiring calls:
///
///     let reaper = try DescendantReaper()
///     … reaper.spawn(agent), reaper.spawn(server) …
///     var options = DashboardOptions(ringPath: session.ringPath, session: session)
///     options.reaper = reaper
///     let dashboard = try TerminalDashboard(options: options, controller: socketController)
///     try dashboard.run()          // ends every descendant before returning
///
/// `setNarration` and `requestQuit` may be called from any thread.
public final class TerminalDashboard: Sendable {
    private struct Shared {
        var narration: String??
        var quit = false
    }

    public let options: DashboardOptions
    private let controller: (any Controller)?
    private let wake: SignalPipe
    private let shared = Mutex(Shared())

    public init(options: DashboardOptions, controller: (any Controller)?) throws(SystemError) {
        self.options = options
        self.controller = controller
        wake = try SignalPipe()
    }

    /// Shows `text` on the narration line (nil hides it).
    public func setNarration(_ text: String?) {
        shared.withLock { $0.narration = .some(text) }
        wake.wake()
    }

    /// Ends `run()` as if the user pressed `q`.
    public func requestQuit() {
        shared.withLock { $0.quit = true }
        wake.wake()
    }

    /// Runs until quit; returns the model as last read. Ends every
    /// descendant (through `options.reaper`) before returning.
    @discardableResult
    public func run() throws -> DashboardModel {
        let feed = try RingFeed(path: options.ringPath, mode: options.mode)
        try feed.poll()
        feed.checkLiveness()
        let logs = options.session.map { LogTail(directory: $0.path) }
        logs?.refresh()
        let screen = try CursesScreen(colour: options.colour)
        var signals: [CInt] = [SIGINT, SIGTERM, SIGHUP]
        if options.reaper != nil { signals.append(SIGCHLD) }
        try wake.route(signals)
        let worker = try controller.map { (c) throws(SystemError) in try ControllerWorker(controller: c, wake: wake) }
        defer {
            worker?.stop()
            screen.close()
            wake.close()
            options.reaper?.endAll()
        }
        var loop = Loop(feed: feed, logs: logs, screen: screen, worker: worker, options: options)
        if options.replay, feed.source != .live {
            loop.replay = try ReplayFeed(path: options.ringPath, mode: options.mode)
        }
        loop.view.narration = options.narration
        return try loop.run(dashboard: self)
    }

    fileprivate func takeShared() -> (narration: String??, quit: Bool) {
        shared.withLock { state in
            defer { state.narration = nil }
            return (state.narration, state.quit)
        }
    }

    fileprivate var wakeReadEnd: FileDescriptor { wake.readEnd }
    fileprivate func drainWake() -> [CInt] { wake.drain() }
}

/// What decides whether a new frame is needed.
private struct FrameKey: Equatable {
    var revision: Int
    var view: ViewState
    var now: UInt64
    var logs: Int
    var width: Int
    var height: Int
    var paused: Int
    var replay: ReplayStatus?
}

private struct Loop {
    let feed: RingFeed
    let logs: LogTail?
    let screen: CursesScreen
    let worker: ControllerWorker?
    let options: DashboardOptions
    var view: ViewState
    var frozen: (model: DashboardModel, now: UInt64)?
    var lastKey: FrameKey?
    var logRevision = 0
    /// Set when a saved ring is played back: the model shown is its fold up
    /// to the replay clock.
    var replay: ReplayFeed?

    init(feed: RingFeed, logs: LogTail?, screen: CursesScreen, worker: ControllerWorker?, options: DashboardOptions) {
        self.feed = feed
        self.logs = logs
        self.screen = screen
        self.worker = worker
        self.options = options
        view = ViewState(controlsAvailable: worker != nil, readOnlyReason: options.readOnlyReason)
        let layout = DashboardLayout(width: screen.size.width, height: screen.size.height, narration: false)
        if !feed.isLive, feed.model.lastTime > feed.model.firstTime {
            // A saved ring: fit its whole history on the axis.
            let span = feed.model.lastTime - feed.model.firstTime
            view.fit(span: span + span / 20, columns: layout.timelineWidth)
        }
    }

    var model: DashboardModel { replay?.model ?? frozen?.model ?? feed.model }

    mutating func run(dashboard: TerminalDashboard) throws -> DashboardModel {
        let refresh = UInt64(max(10, options.refreshMilliseconds)) * 1_000_000
        var nextRead: UInt64 = 0, nextLiveness: UInt64 = 0, nextLogs: UInt64 = 0
        while true {
            var now = Clock.monotonicNanoseconds()
            if now >= nextRead {
                do { try feed.poll() } catch {
                    view.say("reading the ring failed: \(error)", error: true, now: now)
                }
                nextRead = now + refresh
            }
            if now >= nextLiveness {
                feed.checkLiveness()
                nextLiveness = now + 1_000_000_000
            }
            if now >= nextLogs, let logs {
                if logs.refresh() { logRevision += 1 }
                nextLogs = now + 500_000_000
            }
            if let status = view.status, now >= status.until { view.status = nil }
            replay?.advance(wallClock: now)
            render()

            // Sleep in poll until a key, a wake-up or the next timer.
            var wakeAt = min(nextRead, nextLiveness, logs == nil ? .max : nextLogs)
            if let status = view.status { wakeAt = min(wakeAt, status.until) }
            now = Clock.monotonicNanoseconds()
            if let replay, !replay.isPaused, !replay.isAtEnd { wakeAt = min(wakeAt, now + Loop.replayTick) }
            let timeout = wakeAt > now ? Int32(min((wakeAt - now + 999_999) / 1_000_000, 1000)) : 0
            var fds = [pollfd(fd: 0, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: dashboard.wakeReadEnd.rawValue, events: Int16(POLLIN), revents: 0)]
            _ = try? poll(&fds, timeoutMilliseconds: timeout, retryOnInterrupt: false)
            if fds[0].revents & Int16(POLLHUP | POLLERR | POLLNVAL) != 0 && fds[0].revents & Int16(POLLIN) == 0 {
                return feed.model  // the terminal went away
            }

            now = Clock.monotonicNanoseconds()
            let (keys, resized) = screen.readKeys()
            if resized { screen.invalidate() }
            let size = screen.size
            let layout = DashboardLayout(width: size.width, height: size.height, view: view, model: model)
            for key in keys {
                let typing = view.prompt != nil || view.overlay != nil
                switch view.handle(key, model: model, layout: layout, now: now) {
                case .ignored, .redraw: break
                case .quit: return feed.model
                case .control(let command):
                    if let worker {
                        if let busy = worker.busy { view.say("queued after: \(busy)", now: now) } else { view.say("\(command)…", now: now) }
                        worker.submit(command)
                    } else {
                        view.say("\(options.readOnlyReason): \(command) refused", error: true, now: now)
                    }
                case .export:
                    view.say(export(), now: now)
                case .record:
                    view.say(record(), now: now)
                case .replay(let action):
                    replayKey(action, now: now)
                }
                if key == .control("l") { screen.invalidate() }
                if let replay {
                    // `0` (follow the newest) and End jump to the recording's end.
                    if !typing, key == .character("0") || key == .end { replay.jumpToEnd() }
                    if replay.isPaused != view.paused {
                        replay.setPaused(view.paused)
                        view.say(view.paused ? "replay paused (. steps, Space resumes)" : "replay resumed", now: now)
                    }
                    continue
                }
                if view.paused, frozen == nil { frozen = (feed.model, feed.now) }
                if !view.paused { frozen = nil }
            }
            for signal in dashboard.drainWake() {
                switch signal {
                case SIGCHLD:
                    for (key, status) in options.reaper?.reap() ?? [] where options.reaper?.tracked.contains(key) == true {
                        view.say("process \(key.pid) \(status)", error: true, now: now)
                    }
                default:
                    return feed.model  // SIGINT, SIGTERM, SIGHUP
                }
            }
            for (command, result) in worker?.results() ?? [] {
                switch result {
                case .done(let text): view.say("\(command): \(text)", now: now)
                case .failed(let text): view.say("\(command) failed: \(text)", error: true, now: now)
                }
            }
            let (narration, quit) = dashboard.takeShared()
            if quit { return feed.model }
            if let narration { view.narration = narration }
        }
    }

    static let replayTick: UInt64 = 50_000_000

    /// `.` `[` `]` `{` `}`: the replay clock (nothing on a live ring).
    mutating func replayKey(_ action: Action, now: UInt64) {
        guard let replay else { return }
        switch action {
        case .replayStep:
            view.paused = true
            replay.setPaused(true)
            replay.step()
        case .replaySlower: replay.slower()
        case .replayFaster: replay.faster()
        case .replaySeekBack: replay.seek(by: -5_000_000_000)
        case .replaySeekForward: replay.seek(by: 5_000_000_000)
        default: break
        }
    }

    /// Draws a frame when anything it shows changed. Time moves the view
    /// only in steps of a column (at least 200 ms), so a quiet live ring
    /// costs a few frames a second, and a saved one none.
    mutating func render() {
        let size = screen.size
        let perColumn = view.nanosecondsPerColumn
        let step = max(perColumn, 200_000_000)
        let now = replay?.now ?? frozen?.now ?? (feed.isLive ? feed.now / step * step : feed.now)
        let shownModel = model
        let key = FrameKey(revision: shownModel.revision, view: view, now: now, logs: logRevision,
                           width: size.width, height: size.height, paused: frozen == nil ? 0 : feed.model.eventCount,
                           replay: replay?.status)
        guard key != lastKey else { return }
        lastKey = key
        var frame = DashboardFrame(
            model: shownModel, view: view, logs: logs?.snapshot ?? LogSnapshot(), now: now,
            source: feed.source, title: options.title,
            glyphs: screen.unicode ? .utf8 : .ascii,
            eventsWhilePaused: frozen.map { feed.model.eventCount - $0.model.eventCount } ?? 0
        )
        frame.replay = replay?.status
        screen.draw(DashboardView.render(frame, width: size.width, height: size.height))
    }

    /// Next to the ring when that directory is ours (not when root looks at
    /// another user's session), else the current directory.
    var outputDirectory: String {
        let directory = options.session?.path ?? parentDirectory(options.ringPath)
        return (try? FileSystem.linkStatus(directory))?.ownerID == geteuid() ? directory : "."
    }

    /// `R`: the ring's bytes as they are now, in a new file (0600, never
    /// overwriting), readable like any ring (`forkscope attach FILE` replays it).
    func record() -> String {
        let path = outputDirectory + "/recording-\(Clock.realtimeNanoseconds() / 1_000_000).ring"
        do {
            let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
            defer { try? fd.close() }
            try fd.writeAll(feed.reader.copyBytes())
            return "recorded the ring to \(path) (replay: forkscope attach \(path))"
        } catch {
            return "record failed: \(error)"
        }
    }

    func export() -> String {
        let directory = outputDirectory
        do {
            let (path, count) = try EventExport.writeJSONL(model, directory: directory)
            return "exported \(Format.count(count)) events to \(path)"
        } catch {
            return "export failed: \(error)"
        }
    }
}

func parentDirectory(_ path: String) -> String {
    guard let slash = path.lastIndex(of: "/") else { return "." }
    return slash == path.startIndex ? "/" : String(path[..<slash])
}

/// `e`: the events the dashboard holds, as JSON lines in `forkscope dump
/// --format jsonl`'s format, in a new file (0600, never overwriting).
public enum EventExport {
    public static func writeJSONL(_ model: DashboardModel, directory: String) throws(SystemError) -> (path: String, events: Int) {
        let path = directory + "/export-\(Clock.realtimeNanoseconds() / 1_000_000).jsonl"
        let fd = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: 0o600)
        defer { try? fd.close() }
        let text = EventText(model: model)
        var bytes: [UInt8] = []
        for event in model.log {
            bytes.append(contentsOf: text.json(event).utf8)
            bytes.append(10)
            if bytes.count > 1 << 20 {
                try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try fd.writeAll(raw) } }.get()
                bytes.removeAll(keepingCapacity: true)
            }
        }
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try fd.writeAll(raw) } }.get()
        return (path, model.log.count)
    }
}
