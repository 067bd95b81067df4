import CPosix
import Glibc

/// An address text or path that cannot name a socket. Not a system call
/// failure: it is found before any call is made.
public enum SocketAddressError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not `host:port` with a dotted IPv4 host (or `localhost`) and a port 0...65535.
    case invalidIPv4(String)
    /// Longer than `UnixAddress.maximumPathBytes`.
    case unixPathTooLong(path: String, bytes: Int)
    /// Empty, or holding a NUL byte.
    case invalidUnixPath(String)

    public var description: String {
        switch self {
        case .invalidIPv4(let text):
            "invalid IPv4 socket address \"\(text)\": expected host:port, such as 127.0.0.1:8126 or localhost:8126"
        case .unixPathTooLong(let path, let bytes):
            "Unix socket path is \(bytes) bytes, but the kernel allows at most \(UnixAddress.maximumPathBytes) "
                + "(sun_path holds 108 bytes with the terminating NUL): \(path); use a shorter directory"
        case .invalidUnixPath(let path):
            "invalid Unix socket path \"\(path)\": it must be non-empty and hold no NUL byte"
        }
    }
}

/// An IPv4 address and port, e.g. `127.0.0.1:8126`.
public struct IPv4Address: Hashable, Sendable, CustomStringConvertible {
    /// The address in host byte order: 0x7f00_0001 is 127.0.0.1.
    public var host: UInt32
    public var port: UInt16

    public init(host: UInt32, port: UInt16) {
        self.host = host
        self.port = port
    }

    /// 127.0.0.1 on `port` (0 lets `bind` choose a free port; read it back
    /// with `Socket.localAddress()`).
    public static func loopback(port: UInt16) -> IPv4Address { IPv4Address(host: 0x7f00_0001, port: port) }

    /// 0.0.0.0 on `port`: every local interface.
    public static func any(port: UInt16) -> IPv4Address { IPv4Address(host: 0, port: port) }

    /// Parses `host:port`, where host is a dotted IPv4 address or
    /// `localhost`. No name lookup: resolving a name is not fork-safe work.
    public init(parsing text: String) throws(SocketAddressError) {
        let bytes = Array(text.utf8)
        guard let colon = bytes.lastIndex(of: UInt8(ascii: ":")),
              let port = Self.parseDecimal(bytes[(colon + 1)...], maximum: 65535)
        else { throw .invalidIPv4(text) }
        let hostBytes = bytes[..<colon]
        if hostBytes.elementsEqual("localhost".utf8) {
            self = .loopback(port: UInt16(port))
            return
        }
        let parts = hostBytes.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false)
        guard parts.count == 4 else { throw .invalidIPv4(text) }
        var host: UInt32 = 0
        for part in parts {
            guard part.count <= 3, let octet = Self.parseDecimal(part, maximum: 255) else { throw .invalidIPv4(text) }
            host = host << 8 | octet
        }
        self.init(host: host, port: UInt16(port))
    }

    /// Decimal digits only (no sign, no spaces), at most `maximum`.
    private static func parseDecimal(_ digits: ArraySlice<UInt8>, maximum: UInt32) -> UInt32? {
        guard !digits.isEmpty, digits.count <= 5 else { return nil }
        var value: UInt32 = 0
        for c in digits {
            guard c >= UInt8(ascii: "0"), c <= UInt8(ascii: "9") else { return nil }
            value = value * 10 + UInt32(c - UInt8(ascii: "0"))
        }
        return value <= maximum ? value : nil
    }

    public var description: String {
        "\(host >> 24).\(host >> 16 & 0xff).\(host >> 8 & 0xff).\(host & 0xff):\(port)"
    }
}

/// A Unix domain socket path.
public struct UnixAddress: Hashable, Sendable, CustomStringConvertible {
    /// The longest path `sockaddr_un` can hold with its terminating NUL.
    public static let maximumPathBytes = 107

    /// The path; empty only for an unnamed socket read back from the kernel
    /// (a `socketpair` end, or a client that did not bind).
    public let path: String

    public init(path: String) throws(SocketAddressError) {
        let bytes = path.utf8.count
        guard bytes > 0, !path.utf8.contains(0) else { throw .invalidUnixPath(path) }
        guard bytes <= Self.maximumPathBytes else { throw .unixPathTooLong(path: path, bytes: bytes) }
        self.path = path
    }

    init(unchecked path: String) { self.path = path }

    public var description: String { path.isEmpty ? "unnamed Unix socket" : path }
}

/// The address of a socket: where to bind, connect, or who is local.
public enum SocketAddress: Hashable, Sendable, CustomStringConvertible {
    case ipv4(IPv4Address)
    case unix(UnixAddress)

    /// Parses `host:port` into an IPv4 address.
    public static func ipv4(parsing text: String) throws(SocketAddressError) -> SocketAddress {
        .ipv4(try IPv4Address(parsing: text))
    }

    /// A Unix socket path, checked against the `sun_path` limit.
    public static func unix(path: String) throws(SocketAddressError) -> SocketAddress {
        .unix(try UnixAddress(path: path))
    }

    public var family: Socket.Family {
        switch self {
        case .ipv4: .ipv4
        case .unix: .unix
        }
    }

    public var description: String {
        switch self {
        case .ipv4(let address): address.description
        case .unix(let address): address.description
        }
    }

    /// Calls `body` with this address as a `sockaddr` and its length.
    func withSockaddr<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        switch self {
        case .ipv4(let address):
            var raw = sockaddr_in()
            raw.sin_family = sa_family_t(AF_INET)
            raw.sin_port = address.port.bigEndian
            raw.sin_addr.s_addr = address.host.bigEndian
            // sockaddr_in is layout-compatible with the sockaddr header the kernel reads first.
            return withUnsafePointer(to: &raw) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        case .unix(let address):
            var raw = sockaddr_un()
            raw.sun_family = sa_family_t(AF_UNIX)
            let bytes = Array(address.path.utf8)
            // UnixAddress checked the length, so the path and its NUL fit in sun_path.
            withUnsafeMutableBytes(of: &raw.sun_path) { sunPath in
                sunPath.copyBytes(from: bytes.prefix(sunPath.count - 1))
            }
            let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + 1
            return withUnsafePointer(to: &raw) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
            }
        }
    }

    /// Reads an address the kernel filled in (`getsockname`, `accept4`).
    init?(_ storage: sockaddr_storage, length: socklen_t) {
        var storage = storage
        switch CInt(storage.ss_family) {
        case AF_INET:
            let raw = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self = .ipv4(IPv4Address(host: UInt32(bigEndian: raw.sin_addr.s_addr), port: UInt16(bigEndian: raw.sin_port)))
        case AF_UNIX:
            let raw = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_un.self) }
            let pathLength = max(0, Int(length) - MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!)
            let path = withUnsafeBytes(of: raw.sun_path) { sunPath in
                String(decoding: sunPath.prefix(pathLength).prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            self = .unix(UnixAddress(unchecked: path))
        default:
            return nil
        }
    }
}
