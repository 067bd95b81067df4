import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import Wire

/// A request from the operator (the TUI) on the control socket, as parsed
/// and validated from a `Wire` control frame.
public enum ControlRequest: Equatable, Sendable {
    case fork(pid: pid_t, start: UInt64)
    case forkUnsafe
    case kill(pid: pid_t, start: UInt64, signal: CInt)
    case cancel(pid: pid_t, start: UInt64)
    case burst(Int)
    case policy(SendPolicy)
    case agentDelay(milliseconds: Int)
    case agentFault(String)
    case daemonize
    case processes

    public var name: String {
        switch self {
        case .fork: "fork"
        case .forkUnsafe: "fork-unsafe"
        case .kill: "kill"
        case .cancel: "cancel"
        case .burst: "burst"
        case .policy: "policy"
        case .agentDelay: "agent-delay"
        case .agentFault: "agent-fault"
        case .daemonize: "daemonize"
        case .processes: "processes"
        }
    }

    /// Parses and validates a message; the error is sent back to the client.
    public init(_ message: ControlMessage) throws(ControlError) {
        guard let command = message["command"]?.stringValue else { throw .invalid("missing \"command\" (a string)") }
        func integer(_ key: String) throws(ControlError) -> Int64 {
            guard let value = message[key]?.int64Value else { throw .invalid("\(command): missing integer \"\(key)\"") }
            return value
        }
        func target() throws(ControlError) -> (pid_t, UInt64) {
            let pid = try integer("pid"), start = try integer("start")
            guard pid > 0, pid <= Int64(Int32.max), start >= 0 else { throw .invalid("\(command): bad pid/start") }
            return (pid_t(pid), UInt64(start))
        }
        switch command {
        case "fork": let (pid, start) = try target(); self = .fork(pid: pid, start: start)
        case "fork-unsafe": self = .forkUnsafe
        case "kill":
            let (pid, start) = try target()
            let signal = message["signal"]?.int64Value ?? Int64(SIGTERM)
            guard (1...64).contains(signal) else { throw .invalid("kill: signal \(signal) out of range") }
            self = .kill(pid: pid, start: start, signal: CInt(signal))
        case "cancel": let (pid, start) = try target(); self = .cancel(pid: pid, start: start)
        case "burst":
            let n = try integer("n")
            guard (1...100_000).contains(n) else { throw .invalid("burst: n must be 1...100000") }
            self = .burst(Int(n))
        case "policy":
            guard let text = message["policy"]?.stringValue, let policy = SendPolicy(parsing: text) else {
                throw .invalid("policy: expected \"drain\", \"cancel\" or \"drain:MS\"")
            }
            self = .policy(policy)
        case "agent-delay":
            let ms = try integer("ms")
            guard (0...600_000).contains(ms) else { throw .invalid("agent-delay: ms must be 0...600000") }
            self = .agentDelay(milliseconds: Int(ms))
        case "agent-fault":
            guard let kind = message["kind"]?.stringValue, kind.count < 64 else { throw .invalid("agent-fault: missing \"kind\"") }
            self = .agentFault(kind)
        case "daemonize": self = .daemonize
        case "processes": self = .processes
        default: throw .unknownCommand(command)
        }
    }

    /// The message that encodes this request (the client side).
    public var message: ControlMessage {
        var fields = OrderedMap<MessagePackValue>()
        _ = fields.updateValue(.string(name), forKey: "command")
        switch self {
        case .fork(let pid, let start), .cancel(let pid, let start):
            _ = fields.updateValue(.int(Int64(pid)), forKey: "pid")
            _ = fields.updateValue(.int(Int64(start)), forKey: "start")
        case .kill(let pid, let start, let signal):
            _ = fields.updateValue(.int(Int64(pid)), forKey: "pid")
            _ = fields.updateValue(.int(Int64(start)), forKey: "start")
            _ = fields.updateValue(.int(Int64(signal)), forKey: "signal")
        case .burst(let n): _ = fields.updateValue(.int(Int64(n)), forKey: "n")
        case .policy(let policy): _ = fields.updateValue(.string(policy.description), forKey: "policy")
        case .agentDelay(let ms): _ = fields.updateValue(.int(Int64(ms)), forKey: "ms")
        case .agentFault(let kind): _ = fields.updateValue(.string(kind), forKey: "kind")
        case .forkUnsafe, .daemonize, .processes: break
        }
        return ControlMessage(fields)
    }
}

