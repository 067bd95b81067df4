/// A fork policy the operator can set (`p`): what a fork does with a send in
/// flight. `text` is the form `forkscope serve --policy` and the control
/// socket accept (`drain`, `cancel`, `drain:MS`).
public enum ForkPolicySetting: Equatable, Sendable, CaseIterable {
    case drain
    case cancel
    case drainThenCancel(milliseconds: Int)

    public static let allCases: [ForkPolicySetting] = [.drain, .cancel, .drainThenCancel(milliseconds: 250), .drainThenCancel(milliseconds: 1000)]

    public var text: String {
        switch self {
        case .drain: "drain"
        case .cancel: "cancel"
        case .drainThenCancel(let ms): "drain:\(ms)"
        }
    }

    public var explanation: String {
        switch self {
        case .drain: "wait for the in-flight send to finish, then fork"
        case .cancel: "cancel the in-flight send (re-queued), fork at once"
        case .drainThenCancel(let ms): "wait up to \(ms) ms, then cancel"
        }
    }
}

/// What a control key asks for: a value the view returns and the caller's
/// `Controller` carries out (the demo wiring sends it on the control
/// socket). A process target is named by (pid, start time), never by pid
/// alone, so a command cannot reach a reused pid.
public enum ControlCommand: Equatable, Sendable, CustomStringConvertible {
    /// `f`: fork a new worker through the at-fork hooks (in `target`, or the
    /// master when the target is a worker).
    case fork(target: ProcessKey)
    /// `u`: a raw fork() that bypasses the hooks (the Sqreen bug).
    case unsafeFork(target: ProcessKey)
    /// `c`: cancel the target's in-flight send.
    case cancelSend(target: ProcessKey)
    /// `k`: send a signal (SIGTERM by default).
    case kill(target: ProcessKey, signal: Int32)
    /// `b`: a burst of requests (so of spans to send).
    case burst(requests: Int)
    /// `d`: make the agent answer each send after this delay.
    case agentDelay(milliseconds: Int)
    /// `p`: what forks do with an in-flight send.
    case forkPolicy(ForkPolicySetting)

    public var target: ProcessKey? {
        switch self {
        case .fork(let target), .unsafeFork(let target), .cancelSend(let target), .kill(let target, _): target
        case .burst, .agentDelay, .forkPolicy: nil
        }
    }

    public var description: String {
        switch self {
        case .fork(let target): "fork (hooks) in \(target.pid)"
        case .unsafeFork(let target): "unsafe fork in \(target.pid)"
        case .cancelSend(let target): "cancel the send of \(target.pid)"
        case .kill(let target, let signal): "\(SignalName.name(signal)) to \(target.pid)"
        case .burst(let requests): "burst of \(requests) requests"
        case .agentDelay(let ms): "agent delay \(ms) ms"
        case .forkPolicy(let policy): "fork policy \(policy.text)"
        }
    }
}

/// How a control command went, for the status line.
public enum ControlResult: Equatable, Sendable {
    case done(String)
    case failed(String)
}

/// Carries out control commands: the caller of the dashboard supplies one
/// (the demo wiring: a control-socket client). `perform` may block (the
/// terminal loop calls it on a worker thread, one command at a time, and
/// keeps drawing); its result is shown on the status line. Without a
/// controller (`--readonly`, a saved file) control keys are refused.
public protocol Controller: Sendable {
    func perform(_ command: ControlCommand) -> ControlResult
}
