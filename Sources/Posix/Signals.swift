import CPosix
import Glibc

/// A set of signal numbers (`sigset_t`).
public struct SignalSet: Sendable, Equatable, ExpressibleByArrayLiteral, CustomStringConvertible {
    var raw: sigset_t

    /// The empty set.
    public init() {
        raw = sigset_t()
        sigemptyset(&raw)
    }

    public init(_ signals: [CInt]) {
        self.init()
        for signal in signals { insert(signal) }
    }

    public init(arrayLiteral signals: CInt...) { self.init(signals) }

    /// Every signal (SIGKILL and SIGSTOP included; the kernel ignores them
    /// where they cannot apply).
    public static var all: SignalSet {
        var set = SignalSet()
        sigfillset(&set.raw)
        return set
    }

    public mutating func insert(_ signal: CInt) { sigaddset(&raw, signal) }
    public mutating func remove(_ signal: CInt) { sigdelset(&raw, signal) }

    public func contains(_ signal: CInt) -> Bool {
        var copy = raw
        return sigismember(&copy, signal) == 1
    }

    /// The standard and real-time signal numbers in the set.
    public var signals: [CInt] { (1..<65).filter(contains) }

    public static func == (lhs: SignalSet, rhs: SignalSet) -> Bool { lhs.signals == rhs.signals }

    public var description: String { "[" + signals.map(String.init).joined(separator: ", ") + "]" }
}

/// Signal dispositions and the calling thread's signal mask.
public enum Signals {
    /// `sa_flags` for `install`.
    public struct ActionFlags: OptionSet, Sendable {
        public let rawValue: CInt
        public init(rawValue: CInt) { self.rawValue = rawValue }

        /// `SA_RESTART`: calls interrupted by the handler restart instead of failing with EINTR.
        public static let restart = ActionFlags(rawValue: SA_RESTART)
        /// `SA_NOCLDSTOP`: no SIGCHLD when a child stops or continues.
        public static let noChildStop = ActionFlags(rawValue: SA_NOCLDSTOP)
        /// `SA_NODEFER`: the signal is not blocked while its handler runs.
        public static let noDefer = ActionFlags(rawValue: SA_NODEFER)
        /// `SA_RESETHAND`: the disposition returns to default after one delivery.
        public static let resetHandler = ActionFlags(rawValue: CInt(bitPattern: SA_RESETHAND))
        /// `SA_ONSTACK`: run on the alternate signal stack.
        public static let onStack = ActionFlags(rawValue: SA_ONSTACK)
    }

    /// Installs `handler` for `signal`. The handler runs on whatever thread
    /// the kernel picks, inside any code: it must only touch C atomics and
    /// async-signal-safe calls (write to an eventfd or pipe).
    /// The corresponding C function is `sigaction`.
    public static func install(
        _ handler: @escaping @convention(c) (CInt) -> Void, for signal: CInt, flags: ActionFlags = [.restart]
    ) throws(SystemError) {
        try nothingOrErrno(system_sigaction(signal, handler, flags.rawValue)).get("sigaction(\(signal))")
    }

    /// Ignores `signal` (SIG_IGN, which exec does not reset: `Spawn` resets
    /// it for children). The corresponding C function is `sigaction`.
    public static func ignore(_ signal: CInt) throws(SystemError) {
        try nothingOrErrno(system_sigaction(signal, fks_sig_ign(), 0)).get("sigaction(\(signal))")
    }

    /// Restores the default action (SIG_DFL). The corresponding C function is `sigaction`.
    public static func restoreDefault(_ signal: CInt) throws(SystemError) {
        try nothingOrErrno(system_sigaction(signal, fks_sig_dfl(), 0)).get("sigaction(\(signal))")
    }

    /// Adds `signals` to the calling thread's mask; returns the previous mask.
    /// The corresponding C function is `pthread_sigmask` (the thread-safe
    /// `sigprocmask`).
    @discardableResult
    public static func block(_ signals: SignalSet) throws(SystemError) -> SignalSet {
        try changeMask(SIG_BLOCK, signals)
    }

    /// Removes `signals` from the calling thread's mask; returns the previous mask.
    /// The corresponding C function is `pthread_sigmask`.
    @discardableResult
    public static func unblock(_ signals: SignalSet) throws(SystemError) -> SignalSet {
        try changeMask(SIG_UNBLOCK, signals)
    }

    /// Replaces the calling thread's mask; returns the previous mask.
    /// The corresponding C function is `pthread_sigmask`.
    @discardableResult
    public static func setMask(_ signals: SignalSet) throws(SystemError) -> SignalSet {
        try changeMask(SIG_SETMASK, signals)
    }

    /// The calling thread's mask. The corresponding C function is `pthread_sigmask`.
    public static func currentMask() throws(SystemError) -> SignalSet {
        var old = SignalSet()
        try nothingOrErrorNumber(system_pthread_sigmask(SIG_BLOCK, nil, &old.raw)).get("pthread_sigmask")
        return old
    }

    static func changeMask(_ how: CInt, _ signals: SignalSet) throws(SystemError) -> SignalSet {
        var set = signals.raw
        var old = SignalSet()
        try nothingOrErrorNumber(system_pthread_sigmask(how, &set, &old.raw)).get("pthread_sigmask")
        return old
    }

    /// Sends `signal` to the calling thread. The corresponding C function is `raise`.
    public static func raise(_ signal: CInt) throws(SystemError) {
        try nothingOrErrno(system_raise(signal)).get("raise(\(signal))")
    }
}
