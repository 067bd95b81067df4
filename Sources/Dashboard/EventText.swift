import EventRing
import Posix

/// Renders events and accounting as text lines and JSON lines. The names
/// come from the one vocabulary in `EventKind`; strings are resolved through
/// the ring's string table by the caller-provided lookup.
public struct EventText {
    public typealias StringLookup = (UInt64) -> String?

    let origin: RingOrigin
    let lookup: StringLookup

    public init(header: RingHeader, lookup: @escaping StringLookup) {
        self.init(origin: RingOrigin(header), lookup: lookup)
    }

    public init(origin: RingOrigin, lookup: @escaping StringLookup) {
        self.origin = origin
        self.lookup = lookup
    }

    /// Renders from a folded model alone (the strings it resolved).
    public init(model: DashboardModel) {
        let strings = model.strings
        self.init(origin: model.origin) { strings[$0] }
    }

    /// Seconds since the ring was created, e.g. `+1.234567`.
    func relativeTime(_ event: Event) -> String { EventText.seconds(origin.offset(event.time)) }

    /// `+1.234567` for nanoseconds since the ring was created.
    public static func seconds(_ ns: UInt64) -> String {
        let micros = ns / 1000
        let fraction = String(micros % 1_000_000)
        return "+\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
    }

    /// An errno argument by name (`ECONNREFUSED`), for notes.
    public static func errnoName(_ raw: UInt64) -> String { Errno(rawValue: Int32(truncatingIfNeeded: raw)).name }

    /// One argument's value for humans.
    public func value(_ raw: UInt64, as type: ArgumentType) -> String {
        switch type {
        case .string:
            guard let text = lookup(raw) else { return "<bad string offset \(raw)>" }
            return quoted(text)
        case .micros: return "\(raw)us"
        case .bool: return raw == 0 ? "false" : "true"
        case .stage: return ForkStage(rawValue: raw)?.name ?? "stage\(raw)"
        case .policy: return ForkPolicy(rawValue: raw)?.name ?? "policy\(raw)"
        case .role: return ProcessRole(rawValue: raw)?.name ?? "role\(raw)"
        case .cancelReason: return CancelReason(rawValue: raw)?.name ?? "reason\(raw)"
        case .dropReason: return DropReason(rawValue: raw)?.name ?? "reason\(raw)"
        case .outcome: return Outcome(rawValue: raw)?.name ?? "outcome\(raw)"
        case .signal: return raw == 0 ? "0" : SignalName.name(Int32(truncatingIfNeeded: raw))
        case .errno: return raw == 0 ? "0" : Errno(rawValue: Int32(truncatingIfNeeded: raw)).name
        case .id, .count, .pid, .tid, .generation, .httpStatus: return String(raw)
        }
    }

    /// `+0.001234 pid 10 tid 10 gen 0 lane 1 #5 send.start send=1 spans=3 bytes=900 attempt=1`
    public func line(_ event: Event) -> String {
        var text = "\(relativeTime(event)) pid \(event.pid) tid \(event.tid) gen \(event.generation) lane \(event.lane) #\(event.sequence) "
        guard let kind = event.kind else {
            return text + "unknown(\(event.rawKind)) " + event.args.map { String($0) }.joined(separator: " ")
        }
        text += kind.name
        for (argument, raw) in zip(kind.arguments, event.args) {
            text += " \(argument.name)=\(value(raw, as: argument.type))"
        }
        return text
    }

    /// The log pane's line: `+0.001234 10 send.start send=1 spans=3 bytes=900 attempt=1`
    /// (no tid, generation, lane or sequence: the pane is narrow).
    public func compactLine(_ event: Event) -> String {
        var text = "\(relativeTime(event)) \(event.pid) "
        guard let kind = event.kind else {
            return text + "unknown(\(event.rawKind)) " + event.args.map { String($0) }.joined(separator: " ")
        }
        text += kind.name
        for (argument, raw) in zip(kind.arguments, event.args) {
            text += " \(argument.name)=\(value(raw, as: argument.type))"
        }
        return text
    }

    /// One JSON object per event; string arguments resolved, enumerations named.
    public func json(_ event: Event) -> String {
        var fields = [
            "\"t_ns\":\(event.time)", "\"wall_ns\":\(origin.wall(event.time))",
            "\"pid\":\(event.pid)", "\"tid\":\(event.tid)", "\"gen\":\(event.generation)",
            "\"lane\":\(event.lane)", "\"seq\":\(event.sequence)",
        ]
        if let kind = event.kind {
            fields.append("\"kind\":\(quoted(kind.name))")
            let args = zip(kind.arguments, event.args).map { argument, raw -> String in
                let rendered: String
                switch argument.type {
                case .string: rendered = lookup(raw).map(quoted) ?? "null"
                case .id, .count, .pid, .tid, .generation, .httpStatus, .micros: rendered = String(raw)
                case .bool: rendered = raw == 0 ? "false" : "true"
                default: rendered = quoted(value(raw, as: argument.type))
                }
                return "\(quoted(argument.name)):\(rendered)"
            }
            fields.append("\"args\":{\(args.joined(separator: ","))}")
        } else {
            fields.append("\"kind\":\"unknown\",\"raw_kind\":\(event.rawKind)")
            fields.append("\"args\":[\(event.args.map { String($0) }.joined(separator: ","))]")
        }
        return "{" + fields.joined(separator: ",") + "}"
    }

    public static func accountingLine(_ lane: LaneAccounting) -> String {
        "lane \(lane.lane) owner \(lane.ownerPid) claims \(lane.claims) head \(lane.headAdvance) ok \(lane.ok) overwritten \(lane.overwritten) torn \(lane.torn) pending \(lane.pending) abandoned \(lane.abandoned) busy_drops \(lane.busyDrops)"
    }

    public static func accountingJSON(_ lane: LaneAccounting) -> String {
        "{\"accounting\":{\"lane\":\(lane.lane),\"owner\":\(lane.ownerPid),\"claims\":\(lane.claims),\"head\":\(lane.headAdvance),\"ok\":\(lane.ok),\"overwritten\":\(lane.overwritten),\"torn\":\(lane.torn),\"pending\":\(lane.pending),\"abandoned\":\(lane.abandoned),\"busy_drops\":\(lane.busyDrops)}}"
    }
}

/// A JSON string literal (also used for text output, so control characters
/// and quotes in hostile strings cannot break a line).
public func quoted(_ text: String) -> String {
    var out = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        case _ where scalar.value < 0x20 || scalar.value == 0x7F:
            let hex = String(scalar.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(scalar)
        }
    }
    return out + "\""
}

public enum SignalName {
    static let names: [Int32: String] = [
        1: "SIGHUP", 2: "SIGINT", 3: "SIGQUIT", 4: "SIGILL", 5: "SIGTRAP", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE",
        9: "SIGKILL", 10: "SIGUSR1", 11: "SIGSEGV", 12: "SIGUSR2", 13: "SIGPIPE", 14: "SIGALRM", 15: "SIGTERM",
        17: "SIGCHLD", 18: "SIGCONT", 19: "SIGSTOP", 20: "SIGTSTP", 21: "SIGTTIN", 22: "SIGTTOU", 28: "SIGWINCH",
    ]
    public static func name(_ signal: Int32) -> String { names[signal] ?? "SIG\(signal)" }
}

