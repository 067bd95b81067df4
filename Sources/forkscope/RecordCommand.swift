import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix

/// `forkscope record`: saves a ring to a file that `attach`, `dump` and
/// `export` read like a live one.
///
/// The saved file is the ring's own bytes (same format, same validation), so
/// there is one reader for live and saved rings. With `--duration S` the
/// ring is followed for S seconds and copied at the end: every event still
/// in the ring then is saved; events read during the capture that writers
/// had overwritten by the end are counted and reported, not kept (the file
/// format has one window per lane; give the session a larger ring to keep
/// more).
struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Save a ring (a snapshot now, or after following it --duration seconds) to a file.",
        discussion: "Replay the file with `forkscope attach FILE` (snapshot mode), or export it with `forkscope export FILE`."
    )

    @Argument(help: "A live ring, a session directory, or nothing for the newest session.")
    var path: String?

    @Option(name: .shortAndLong, help: "The file to create (it must not exist).")
    var output: String

    @Option(help: "Follow the ring this many seconds, then save it.")
    var duration: Double?

    func validate() throws {
        if let duration, !(duration >= 0 && duration <= 86_400) { throw ValidationError("--duration must be 0...86400 seconds") }
    }

    func run() throws {
        let ringPath = try RingLocation.resolve(path)
        let live: RingReader
        do { live = try RingReader(path: ringPath, mode: .live) } catch { Failure.exit("\(error)", code: 2) }
        var seen = 0
        var events: [Event] = []
        if let duration {
            let deadline = Deadline.after(milliseconds: UInt64(duration * 1000))
            repeat {
                events.removeAll(keepingCapacity: true)
                do { try live.readNew(into: &events) } catch { Failure.exit("\(error)", code: 2) }
                seen += events.count
                var none: [pollfd] = []
                _ = try? poll(&none, timeoutMilliseconds: 50)
            } while !deadline.hasPassed
        }
        events.removeAll(keepingCapacity: true)
        do { try live.readNew(into: &events) } catch { Failure.exit("\(error)", code: 2) }
        seen += events.count
        OutputFile.write(live.copyBytes(), to: output, mode: 0o600, exclusive: true)
        // Validated like any ring a user hands us.
        let saved = RingContents.read(output, mode: .snapshot)
        let lost = seen > saved.events.count ? seen - saved.events.count : 0
        print("recorded \(saved.events.count) events from \(ringPath) to \(output)"
            + (duration == nil ? "" : " (\(seen) seen while following; \(lost) overwritten before the copy)"))
    }
}
