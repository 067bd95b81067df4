/// A key press, decoded from the terminal (the curses layer maps its codes
/// here; tests write them directly).
public enum Key: Hashable, Sendable {
    case character(Unicode.Scalar)
    case up, down, left, right, pageUp, pageDown, home, end
    case enter, escape, backspace, tab
    case function(Int)
    /// Ctrl + a letter (lower case).
    case control(Unicode.Scalar)

    public static func char(_ c: Unicode.Scalar) -> Key { .character(c) }

    /// How the help screen and the status line write it.
    public func caption(_ glyphs: Glyphs) -> String {
        switch self {
        case .character(" "): "Space"
        case .character(let c): String(c)
        case .up: glyphs.up
        case .down: glyphs.down
        case .left: glyphs.left
        case .right: glyphs.right
        case .pageUp: "PgUp"
        case .pageDown: "PgDn"
        case .home: "Home"
        case .end: "End"
        case .enter: "Enter"
        case .escape: "Esc"
        case .backspace: "Bksp"
        case .tab: "Tab"
        case .function(let n): "F\(n)"
        case .control(let c): "^" + String(c).uppercased()
        }
    }
}

/// Everything a key can do. One table (`KeyTable.bindings`) maps keys to
/// actions, and the help screen is generated from it, as htop's
/// `Action_setBindings`: a key is documented exactly where it is bound.
public enum Action: String, CaseIterable, Sendable {
    case help, quit
    case moveUp, moveDown, firstProcess, lastProcess
    case scrollLogUp, scrollLogDown
    case panLeft, panRight, zoomIn, zoomOut, followLive
    case togglePause, search, nextMatch, previousMatch, filter
    case switchPane, nextLogFile, export, record, redraw, sequence
    case fork, unsafeFork, cancelSend, kill, burst, agentDelay, forkPolicy
    /// Move the clock of a saved ring played back (nothing on a live one).
    case replayStep, replaySlower, replayFaster, replaySeekBack, replaySeekForward

    /// Control actions send a command to the observed processes and need a
    /// controller (refused read-only).
    public var isControl: Bool {
        switch self {
        case .fork, .unsafeFork, .cancelSend, .kill, .burst, .agentDelay, .forkPolicy: true
        default: false
        }
    }
}

public struct KeyBinding: Sendable {
    public enum Group: String, Sendable, CaseIterable {
        case navigation = "Navigate"
        case view = "View"
        case control = "Control the demo"
        case replay = "Replay a saved file"
    }

    public let keys: [Key]
    public let action: Action
    /// Short form for the status line (`fork`).
    public let label: String
    /// One line for the help screen.
    public let description: String
    public let group: Group
}

