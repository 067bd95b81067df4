import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// A detached tmux session on a private server (its own socket), running
/// one command in a pane of a fixed size. Every wait polls the captured pane
/// against a deadline: no fixed sleeps. The server is killed on `close()`
/// and in deinit.
final class TmuxSession {
    let tmux: String
    let socket: String
    let name = "t"
    private var closed = false
    nonisolated(unsafe) private static var counter = 0

    /// The tmux binary, or a skip when it is not installed (.ci/test installs it).
    static func binary() throws -> String {
        for directory in (Environment.current["PATH"] ?? "/usr/bin:/bin").split(separator: ":") where access("\(directory)/tmux", X_OK) == 0 {
            return "\(directory)/tmux"
        }
        throw XCTSkip("tmux is not installed (apt-get install tmux; .ci/test installs it)")
    }

    /// Where the command's exit status is written when it ends.
    let statusPath: String

    /// Starts `command` (a shell command line) in a `width`×`height` pane;
    /// `statusDirectory` receives a file with its exit status when it ends.
    /// (Not tmux's remain-on-exit and pane_dead_status: tmux 3.3 here, like
    /// with `less`, sometimes leaves an ended pane command unreaped and its
    /// status unknown.)
    init(_ command: String, statusDirectory: String, width: Int = 120, height: Int = 40) throws {
        tmux = try TmuxSession.binary()
        TmuxSession.counter += 1
        socket = "fks-test-\(getpid())-\(TmuxSession.counter)"
        statusPath = statusDirectory + "/tmux-\(TmuxSession.counter).status"
        try run(["-f", "/dev/null", "new-session", "-d", "-s", name, "-x", "\(width)", "-y", "\(height)",
                 "\(command); echo $? > \(shellQuoted(statusPath))"])
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        _ = try? run(["kill-server"])
    }

    /// Runs a tmux client command on this server; returns its stdout.
    @discardableResult
    func run(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) throws -> String {
        let process = try SpawnedProcess(path: tmux, ["-L", socket] + arguments)
        try process.closeInput()
        let output = try process.readToEnd(within: 20, file: file, line: line)
        let status = try process.wait(within: 20, file: file, line: line)
        guard status == .exited(0) else {
            throw SystemError("tmux \(arguments.joined(separator: " ")): \(status): \(try process.readErrors())", .invalidArgument)
        }
        return output
    }

    /// The pane's text now (with its SGR attribute sequences when `escapes`).
    func capture(escapes: Bool = false) throws -> String {
        try run(["capture-pane", "-p"] + (escapes ? ["-e"] : []) + ["-t", name])
    }

    /// Types keys (tmux key names: `Down`, `Escape`, `Enter`, `Tab`, `F1`, or
    /// literal text with `literal: true`).
    func send(_ keys: String..., literal: Bool = false) throws {
        try run(["send-keys", "-t", name] + (literal ? ["-l"] : []) + keys)
    }

    /// Polls the pane until `predicate` holds, at most `seconds`; returns the
    /// pane. On timeout the test fails with the last capture.
    @discardableResult
    func wait(for what: String, within seconds: Double = 15, file: StaticString = #filePath, line: UInt = #line,
              until predicate: (String) -> Bool) throws -> String {
        let deadline = Deadline(seconds: seconds)
        var pane = ""
        while true {
            pane = try capture()
            if predicate(pane) { return pane }
            if deadline.hasPassed {
                XCTFail("waited \(seconds) s for \(what); the pane shows:\n\(pane)", file: file, line: line)
                throw SystemError("tmux wait for \(what)", .timedOut)
            }
            var none: [pollfd] = []
            _ = try? poll(&none, timeoutMilliseconds: 30)
        }
    }

    /// Polls until the pane shows every one of `texts` (a screen update can
    /// be captured half drawn: never assert on one capture).
    @discardableResult
    func wait(forAll texts: [String], within seconds: Double = 15, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try wait(for: texts.map { "\"\($0)\"" }.joined(separator: " and "), within: seconds, file: file, line: line) { pane in
            texts.allSatisfy { pane.contains($0) }
        }
    }

    /// Polls until the pane shows `text`.
    @discardableResult
    func wait(for text: String, within seconds: Double = 15, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        try wait(for: "\"\(text)\"", within: seconds, file: file, line: line) { $0.contains(text) }
    }

    /// Waits until the command has ended; returns its exit status.
    @discardableResult
    func waitForExit(within seconds: Double = 15, file: StaticString = #filePath, line: UInt = #line) throws -> Int {
        let deadline = Deadline(seconds: seconds)
        while true {
            if let bytes = try? FileSystem.readFile(statusPath), case let text = String(decoding: bytes, as: UTF8.self),
               text.hasSuffix("\n"), let status = Int(text.dropLast()) {
                return status
            }
            if deadline.hasPassed {
                XCTFail("the command did not end within \(seconds) s; the pane shows:\n\((try? capture()) ?? "(no pane)")", file: file, line: line)
                throw SystemError("tmux wait for exit", .timedOut)
            }
            var none: [pollfd] = []
            _ = try? poll(&none, timeoutMilliseconds: 20)
        }
    }

    /// The pid of the pane's command.
    func panePid() throws -> pid_t? {
        pid_t(try run(["list-panes", "-t", name, "-F", "#{pane_pid}"]).split(separator: "\n").first ?? "")
    }

    /// Resizes the window (SIGWINCH for the pane's command).
    func resize(width: Int, height: Int) throws {
        try run(["resize-window", "-t", name, "-x", "\(width)", "-y", "\(height)"])
    }
}

/// A shell word: single-quoted, with embedded quotes escaped.
func shellQuoted(_ text: String) -> String {
    var quoted = "'"
    for c in text { quoted += c == "'" ? "'\\''" : String(c) }
    return quoted + "'"
}
