import CPosix
import Glibc

/// A socket descriptor. Like `FileDescriptor`, a plain value whose closing
/// is explicit, so a socket inherited across fork() is never closed by a
/// deinit the program did not ask for.
public struct Socket: RawRepresentable, Hashable, Sendable {
    public let rawValue: CInt
    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// The same descriptor, for `read`, `write`, `poll` and the fcntl flags.
    public var fileDescriptor: FileDescriptor { FileDescriptor(rawValue: rawValue) }

    public enum Family: Sendable {
        case ipv4, unix

        var rawValue: CInt {
            switch self {
            case .ipv4: AF_INET
            case .unix: AF_UNIX
            }
        }
    }

    public enum Kind: Sendable {
        case stream, datagram

        var rawValue: CInt {
            switch self {
            case .stream: CInt(SOCK_STREAM.rawValue)
            case .datagram: CInt(SOCK_DGRAM.rawValue)
            }
        }
    }

    /// Flags set atomically at creation, so no other thread's spawn can
    /// inherit the descriptor between creating it and setting the flag.
    public struct Flags: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }

        public static let closeOnExec = Flags(rawValue: CInt(SOCK_CLOEXEC.rawValue))
        public static let nonBlocking = Flags(rawValue: CInt(SOCK_NONBLOCK.rawValue))
    }

    /// Options this project sets; each takes on/off.
    public enum Option: Sendable {
        /// `SO_REUSEADDR`: a restarted listener can bind a port still in TIME_WAIT.
        case reuseAddress
        /// `SO_KEEPALIVE`.
        case keepAlive
        /// `TCP_NODELAY`: send small requests at once instead of batching them.
        case noDelay

        var levelAndName: (level: CInt, name: CInt, label: String) {
            switch self {
            case .reuseAddress: (SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR")
            case .keepAlive: (SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE")
            case .noDelay: (CInt(IPPROTO_TCP), TCP_NODELAY, "TCP_NODELAY")
            }
        }
    }

    /// Which directions `shutdown` ends.
    public enum Direction: Sendable {
        case read, write, readWrite

        var rawValue: CInt {
            switch self {
            case .read: CInt(SHUT_RD)
            case .write: CInt(SHUT_WR)
            case .readWrite: CInt(SHUT_RDWR)
            }
        }
    }

    /// Creates a socket. The corresponding C function is `socket`.
    public static func open(_ family: Family, _ kind: Kind = .stream, flags: Flags = [.closeOnExec]) throws(SystemError) -> Socket {
        let fd = try valueOrErrno(system_socket(family.rawValue, kind.rawValue | flags.rawValue, 0)).get("socket")
        return Socket(rawValue: fd)
    }

    /// Creates a connected pair of Unix sockets.
    /// The corresponding C function is `socketpair`.
    public static func pair(_ kind: Kind = .stream, flags: Flags = [.closeOnExec]) throws(SystemError) -> (Socket, Socket) {
        var fds: (CInt, CInt) = (-1, -1)
        try withUnsafeMutableBytes(of: &fds) { raw in
            // The tuple of two CInts is the int[2] socketpair fills.
            nothingOrErrno(system_socketpair(AF_UNIX, kind.rawValue | flags.rawValue, 0, raw.baseAddress!.assumingMemoryBound(to: CInt.self)))
        }.get("socketpair")
        return (Socket(rawValue: fds.0), Socket(rawValue: fds.1))
    }

    /// Gives the socket a local address. For a Unix socket, the path must
    /// not exist yet. The corresponding C function is `bind`.
    public func bind(to address: SocketAddress) throws(SystemError) {
        try address.withSockaddr { nothingOrErrno(system_bind(rawValue, $0, $1)) }.get("bind", path: address.description)
    }

    /// Accepts connections from now on. The corresponding C function is `listen`.
    public func listen(backlog: CInt = 128) throws(SystemError) {
        try nothingOrErrno(system_listen(rawValue, backlog)).get("listen")
    }

    /// Takes one pending connection; on a non-blocking listener with none,
    /// throws `SystemError` with `.wouldBlock`.
    /// The corresponding C function is `accept4`.
    public func accept(flags: Flags = [.closeOnExec], retryOnInterrupt: Bool = true) throws(SystemError) -> Socket {
        try _accept(flags: flags, retryOnInterrupt: retryOnInterrupt).get("accept4")
    }

    @usableFromInline
    func _accept(flags: Flags, retryOnInterrupt: Bool) -> Result<Socket, Errno> {
        Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_accept4(rawValue, nil, nil, flags.rawValue))
        }.map(Socket.init(rawValue:))
    }

    /// Connects to `address`. A non-blocking socket (or a blocking one whose
    /// connect was interrupted by a signal and retried) may answer
    /// `.inProgress`: wait for `POLLOUT`, then read `pendingError()`.
    /// The corresponding C function is `connect`.
    public func connect(to address: SocketAddress, retryOnInterrupt: Bool = true) throws(SystemError) -> ConnectOutcome {
        try _connect(to: address, retryOnInterrupt: retryOnInterrupt).get("connect", path: address.description)
    }

    @usableFromInline
    func _connect(to address: SocketAddress, retryOnInterrupt: Bool) -> Result<ConnectOutcome, Errno> {
        var interrupted = false
        let result = address.withSockaddr { sockaddr, length in
            Posix.retryOnInterrupt(retryOnInterrupt) {
                let result = nothingOrErrno(system_connect(rawValue, sockaddr, length))
                if case .failure(.interrupted) = result { interrupted = true }
                return result
            }
        }
        switch result {
        case .success: return .success(.connected)
        case .failure(.inProgress): return .success(.inProgress)
        // After EINTR the kernel goes on connecting; calling again reports
        // where that attempt is, not a new failure.
        case .failure(.alreadyInProgress) where interrupted: return .success(.inProgress)
        case .failure(.alreadyConnected) where interrupted: return .success(.connected)
        case .failure(let errno): return .failure(errno)
        }
    }

    /// The outcome of a non-blocking connect once the socket is writable:
    /// nil when connected, else why it failed (`SO_ERROR`, which reading clears).
    /// The corresponding C function is `getsockopt`.
    public func pendingError() throws(SystemError) -> Errno? {
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        try nothingOrErrno(system_getsockopt(rawValue, SOL_SOCKET, SO_ERROR, &value, &length)).get("getsockopt(SO_ERROR)")
        return value == 0 ? nil : Errno(rawValue: value)
    }

    /// Turns `option` on or off. The corresponding C function is `setsockopt`.
    public func setOption(_ option: Option, _ enabled: Bool) throws(SystemError) {
        let (level, name, label) = option.levelAndName
        var value: CInt = enabled ? 1 : 0
        try nothingOrErrno(system_setsockopt(rawValue, level, name, &value, socklen_t(MemoryLayout<CInt>.size)))
            .get("setsockopt(\(label))")
    }

    /// Whether `option` is on. The corresponding C function is `getsockopt`.
    public func option(_ option: Option) throws(SystemError) -> Bool {
        let (level, name, label) = option.levelAndName
        var value: CInt = 0
        var length = socklen_t(MemoryLayout<CInt>.size)
        try nothingOrErrno(system_getsockopt(rawValue, level, name, &value, &length)).get("getsockopt(\(label))")
        return value != 0
    }

    /// The address the socket is bound to: after binding port 0, this is
    /// where to learn the port the kernel chose.
    /// The corresponding C function is `getsockname`.
    public func localAddress() throws(SystemError) -> SocketAddress {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        try withUnsafeMutablePointer(to: &storage) { pointer in
            // sockaddr_storage is large and aligned enough for every sockaddr.
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { nothingOrErrno(system_getsockname(rawValue, $0, &length)) }
        }.get("getsockname")
        guard let address = SocketAddress(storage, length: length) else {
            throw SystemError("getsockname", .init(rawValue: EAFNOSUPPORT))
        }
        return address
    }

    /// Ends one or both directions of a connection; the peer reads end of
    /// file after `.write`. The corresponding C function is `shutdown`.
    public func shutdown(_ direction: Direction) throws(SystemError) {
        try nothingOrErrno(system_shutdown(rawValue, direction.rawValue)).get("shutdown")
    }

    /// Sends some of `buffer`; returns how many bytes were sent. Uses
    /// `MSG_NOSIGNAL`: a closed peer gives `EPIPE`, never a process-killing
    /// SIGPIPE. The corresponding C function is `send`.
    public func send(_ buffer: UnsafeRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try _send(buffer, retryOnInterrupt: retryOnInterrupt).get("send")
    }

    @usableFromInline
    func _send(_ buffer: UnsafeRawBufferPointer, retryOnInterrupt: Bool) -> Result<Int, Errno> {
        Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_send(rawValue, buffer.baseAddress, buffer.count, CInt(MSG_NOSIGNAL)))
        }
    }

    /// Sends all of `buffer`, continuing after short sends (a blocking socket).
    public func sendAll(_ buffer: UnsafeRawBufferPointer) throws(SystemError) {
        var done = 0
        while done < buffer.count {
            done += try send(UnsafeRawBufferPointer(rebasing: buffer[done...]))
        }
    }

    /// Sends all bytes of `text` (UTF-8).
    public func sendAll(_ text: String) throws(SystemError) {
        let bytes = Array(text.utf8)
        // withUnsafeBytes rethrows untyped errors: carry the typed one out in a Result.
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try sendAll(raw) } }.get()
    }

    /// Receives up to `buffer.count` bytes; 0 means the peer closed.
    /// The corresponding C function is `recv`.
    public func receive(into buffer: UnsafeMutableRawBufferPointer, retryOnInterrupt: Bool = true) throws(SystemError) -> Int {
        try _receive(into: buffer, retryOnInterrupt: retryOnInterrupt).get("recv")
    }

    @usableFromInline
    func _receive(into buffer: UnsafeMutableRawBufferPointer, retryOnInterrupt: Bool) -> Result<Int, Errno> {
        Posix.retryOnInterrupt(retryOnInterrupt) {
            valueOrErrno(system_recv(rawValue, buffer.baseAddress, buffer.count, 0))
        }
    }

    /// Who is at the other end of a Unix socket, as the kernel recorded at
    /// connect time: the control socket admits only its own uid.
    /// The corresponding C function is `getsockopt` (`SO_PEERCRED`).
    public func peerCredentials() throws(SystemError) -> PeerCredentials {
        var credentials = PeerCredentials(pid: 0, uid: 0, gid: 0)
        try nothingOrErrno(system_peer_credentials(rawValue, &credentials.pid, &credentials.uid, &credentials.gid))
            .get("getsockopt(SO_PEERCRED)")
        return credentials
    }

    /// Closes the socket; not retried on `EINTR` (see `FileDescriptor.close`).
    /// The corresponding C function is `close`.
    public func close() throws(SystemError) {
        try fileDescriptor.close()
    }
}

/// How `connect` ended without an error.
public enum ConnectOutcome: Equatable, Sendable {
    case connected
    /// Still connecting: poll for `POLLOUT`, then check `Socket.pendingError()`.
    case inProgress
}

/// The process at the other end of a Unix socket (`struct ucred`).
public struct PeerCredentials: Equatable, Sendable {
    public var pid: pid_t
    public var uid: uid_t
    public var gid: gid_t

    public init(pid: pid_t, uid: uid_t, gid: gid_t) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }
}