public enum ControlError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalid(String)
    case unknownCommand(String)
    case notInTree(pid_t)
    case refused(String)
    case failed(String)

    public var description: String {
        switch self {
        case .invalid(let why): "invalid request: \(why)"
        case .unknownCommand(let name): "unknown command \"\(name)\" (try: fork, fork-unsafe, kill, cancel, burst, policy, agent-delay, agent-fault, daemonize, processes)"
        case .notInTree(let pid): "pid \(pid) (with that start time) is not a live process of this server's tree"
        case .refused(let why): "refused: \(why)"
        case .failed(let why): "failed: \(why)"
        }
    }
}

/// Executes validated requests; implemented by the master.
public protocol ControlHandler: AnyObject, Sendable {
    func handle(_ request: ControlRequest) -> Result<ControlMessage, ControlError>
}

/// The control socket: a Unix socket in the session directory, mode 0600,
/// served by one named thread (`fks-control`) that stays outside the
/// quiesced set — so the operator can still cancel a send while a fork
/// waits for it to drain. Each client's uid is checked with SO_PEERCRED:
/// another user's requests are refused even if the socket file were
/// reachable.
public final class ControlServer: @unchecked Sendable {
    public let path: String
    let listener: Socket
    private weak var handler: (any ControlHandler)?
    private var thread = pthread_t()
    private let stopPipe: (read: FileDescriptor, write: FileDescriptor)
    private let readyPipe: (read: FileDescriptor, write: FileDescriptor)

    public init(path: String, handler: any ControlHandler) throws(SystemError) {
        self.path = path
        self.handler = handler
        _ = try? FileSystem.remove(path)
        listener = try Socket.open(.unix, .stream, flags: [.closeOnExec, .nonBlocking])
        let address: SocketAddress
        do { address = try .unix(path: path) } catch { throw SystemError("bind", path: path, .nameTooLong) }
        let previous = umask(0o177)  // the socket file is created 0600
        defer { umask(previous) }
        try listener.bind(to: address)
        try listener.listen(backlog: 16)
        stopPipe = try FileDescriptor.pipe()
        readyPipe = try FileDescriptor.pipe()
    }

    /// The descriptors a forked worker must close (it is not the control server).
    public var descriptors: [CInt] {
        [listener.rawValue, stopPipe.read.rawValue, stopPipe.write.rawValue, readyPipe.read.rawValue, readyPipe.write.rawValue]
    }

    /// Starts the thread and returns once it is idle in its poll loop.
    ///
    /// Why wait: the master forks right after. A thread that is still
    /// running first-time code (the Swift runtime instantiating metadata,
    /// filling its caches) may hold a runtime lock at the instant of
    /// fork(); the child, where that thread does not exist, would then
    /// block forever the first time it needs the same lock (seen here:
    /// a worker stuck before its first event).
    public func start() {
        let context = Unmanaged.passRetained(self).toOpaque()
        pthread_create(&thread, nil, controlThreadMain, context)
        var byte: UInt8 = 0
        var fds = [pollfd(fd: readyPipe.read.rawValue, events: Int16(POLLIN), revents: 0)]
        if (try? poll(&fds, timeoutMilliseconds: 5_000)) == 1 {
            _ = withUnsafeMutableBytes(of: &byte) { try? readyPipe.read.read(into: $0) }
        }
    }

    public func stop() {
        try? stopPipe.write.writeAll("x")
        pthread_join(thread, nil)
        try? listener.close()
        for fd in [stopPipe.read, stopPipe.write, readyPipe.read, readyPipe.write] { try? fd.close() }
        _ = try? FileSystem.remove(path)
    }

