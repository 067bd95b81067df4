/// The characters the dashboard draws with: box drawing in a UTF-8 locale,
/// an ASCII fallback otherwise (htop's convention). Each timeline glyph is
/// distinct without colour, so a monochrome terminal still tells a
/// cancelled send from a completed one.
public struct Glyphs: Sendable, Equatable {
    public let unicode: Bool

    public let treeBranch: String      // "├─"
    public let treeLast: String        // "└─"
    public let treeContinue: String    // "│ "
    public let treeBlank: String       // "  "
    public let vertical: Unicode.Scalar
    public let horizontal: Unicode.Scalar
    public let lifeline: Unicode.Scalar
    public let sendOK: Unicode.Scalar
    public let sendInFlight: Unicode.Scalar
    public let sendInFlightHead: Unicode.Scalar
    public let sendCancelled: Unicode.Scalar
    public let sendFailed: Unicode.Scalar
    public let quiesce: Unicode.Scalar
    public let exit: Unicode.Scalar
    public let arrowDown: Unicode.Scalar
    public let arrowLine: Unicode.Scalar
    public let axisTick: Unicode.Scalar
    public let historyLost: Unicode.Scalar
    public let up: String
    public let down: String
    public let left: String
    public let right: String
    public let ellipsis: String

    public static let utf8 = Glyphs(
        unicode: true, treeBranch: "├─", treeLast: "└─", treeContinue: "│ ", treeBlank: "  ",
        vertical: "│", horizontal: "─", lifeline: "─", sendOK: "━", sendInFlight: "┅", sendInFlightHead: "▶",
        sendCancelled: "╳", sendFailed: "!", quiesce: "░", exit: "■", arrowDown: "▼", arrowLine: "│",
        axisTick: "╷", historyLost: "…", up: "↑", down: "↓", left: "←", right: "→", ellipsis: "…"
    )

    public static let ascii = Glyphs(
        unicode: false, treeBranch: "|-", treeLast: "`-", treeContinue: "| ", treeBlank: "  ",
        vertical: "|", horizontal: "-", lifeline: "-", sendOK: "=", sendInFlight: "~", sendInFlightHead: ">",
        sendCancelled: "x", sendFailed: "!", quiesce: ":", exit: "#", arrowDown: "v", arrowLine: "|",
        axisTick: "'", historyLost: "~", up: "Up", down: "Down", left: "Left", right: "Right", ellipsis: "~"
    )

    public static func forLocale(utf8: Bool) -> Glyphs { utf8 ? .utf8 : .ascii }

    /// The letter a timeline mark shows (fork stages as their initials).
    public func mark(_ kind: MarkKind) -> Unicode.Scalar {
        switch kind {
        case .processStart: unicode ? "┠" : "+"
        case .forkBefore: "b"
        case .forkParent: "p"
        case .forkChild: "c"
        case .forkFailed: "F"
        case .unhookedFork: "U"
        case .rebuild(let generation): Unicode.Scalar(UInt8(48 + generation % 10))
        case .exit: exit
        case .operatorCommand: unicode ? "◆" : "*"
        case .agentRequest: unicode ? "▪" : "o"
        }
    }
}
