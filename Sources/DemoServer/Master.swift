import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// The preforking master: binds the listening socket, loads the app when
/// preloading, forks workers in the chosen profile's order, reaps and
/// respawns them, and answers signals like Unicorn and Puma do:
/// TTIN/TTOU one more/less worker, QUIT graceful stop, TERM/INT fast stop,
/// HUP reload (re-run the app loading, replace the workers), USR2 re-exec a
/// new master on the same socket. Control requests arrive from the control
/// thread and run here, on the master's own thread.
public final class Master: ControlHandler, @unchecked Sendable {
    public let configuration: ServerConfiguration
    public let processes = ProcessTable()
    private var listener: Socket
    private var application: DemoApplication?
    private var signals: SignalPipe!
    private var control: ControlServer?
    private let reports: (read: FileDescriptor, write: FileDescriptor)
    private let wake: (read: FileDescriptor, write: FileDescriptor)

    private struct WorkerHandle {
        let index: Int
        let commands: FileDescriptor
        /// Forked by worker 0 (refork), not by the master.
        let molded: Bool
    }
    private var workers: [pid_t: WorkerHandle] = [:]
    private var desired: Int
    private var nextIndex = 0
    private enum Stopping { case no, graceful, fast }
    private var stopping = Stopping.no
    private var load: (pid: pid_t, input: FileDescriptor)?

    // Requests handed from the control thread to this thread.
    private let queueLock = Lock()
    private let queueDone = Condition()
    private var queue: [(id: UInt64, request: ControlRequest)] = []
    private var results: [UInt64: Result<ControlMessage, ControlError>] = [:]
    private var nextRequestID: UInt64 = 1

    public init(configuration: ServerConfiguration) throws {
        self.configuration = configuration
        desired = configuration.workers
        if let inherited = configuration.inheritedListener {
            listener = Socket(rawValue: inherited)
            try listener.fileDescriptor.setCloseOnExec(true)
        } else {
            listener = try Socket.open(configuration.listen.family, .stream, flags: [.closeOnExec])
            try listener.setOption(.reuseAddress, true)
            try listener.bind(to: configuration.listen)
            try listener.listen(backlog: 1024)
        }
        try listener.fileDescriptor.setNonBlocking(true)
        reports = try FileDescriptor.pipe(flags: O_CLOEXEC | O_NONBLOCK)
        wake = try FileDescriptor.pipe(flags: O_CLOEXEC | O_NONBLOCK)
    }

    /// Where the server listens (with the real port when 0 was asked).
    public var address: SocketAddress { (try? listener.localAddress()) ?? configuration.listen }

    /// Runs until stopped; returns the exit status.
    public func run() throws -> Int32 {
        signals = try SignalPipe.install(Self.handledSignals)
        // Workers forked by worker 0 (refork) and daemons are reparented to
        // us when their parent exits, so we can reap them and wait for them.
        try? ProcessControl.becomeChildSubreaper()
        Telemetry.publish(.processStart, UInt64(pid: getppid()), ProcessRole.master.rawValue,
                          Telemetry.intern("\(configuration.profile.rawValue) master"), ProcessControl.startTime(of: getpid()) ?? 0)
        processes.add(pid: getpid(), role: .master, index: -1)
        if let session = configuration.sessionPath {
            control = try ControlServer(path: SessionDirectory(path: session).controlSocketPath, handler: self)
            control?.start()
        }
        for hook in configuration.profile.masterStartHooks { ServerHooks.run(hook, profile: configuration.profile, workerIndex: 0) }
        if configuration.preload && configuration.exporter { try loadApplication(reason: "preload") }
        startLoad()
        while desired > workers.count { spawnWorker() }
        // Ready: the workers exist. A parent or test reads this line.
        try FileDescriptor.standardOutput.writeAll("listening on \(address)\n")
        loop()
        shutdown()
        return 0
    }

    private func loadApplication(reason: String) throws {
        application?.writer.stop(deadlineMilliseconds: 2_000)
        application = try DemoApplication(configuration: configuration)
        ServerHooks.run("app_loaded(\(reason))", profile: configuration.profile, workerIndex: 0)
    }

