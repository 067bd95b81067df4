import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix

struct Dump: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a ring's events, one per line, then an accounting line per lane.",
        discussion: "A hostile or truncated file gives a one-line error and exit status 2."
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case text, jsonl }

    @Argument(help: "A live ring, a saved ring file, or a session directory (default: the newest session).")
    var path: String?

    @Flag(help: "Keep printing new events as they are published (Ctrl-C to stop).")
    var follow = false

    @Option(help: "Output format: text or jsonl.")
    var format: Format = .text

    @Flag(help: "Read a private copy of the file instead of the live mapping.")
    var snapshot = false

    func run() throws {
        let ringPath = try RingLocation.resolve(path)
        let reader: RingReader
        do {
            reader = try RingReader(path: ringPath, mode: snapshot ? .snapshot : .live)
        } catch {
            Failure.exit("\(error)", code: 2)
        }
        let text = EventText(header: reader.header) { [reader] in reader.string(at: $0) }
        var output = OutputBuffer()
        var events: [Event] = []
        repeat {
            events.removeAll(keepingCapacity: true)
            let accounting: RingAccounting
            do { accounting = try reader.readNew(into: &events) } catch { Failure.exit("\(error)", code: 2) }
            RingReader.merge(&events)
            for event in events {
                output.append(format == .text ? text.line(event) : text.json(event))
            }
            if !follow {
                for lane in accounting.lanes where lane.headAdvance > 0 || lane.claims > 0 {
                    output.append(format == .text ? EventText.accountingLine(lane) : EventText.accountingJSON(lane))
                }
                let drops = "laneExhausted \(accounting.laneExhausted) stringTableFull \(accounting.stringTableFull)"
                output.append(format == .text ? "drops " + drops
                    : "{\"drops\":{\"lane_exhausted\":\(accounting.laneExhausted),\"string_table_full\":\(accounting.stringTableFull)}}")
            }
            if !output.flush() { return }  // the reader of our stdout went away
            if follow && events.isEmpty {
                // Not a busy loop: sleep in poll() until the next look.
                var none: [pollfd] = []
                _ = try? poll(&none, timeoutMilliseconds: 100)
            }
        } while follow
    }
}

/// Collects lines and writes them in large chunks.
struct OutputBuffer {
    private var bytes: [UInt8] = []

    mutating func append(_ line: String) {
        bytes.append(contentsOf: line.utf8)
        bytes.append(10)
    }

    /// Writes what was collected; false when stdout is closed (EPIPE).
    mutating func flush() -> Bool {
        defer { bytes.removeAll(keepingCapacity: true) }
        do {
            try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try FileDescriptor.standardOutput.writeAll(raw) } }.get()
            return true
        } catch {
            return false
        }
    }
}