public enum KeyTable {
    public static let bindings: [KeyBinding] = [
        KeyBinding(keys: [.function(1), .character("?")], action: .help, label: "help", description: "show or hide this help", group: .view),
        KeyBinding(keys: [.character("q"), .function(10)], action: .quit, label: "quit", description: "quit (ends every process this dashboard started)", group: .view),
        KeyBinding(keys: [.up], action: .moveUp, label: "select", description: "select the process above", group: .navigation),
        KeyBinding(keys: [.down], action: .moveDown, label: "select", description: "select the process below", group: .navigation),
        KeyBinding(keys: [.home], action: .firstProcess, label: "first", description: "select the first process", group: .navigation),
        KeyBinding(keys: [.end], action: .lastProcess, label: "last", description: "select the last process", group: .navigation),
        KeyBinding(keys: [.pageUp], action: .scrollLogUp, label: "scroll", description: "scroll the event log / log output back", group: .navigation),
        KeyBinding(keys: [.pageDown], action: .scrollLogDown, label: "scroll", description: "scroll forward (to the end: follow new lines)", group: .navigation),
        KeyBinding(keys: [.left], action: .panLeft, label: "pan", description: "pan the time axis back", group: .navigation),
        KeyBinding(keys: [.right], action: .panRight, label: "pan", description: "pan forward (to the end: follow now)", group: .navigation),
        KeyBinding(keys: [.character("+"), .character("=")], action: .zoomIn, label: "zoom", description: "zoom in (less time per column)", group: .navigation),
        KeyBinding(keys: [.character("-"), .character("_")], action: .zoomOut, label: "zoom", description: "zoom out", group: .navigation),
        KeyBinding(keys: [.character("0")], action: .followLive, label: "live", description: "follow the newest events again", group: .navigation),
        KeyBinding(keys: [.character(" ")], action: .togglePause, label: "pause", description: "freeze the view (events keep being read)", group: .view),
        KeyBinding(keys: [.character("/")], action: .search, label: "search", description: "search the event log", group: .view),
        KeyBinding(keys: [.character("n")], action: .nextMatch, label: "next", description: "next (newer) match", group: .view),
        KeyBinding(keys: [.character("N")], action: .previousMatch, label: "prev", description: "previous (older) match", group: .view),
        KeyBinding(keys: [.character("\\")], action: .filter, label: "filter", description: "filter by pid, kind (send, fork.child, kind:x) or name", group: .view),
        KeyBinding(keys: [.tab], action: .switchPane, label: "pane", description: "switch the lower pane: events / log output", group: .view),
        KeyBinding(keys: [.character("L")], action: .nextLogFile, label: "log file", description: "show the next process log file", group: .view),
        KeyBinding(keys: [.character("s")], action: .sequence, label: "sequence", description: "the startup as a sequence diagram (hooks, stages, forks)", group: .view),
        KeyBinding(keys: [.character("R")], action: .record, label: "record", description: "save the ring as it is now (replay: forkscope attach FILE)", group: .view),
        KeyBinding(keys: [.character("e")], action: .export, label: "export", description: "write the events held to a JSONL file", group: .view),
        KeyBinding(keys: [.control("l")], action: .redraw, label: "redraw", description: "redraw the screen", group: .view),
        KeyBinding(keys: [.character("f")], action: .fork, label: "fork", description: "fork a worker through the at-fork hooks", group: .control),
        KeyBinding(keys: [.character("u")], action: .unsafeFork, label: "unsafe", description: "fork without the hooks (what broke Sqreen)", group: .control),
        KeyBinding(keys: [.character("c")], action: .cancelSend, label: "cancel", description: "cancel the selected process's in-flight send", group: .control),
        KeyBinding(keys: [.character("k")], action: .kill, label: "kill", description: "send a signal to the selected process (default SIGTERM)", group: .control),
        KeyBinding(keys: [.character("b")], action: .burst, label: "burst", description: "send a burst of requests", group: .control),
        KeyBinding(keys: [.character("d")], action: .agentDelay, label: "delay", description: "set the agent's reply delay", group: .control),
        KeyBinding(keys: [.character("p")], action: .forkPolicy, label: "policy", description: "set the fork policy: drain, cancel, drain:T", group: .control),
        KeyBinding(keys: [.character(".")], action: .replayStep, label: "step", description: "step one event (paused; Space pauses and resumes)", group: .replay),
        KeyBinding(keys: [.character("[")], action: .replaySlower, label: "slower", description: "replay slower (down to x0.25)", group: .replay),
        KeyBinding(keys: [.character("]")], action: .replayFaster, label: "faster", description: "replay faster (up to x16)", group: .replay),
        KeyBinding(keys: [.character("{")], action: .replaySeekBack, label: "back", description: "seek back 5 s", group: .replay),
        KeyBinding(keys: [.character("}")], action: .replaySeekForward, label: "forward", description: "seek forward 5 s (0 or End: to the end)", group: .replay),
    ]

    private static let byKey: [Key: Action] = {
        var map: [Key: Action] = [:]
        for binding in bindings {
            for key in binding.keys {
                precondition(map[key] == nil, "key \(key) bound twice")
                map[key] = binding.action
            }
        }
        return map
    }()

    public static func action(for key: Key) -> Action? { byKey[key] }

    public static func binding(for action: Action) -> KeyBinding? { bindings.first { $0.action == action } }
}

/// Signals the `k` chooser offers; SIGTERM first (the safe default, as htop).
public enum SignalChoice {
    public static let signals: [Int32] = [15, 2, 3, 1, 10, 12, 19, 18, 9]
}