    private func loop() {
        while true {
            if stopping != .no && workers.isEmpty { return }
            var fds = [pollfd(fd: signals.readEnd.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: reports.read.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: wake.read.rawValue, events: Int16(POLLIN), revents: 0)]
            _ = try? poll(&fds, timeoutMilliseconds: 500)
            for signal in signals.drain() { handle(signal) }
            readReports()
            runQueuedRequests()
            if stopping == .no {
                while desired > workers.values.filter({ !$0.molded }).count { spawnWorker() }
            }
        }
    }

    // MARK: workers

    /// The signals this server handles: blocked across each fork so one
    /// that arrives before the child has its own handlers waits for them
    /// (inherited handlers would forward it into the master's pipe).
    static let handledSignals: [CInt] = [SIGCHLD, SIGTTIN, SIGTTOU, SIGQUIT, SIGTERM, SIGINT, SIGHUP, SIGUSR2]

    @discardableResult
    private func spawnWorker(unsafe: Bool = false) -> pid_t? {
        let index = nextIndex
        nextIndex += 1
        guard let (commandsRead, commandsWrite) = try? FileDescriptor.pipe(flags: O_CLOEXEC | O_NONBLOCK) else { return nil }
        for hook in configuration.profile.beforeEachForkHooks { ServerHooks.run(hook, profile: configuration.profile, workerIndex: index) }
        let previousMask = (try? Signals.block(SignalSet(Self.handledSignals))) ?? SignalSet()
        defer { _ = try? Signals.setMask(previousMask) }
        let pid: pid_t
        if configuration.forkHooks && !unsafe {
            do {
                switch try Fork.fork() {
                case .child: becomeWorker(index: index, commands: commandsRead, closing: commandsWrite, mask: previousMask)
                case .parent(let child): pid = child
                }
            } catch {
                log("master: fork of worker \(index) failed: \(error)")
                try? commandsRead.close()
                try? commandsWrite.close()
                return nil
            }
        } else {
            // A raw fork(): none of the at-fork hooks run (the seed's failure).
            let child = Glibc.fork()
            if child == 0 { becomeWorker(index: index, commands: commandsRead, closing: commandsWrite, mask: previousMask) }
            guard child > 0 else { return nil }
            pid = child
        }
        try? commandsRead.close()
        workers[pid] = WorkerHandle(index: index, commands: commandsWrite, molded: false)
        processes.add(pid: pid, role: .worker, index: index)
        Telemetry.publish(.workerSpawned, UInt64(pid: pid), UInt64(index))
        for hook in configuration.profile.afterEachForkInMasterHooks { ServerHooks.run(hook, profile: configuration.profile, workerIndex: index) }
        return pid
    }

    /// In the forked child: drop what belongs to the master, then serve.
    private func becomeWorker(index: Int, commands: FileDescriptor, closing ownWrite: FileDescriptor, mask: SignalSet) -> Never {
        signals.close()
        try? ownWrite.close()
        for handle in workers.values { try? handle.commands.close() }
        workers = [:]
        for fd in control?.descriptors ?? [] { _ = Glibc.close(fd) }
        try? reports.read.close()
        try? wake.read.close()
        try? wake.write.close()
        if let load { try? load.input.close() }
        processes.reinitializeInChild()
        ServerLogs.redirectToOwnFile(configuration)
        let worker = Worker(index: index, configuration: configuration, listener: listener, commands: commands,
                            reports: reports.write, application: application, signalMask: mask)
        _exit(worker.run())
    }

    private func reap() {
        while let (pid, status) = (try? ProcessControl.wait(for: -1, options: WNOHANG)) ?? nil {
            processes.remove(pid: pid)
            if load?.pid == pid { load = nil; continue }
            guard let handle = workers.removeValue(forKey: pid) else { continue }
            try? handle.commands.close()
            Telemetry.publish(.workerExited, UInt64(pid: pid), status.exitArgument, status.signalArgument, UInt64(handle.index))
        }
    }