    fileprivate func serve() {
        _ = "fks-control".withCString { fks_set_current_thread_name($0) }
        Telemetry.publish(.threadStart, UInt64(UInt32(bitPattern: fks_cached_tid())), Telemetry.intern("fks-control"))
        var clients: [CInt: (socket: Socket, decoder: ControlFrameDecoder, uid: uid_t, pid: pid_t)] = [:]
        var ready = false
        while true {
            if !ready {
                // One dry pass over the loop's types and calls, then tell
                // `start()` the thread is idle (see there).
                var warm = [pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0)]
                for fd in clients.keys { warm.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
                _ = try? poll(&warm, timeoutMilliseconds: 0)
                var decoder = ControlFrameDecoder()
                _ = try? decoder.next()
                _ = try? ControlRequest(["command": "processes"])
                try? readyPipe.write.writeAll("r")
                ready = true
            }
            var fds = [pollfd(fd: listener.rawValue, events: Int16(POLLIN), revents: 0),
                       pollfd(fd: stopPipe.read.rawValue, events: Int16(POLLIN), revents: 0)]
            for fd in clients.keys { fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
            guard (try? poll(&fds, timeoutMilliseconds: 1000)) != nil else { continue }
            if fds[1].revents != 0 { break }
            if fds[0].revents != 0, let client = try? listener.accept(flags: [.closeOnExec, .nonBlocking]) {
                // The uid is checked on the first message, once it has been
                // read: closing with unread data would reset the connection
                // and the client would never see why it was refused.
                let credentials = try? client.peerCredentials()
                clients[client.rawValue] = (client, ControlFrameDecoder(), credentials?.uid ?? UInt32.max, credentials?.pid ?? 0)
            }
            for entry in fds.dropFirst(2) where entry.revents != 0 {
                guard var client = clients[entry.fd] else { continue }
                var chunk = [UInt8](repeating: 0, count: 8192)
                let n = chunk.withUnsafeMutableBytes { raw in (try? client.socket.receive(into: raw)) ?? 0 }
                if n <= 0 {
                    try? client.socket.close()
                    clients[entry.fd] = nil
                    continue
                }
                client.decoder.feed(chunk[..<n])
                var drop = false
                while true {
                    let message: ControlMessage?
                    do { message = try client.decoder.next() } catch {
                        reply(client.socket, .failure(.invalid("\(error)")))
                        drop = true  // the framing is lost: hang up
                        break
                    }
                    guard let message else { break }
                    if client.uid != geteuid() {
                        reply(client.socket, .failure(.refused("uid \(client.uid) is not the server's owner (uid \(geteuid()))")))
                        Telemetry.publish(.operatorCommand, Telemetry.intern("refused: foreign uid"), UInt64(UInt32(bitPattern: client.pid)), UInt64(client.uid))
                        drop = true
                        break
                    }
                    let result: Result<ControlMessage, ControlError>
                    do {
                        let request = try ControlRequest(message)
                        Telemetry.publish(.operatorCommand, Telemetry.intern(request.name), UInt64(UInt32(bitPattern: client.pid)),
                                          UInt64(client.uid), request.targetPid)
                        result = handler?.handle(request) ?? .failure(.failed("the server is stopping"))
                    } catch {
                        result = .failure(error)
                    }
                    reply(client.socket, result)
                }
                if drop {
                    try? client.socket.close()
                    clients[entry.fd] = nil
                } else {
                    clients[entry.fd] = client
                }
            }
        }
        for client in clients.values { try? client.socket.close() }
    }

    private func reply(_ socket: Socket, _ result: Result<ControlMessage, ControlError>) {
        var fields: OrderedMap<MessagePackValue>
        switch result {
        case .success(let message):
            fields = message.fields
            _ = fields.updateValue(.bool(true), forKey: "ok")
        case .failure(let error):
            fields = ["ok": .bool(false), "error": .string("\(error)")]
        }
        guard let frame = try? ControlFrame.encode(ControlMessage(fields)) else { return }
        // Replies are small; a client that does not read them is dropped.
        _ = frame.withUnsafeBytes { raw in try? socket.sendAll(raw) }
    }
}

extension ControlRequest {
    var targetPid: UInt64 {
        switch self {
        case .fork(let pid, _), .cancel(let pid, _), .kill(let pid, _, _): UInt64(UInt32(bitPattern: pid))
        default: 0
        }
    }
}

nonisolated private func controlThreadMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let server = Unmanaged<ControlServer>.fromOpaque(raw!).takeRetainedValue()
    server.serve()
    return nil
}
