import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix
import Terminal

/// `forkscope attach`: the dashboard on a ring, or (without a terminal) the
/// per-process summary. Wiring only: the loop is `TerminalDashboard`.
struct Attach: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a ring in the terminal dashboard: a live ring, a saved file, or the newest session.",
        discussion: """
            Control keys (f fork, u unsafe fork, c cancel, k kill, b burst, d delay, p policy) need a \
            controller; attached on its own the dashboard is read-only and refuses them. Root may attach \
            read-only to another user's ring. Without a terminal (stdout not a TTY), or with --headless, \
            a per-process summary is printed instead (after following the ring for --duration seconds).
            """
    )

    @Argument(help: "A ring file, a session directory, or nothing for the newest session.")
    var path: String?

    @Flag(help: "Refuse control keys and hide them from the status line.")
    var readonly = false

    @Flag(help: "Print the per-process summary instead of the dashboard.")
    var headless = false

    @Option(help: "Follow the ring this many seconds before printing the summary (implies --headless).")
    var duration: Double?

    @Flag(help: "Read a private copy of the file (a saved ring that may change).")
    var snapshot = false

    @Flag(help: "No colour (also when NO_COLOR is set).")
    var noColor = false

    @Option(help: "Re-read the ring every N milliseconds.")
    var interval = 100

    func validate() throws {
        if let duration, !(duration >= 0) { throw ValidationError("--duration must be a number of seconds, 0 or more") }
        guard (10...5000).contains(interval) else { throw ValidationError("--interval must be 10...5000 milliseconds") }
    }

    func run() throws {
        let ringPath = try RingLocation.resolve(path)
        let session = Attach.session(of: ringPath)
        // Stale sessions (no live process, older than a day) go; never this one.
        SessionCatalog.removeStale(keeping: session?.path)
        let title = session?.path ?? ringPath
        let mode: RingReader.Mode = snapshot ? .snapshot : .live
        if headless || duration != nil || isatty(1) == 0 {
            do {
                let summary = try HeadlessSummary.run(ringPath: ringPath, title: title, mode: mode, duration: duration)
                try? FileDescriptor.standardOutput.writeAll(summary)
            } catch {
                Failure.exit("\(error)", code: 2)
            }
            return
        }
        // The dashboard ends whatever it (or a controller) started.
        let reaper = try? DescendantReaper()
        var options = DashboardOptions(ringPath: ringPath, session: session, title: title)
        options.mode = mode
        options.colour = !noColor
        options.refreshMilliseconds = interval
        options.reaper = reaper
        // A saved file (not a session's own ring) is played back in time.
        options.replay = snapshot || session == nil
        options.readOnlyReason = readonly ? "attached with --readonly"
            : snapshot ? "a saved copy has no processes to command"
            : "this session has no control socket (no demo server runs in it)"
        do {
            // A live session with a demo server: the control keys reach it
            // through its control socket (unless --readonly).
            var controller: SocketController? = nil
            if !readonly, !snapshot, let session, FileSystem.exists(session.controlSocketPath) {
                controller = SocketController(path: session.controlSocketPath)
            }
            let dashboard = try TerminalDashboard(options: options, controller: controller)
            try dashboard.run()
        } catch let error as RingError {
            Failure.exit("\(error)", code: 2)
        } catch let error as TerminalError {
            Failure.exit("\(error)", code: 2)
        }
    }

    /// The session a ring belongs to: the directory of a file named `ring`.
    static func session(of ringPath: String) -> SessionDirectory? {
        guard ringPath.hasSuffix("/ring"), let slash = ringPath.lastIndex(of: "/") else { return nil }
        let directory = slash == ringPath.startIndex ? "/" : String(ringPath[..<slash])
        guard let status = try? FileSystem.linkStatus(directory), status.isDirectory else { return nil }
        return SessionDirectory(path: directory)
    }
}