    private func readReports() {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buffer.withUnsafeMutableBytes { raw in (try? reports.read.read(into: raw)) ?? 0 }
            if n <= 0 { return }
            for line in String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n") {
                let words = line.split(separator: " ")
                guard words.count >= 2, let pid = pid_t(words[1]) else { continue }
                if words[0] == "molded", let index = words.count > 2 ? Int(words[2]) : nil {
                    workers[pid] = WorkerHandle(index: index, commands: FileDescriptor(rawValue: -1), molded: true)
                    processes.add(pid: pid, role: .worker, index: index)
                } else if words[0] == "exited" {
                    workers[pid] = nil
                    processes.remove(pid: pid)
                }
            }
        }
    }

    // MARK: signals

    private func handle(_ signal: CInt) {
        switch signal {
        case SIGCHLD: reap()
        case SIGTTIN: desired += 1
        case SIGTTOU:
            guard desired > 1 else { return }
            desired -= 1
            if let newest = workers.filter({ !$0.value.molded }).max(by: { $0.value.index < $1.value.index }) {
                try? ProcessControl.send(SIGQUIT, to: newest.key)
            }
        case SIGQUIT: beginStop(.graceful)
        case SIGTERM, SIGINT: beginStop(.fast)
        case SIGHUP: reload()
        case SIGUSR2: reexec()
        default: break
        }
    }

    private func beginStop(_ how: Stopping) {
        guard stopping == .no || (stopping == .graceful && how == .fast) else { return }
        stopping = how
        for pid in workers.keys { try? ProcessControl.send(how == .graceful ? SIGQUIT : SIGTERM, to: pid) }
    }

    /// HUP: re-run the app loading step, then replace every worker
    /// gracefully (new ones first, so the socket keeps being served).
    private func reload() {
        ServerHooks.run("reload", profile: configuration.profile, workerIndex: 0)
        if configuration.preload && configuration.exporter { try? loadApplication(reason: "reload") }
        let old = Array(workers.keys)
        for _ in 0..<desired { spawnWorker() }
        for pid in old { try? ProcessControl.send(SIGQUIT, to: pid) }
    }

    /// USR2: fork a child that execs a new master on the same listening
    /// socket (passed by descriptor number), as Unicorn and Puma do. The
    /// old master keeps serving until told to QUIT.
    private func reexec() {
        guard let executable = try? ProcessControl.currentExecutablePath() else { return }
        ServerHooks.run("reexec", profile: configuration.profile, workerIndex: 0)
        let outcome = try? Fork.fork()
        guard outcome == .child else { return }
        try? listener.fileDescriptor.setCloseOnExec(false)
        var args = ["forkscope"] + configuration.arguments + ["--inherit-fd", String(listener.rawValue)]
        if let index = args.firstIndex(of: "--load") { args[index + 1] = "0" }
        let argv = args.map { strdup($0) } + [nil]
        execv(executable, argv)
        _exit(127)
    }

    private func startLoad() {
        guard let executable = try? ProcessControl.currentExecutablePath(),
              let (read, write) = try? FileDescriptor.pipe() else { return }
        var actions: [Spawn.FileAction] = [.duplicate(read, as: .standardInput)]
        if let session = configuration.sessionPath {
            actions.append(.appendingLog(SessionDirectory(path: session).logPath("load"), as: .standardOutput))
            actions.append(.appendingLog(SessionDirectory(path: session).logPath("load"), as: .standardError))
        }
        let pid = try? Spawn.run(executable, arguments: ["forkscope", "load", "--target", "\(address)", "--rps", String(configuration.loadRPS)],
                                 fileActions: actions)
        try? read.close()
        if let pid {
            load = (pid, write)
            processes.add(pid: pid, role: .tool, index: -1)
        } else {
            try? write.close()
        }
    }

    private func shutdown() {
        control?.stop()
        if let load {
            try? load.input.close()
            try? ProcessControl.send(SIGTERM, to: load.pid)
            _ = try? ProcessControl.wait(for: load.pid, deadline: .after(milliseconds: 2_000))
        }
        application?.writer.stop(deadlineMilliseconds: stopping == .graceful ? 3_000 : 200)
        try? listener.close()
        Telemetry.publish(.processExit, 0, 0)
    }

    // MARK: control requests (called on the control thread)

    public func handle(_ request: ControlRequest) -> Result<ControlMessage, ControlError> {
        switch request {
        case .cancel(let pid, let start):
            guard processes.lookup(pid: pid, startTime: start) != nil else { return .failure(.notInTree(pid)) }
            if pid == getpid() {
                let cancelled = application?.writer.transport.cancelInFlight(reason: .operatorRequest) ?? false
                return .success(["cancelled": .bool(cancelled)])
            }
            return signal(pid, CancelSignal.signal)
        case .kill(let pid, let start, let signal):
            guard let entry = processes.lookup(pid: pid, startTime: start) else { return .failure(.notInTree(pid)) }
            if entry.role == .master && signal == SIGKILL { return .failure(.refused("SIGKILL the master? use QUIT or TERM")) }
            return self.signal(pid, signal)
        case .burst(let n):
            guard let load else { return .failure(.failed("no load generator is running")) }
            do { try load.input.writeAll("burst \(n)\n") } catch { return .failure(.failed("\(error)")) }
            return .success(["queued": .int(Int64(n))])
        case .agentDelay(let ms):
            return AgentControl.request(configuration.agentURL, "/control/delay?ms=\(ms)")
        case .agentFault(let kind):
            return AgentControl.request(configuration.agentURL, "/control/fault?kind=\(kind)")
        case .processes:
            let list = processes.all.map { entry -> MessagePackValue in
                .map(["pid": .int(Int64(entry.pid)), "start": .int(Int64(entry.startTime)),
                      "role": .string(entry.role.name), "index": .int(Int64(entry.index))])
            }
            return .success(["processes": .array(list)])
        case .fork(let pid, let start):
            guard processes.lookup(pid: pid, startTime: start) != nil else { return .failure(.notInTree(pid)) }
            return runOnMaster(request)
        case .forkUnsafe, .daemonize, .policy:
            return runOnMaster(request)
        }
    }

    private func signal(_ pid: pid_t, _ signal: CInt) -> Result<ControlMessage, ControlError> {
        do { try ProcessControl.send(signal, to: pid) } catch { return .failure(.failed("\(error)")) }
        return .success(["signalled": .int(Int64(pid))])
    }

    /// Hands a request to the master's thread and waits for its result. The
    /// master may be inside a fork waiting for a drain: the wait is bounded.
    private func runOnMaster(_ request: ControlRequest) -> Result<ControlMessage, ControlError> {
        let id: UInt64 = queueLock.withLock {
            let id = nextRequestID
            nextRequestID += 1
            queue.append((id, request))
            return id
        }
        try? wake.write.writeAll("r")
        let deadline = Deadline.after(milliseconds: 30_000)
        return queueLock.withLock {
            while results[id] == nil {
                if !queueDone.wait(queueLock, until: deadline), deadline.hasPassed {
                    return .failure(.failed("the master did not answer within 30 s (is a fork waiting on a drain?)"))
                }
            }
            return results.removeValue(forKey: id)!
        }
    }

    private func runQueuedRequests() {
        var drained = [UInt8](repeating: 0, count: 64)
        _ = drained.withUnsafeMutableBytes { raw in try? wake.read.read(into: raw) }
        let pending: [(UInt64, ControlRequest)] = queueLock.withLock {
            defer { queue = [] }
            return queue
        }
        for (id, request) in pending {
            let result = execute(request)
            queueLock.withLock {
                results[id] = result
                queueDone.broadcast()
            }
        }
    }

    private func execute(_ request: ControlRequest) -> Result<ControlMessage, ControlError> {
        switch request {
        case .fork(let pid, _):
            if pid == getpid() {
                desired += 1
                guard let child = spawnWorker() else { return .failure(.failed("fork failed (see the master's log)")) }
                return .success(["worker": .int(Int64(child))])
            }
            guard let handle = workers[pid], !handle.molded else {
                return .failure(.refused("only the master or a worker it forked can fork (refork from worker 0)"))
            }
            let index = nextIndex
            nextIndex += 1
            do { try handle.commands.writeAll("refork \(index)\n") } catch { return .failure(.failed("\(error)")) }
            return .success(["refork": .int(Int64(index))])
        case .forkUnsafe:
            desired += 1
            guard let child = spawnWorker(unsafe: true) else { return .failure(.failed("fork failed")) }
            return .success(["worker": .int(Int64(child))])
        case .policy(let policy):
            application?.writer.transport.participant.policy = policy
            for handle in workers.values where !handle.molded { try? handle.commands.writeAll("policy \(policy)\n") }
            return .success(["policy": .string(policy.description)])
        case .daemonize:
            return daemonize()
        default:
            return .failure(.invalid("\(request.name) is not run by the master thread"))
        }
    }

    /// A child of the master calls `Fork.daemon()`: `before` and `child` run,
    /// `parent` does not; the daemon (reparented away from us) sends a few
    /// spans through the exporter it inherited, then exits.
    private func daemonize() -> Result<ControlMessage, ControlError> {
        let logPath = configuration.sessionPath.map { SessionDirectory(path: $0).logPath("daemon") }
        let previousMask = (try? Signals.block(SignalSet(Self.handledSignals))) ?? SignalSet()
        let intermediate = Glibc.fork()
        if intermediate != 0 { _ = try? Signals.setMask(previousMask) }
        if intermediate == 0 {
            signals.close()
            _ = try? Signals.setMask(previousMask)
            for fd in control?.descriptors ?? [] { _ = Glibc.close(fd) }
            do { _ = try Fork.daemon(logPath: logPath) } catch { _exit(1) }
            // The daemon.
            Telemetry.publish(.processStart, 0, ProcessRole.daemon.rawValue, Telemetry.intern("daemon"), ProcessControl.startTime(of: getpid()) ?? 0)
            let app = application ?? (try? DemoApplication(configuration: configuration))
            for _ in 0..<3 { app?.trace(method: "JOB", target: "daemon.tick", durationNanoseconds: 1_000_000, status: 200) }
            app?.writer.stop(deadlineMilliseconds: 2_000)
            Telemetry.publish(.processExit, 0, 0)
            _exit(0)
        }
        guard intermediate > 0 else { return .failure(.failed("fork: \(Errno.current)")) }
        _ = try? ProcessControl.wait(for: intermediate, deadline: .after(milliseconds: 5_000))
        return .success(["daemonized": .bool(true)])
    }
}

