import CPosix
import Glibc

/// An error number from a failed system call, with a readable name.
public struct Errno: RawRepresentable, Error, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: CInt
    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// The calling thread's `errno`.
    public static var current: Errno { Errno(rawValue: fks_errno()) }

    public static let interrupted = Errno(rawValue: EINTR)
    public static let wouldBlock = Errno(rawValue: EAGAIN)
    public static let resourceTemporarilyUnavailable = Errno(rawValue: EAGAIN)
    public static let noSuchFileOrDirectory = Errno(rawValue: ENOENT)
    public static let fileExists = Errno(rawValue: EEXIST)
    public static let permissionDenied = Errno(rawValue: EACCES)
    public static let notPermitted = Errno(rawValue: EPERM)
    public static let badFileDescriptor = Errno(rawValue: EBADF)
    public static let invalidArgument = Errno(rawValue: EINVAL)
    public static let noSuchProcess = Errno(rawValue: ESRCH)
    public static let noChildProcess = Errno(rawValue: ECHILD)
    public static let tooManySymbolicLinks = Errno(rawValue: ELOOP)
    public static let noSpace = Errno(rawValue: ENOSPC)
    public static let connectionRefused = Errno(rawValue: ECONNREFUSED)
    public static let connectionReset = Errno(rawValue: ECONNRESET)
    public static let brokenPipe = Errno(rawValue: EPIPE)
    public static let inProgress = Errno(rawValue: EINPROGRESS)
    public static let timedOut = Errno(rawValue: ETIMEDOUT)
    public static let addressInUse = Errno(rawValue: EADDRINUSE)
    public static let addressNotAvailable = Errno(rawValue: EADDRNOTAVAIL)
    public static let alreadyInProgress = Errno(rawValue: EALREADY)
    public static let alreadyConnected = Errno(rawValue: EISCONN)
    public static let notConnected = Errno(rawValue: ENOTCONN)
    public static let nameTooLong = Errno(rawValue: ENAMETOOLONG)
    public static let notImplemented = Errno(rawValue: ENOSYS)
    public static let tooManyOpenFiles = Errno(rawValue: EMFILE)
    public static let noMemory = Errno(rawValue: ENOMEM)

    /// The symbolic name, e.g. `EINTR`, for messages a user can search for.
    public var name: String {
        switch rawValue {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case ESRCH: "ESRCH"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case EBADF: "EBADF"
        case ECHILD: "ECHILD"
        case EAGAIN: "EAGAIN"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EEXIST: "EEXIST"
        case ENOTDIR: "ENOTDIR"
        case EISDIR: "EISDIR"
        case EINVAL: "EINVAL"
        case EMFILE: "EMFILE"
        case ENOSPC: "ENOSPC"
        case EPIPE: "EPIPE"
        case ELOOP: "ELOOP"
        case ENAMETOOLONG: "ENAMETOOLONG"
        case ECONNREFUSED: "ECONNREFUSED"
        case ECONNRESET: "ECONNRESET"
        case EINPROGRESS: "EINPROGRESS"
        case ETIMEDOUT: "ETIMEDOUT"
        case EADDRINUSE: "EADDRINUSE"
        case ENOTCONN: "ENOTCONN"
        case EISCONN: "EISCONN"
        case EALREADY: "EALREADY"
        case EADDRNOTAVAIL: "EADDRNOTAVAIL"
        case EAFNOSUPPORT: "EAFNOSUPPORT"
        case ECONNABORTED: "ECONNABORTED"
        case ENETUNREACH: "ENETUNREACH"
        case EHOSTUNREACH: "EHOSTUNREACH"
        case ENOTSOCK: "ENOTSOCK"
        case ENOPROTOOPT: "ENOPROTOOPT"
        case EOPNOTSUPP: "EOPNOTSUPP"
        case ENFILE: "ENFILE"
        case ENOSYS: "ENOSYS"
        case ENOEXEC: "ENOEXEC"
        case E2BIG: "E2BIG"
        case ETXTBSY: "ETXTBSY"
        case EFAULT: "EFAULT"
        case EROFS: "EROFS"
        case ENOTEMPTY: "ENOTEMPTY"
        case EXDEV: "EXDEV"
        case ENXIO: "ENXIO"
        case ENODEV: "ENODEV"
        case EBUSY: "EBUSY"
        default: "errno \(rawValue)"
        }
    }

    public var description: String {
        guard let text = strerror(rawValue) else { return name }
        return "\(String(cString: text)) (\(name))"
    }
}

/// A failed system call: which call, on which path (when there is one), and
/// why. Its description is a message a user can act on.
public struct SystemError: Error, Equatable, Sendable, CustomStringConvertible {
    public let call: String
    public let path: String?
    public let errno: Errno

    public init(_ call: String, path: String? = nil, _ errno: Errno) {
        self.call = call
        self.path = path
        self.errno = errno
    }

    public var description: String {
        if let path { return "\(call)(\(path)): \(errno)" }
        return "\(call): \(errno)"
    }
}

extension Result where Failure == Errno {
    /// Lifts an `Errno` failure into a `SystemError` naming the call.
    @inlinable
    public func get(_ call: String, path: String? = nil) throws(SystemError) -> Success {
        switch self {
        case .success(let value): return value
        case .failure(let errno): throw SystemError(call, path: path, errno)
        }
    }
}

// MARK: the one place errno and EINTR are handled.

@inline(__always) @usableFromInline
func valueOrErrno<I: FixedWidthInteger>(_ value: I) -> Result<I, Errno> {
    value == -1 ? .failure(.current) : .success(value)
}

@inline(__always) @usableFromInline
func nothingOrErrno<I: FixedWidthInteger>(_ value: I) -> Result<Void, Errno> {
    valueOrErrno(value).map { _ in () }
}

/// For calls that return an error number instead of setting `errno`
/// (`posix_spawn`, `pthread_sigmask`): 0 is success.
@inline(__always) @usableFromInline
func nothingOrErrorNumber(_ value: CInt) -> Result<Void, Errno> {
    value == 0 ? .success(()) : .failure(Errno(rawValue: value))
}

/// Calls `body` again while it fails with `EINTR` and `retry` is set.
@inline(__always) @usableFromInline
func retryOnInterrupt<T>(_ retry: Bool, _ body: () -> Result<T, Errno>) -> Result<T, Errno> {
    while true {
        switch body() {
        case .failure(.interrupted) where retry: continue
        case let result: return result
        }
    }
}