/// Each process's output goes to its own log file in the session
/// directory (`worker-<pid>.log`), where `forkscope logs` and the
/// dashboard's log pane find it by pid.
enum ServerLogs {
    static func redirectToOwnFile(_ configuration: ServerConfiguration) {
        guard let session = configuration.sessionPath else { return }
        let path = SessionDirectory(path: session).logPath("worker-\(getpid())")
        guard let fd = try? FileDescriptor.open(path, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW | O_CLOEXEC, mode: 0o600) else { return }
        try? fd.duplicate(as: .standardOutput)
        try? fd.duplicate(as: .standardError)
        try? fd.close()
    }
}

/// Requests to the agent's control endpoints (`forkscope agent`).
enum AgentControl {
    static func request(_ url: String, _ target: String) -> Result<ControlMessage, ControlError> {
        do {
            let response = try AgentConnection.request("POST", target, to: try AgentEndpoint(parsing: url),
                timeouts: Timeouts(connectMilliseconds: 500, readMilliseconds: 2_000, totalMilliseconds: 3_000)).get()
            guard (200...299).contains(response.head.status) else {
                return .failure(.failed("agent answered \(response.head.status): \(String(decoding: response.body.prefix(200), as: UTF8.self))"))
            }
            return .success(["agent": .string(String(decoding: response.body.prefix(500), as: UTF8.self))])
        } catch {
            return .failure(.failed("agent control: \(error)"))
        }
    }
}
