import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix

/// `forkscope export`: a ring as a file other tools open — Perfetto/Chrome
/// trace-event JSON, or the JSONL of `forkscope dump --format jsonl`.
struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a ring as Perfetto/Chrome trace JSON (open it in ui.perfetto.dev) or as JSONL.",
        discussion: """
            The ring is read as a snapshot (a private copy), so the export is one consistent window. \
            perfetto: one synthetic pid per process incarnation (pid, start time), sends as async b/e \
            pairs, fork stages and hooks as instants, a flow arrow from each fork to its child. \
            jsonl: exactly what `forkscope dump --format jsonl` prints.
            """
    )

    enum Format: String, ExpressibleByArgument, CaseIterable { case perfetto, jsonl }

    @Argument(help: "A ring file (live or saved), a session directory, or nothing for the newest session.")
    var path: String?

    @Option(help: "perfetto or jsonl.")
    var format: Format = .perfetto

    @Option(name: .shortAndLong, help: "The file to write (- for stdout).")
    var output: String

    func run() throws {
        let contents = RingContents.read(try RingLocation.resolve(path), mode: .snapshot)
        let text: String
        switch format {
        case .jsonl:
            text = contents.jsonLines().map { $0 + "\n" }.joined()
        case .perfetto:
            var export = PerfettoExport(origin: RingOrigin(contents.reader.header)) { [reader = contents.reader] in reader.string(at: $0) }
            text = export.render(contents.events)
        }
        OutputFile.write(text, to: output)
    }
}

/// Every event of a ring, merged by time, with its accounting.
struct RingContents {
    let reader: RingReader
    let events: [Event]
    let accounting: RingAccounting

    /// Reads `path`; a hostile or truncated file is a one-line error, exit status 2 (like `dump`).
    static func read(_ path: String, mode: RingReader.Mode) -> RingContents {
        do {
            let reader = try RingReader(path: path, mode: mode)
            var events: [Event] = []
            let accounting = try reader.readNew(into: &events)
            RingReader.merge(&events)
            return RingContents(reader: reader, events: events, accounting: accounting)
        } catch {
            Failure.exit("\(error)", code: 2)
        }
    }

    /// The lines of `forkscope dump --format jsonl` (events, then lane accounting, then drops).
    func jsonLines() -> [String] {
        let text = EventText(header: reader.header) { [reader] in reader.string(at: $0) }
        var lines = events.map(text.json)
        for lane in accounting.lanes where lane.headAdvance > 0 || lane.claims > 0 {
            lines.append(EventText.accountingJSON(lane))
        }
        lines.append("{\"drops\":{\"lane_exhausted\":\(accounting.laneExhausted),\"string_table_full\":\(accounting.stringTableFull)}}")
        return lines
    }
}

/// Writes a whole output file (or stdout for `-`); a failure names the path.
enum OutputFile {
    static func write(_ text: String, to path: String) {
        var text = text
        text.withUTF8 { bytes in write(UnsafeRawBufferPointer(bytes), to: path) }
    }

    static func write(_ bytes: UnsafeRawBufferPointer, to path: String, mode: mode_t = 0o644, exclusive: Bool = false) {
        if path == "-" {
            try? FileDescriptor.standardOutput.writeAll(bytes)
            return
        }
        do throws(SystemError) {
            let flags = O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | (exclusive ? O_EXCL : O_TRUNC)
            let fd = try FileDescriptor.open(path, flags, mode: mode)
            defer { try? fd.close() }
            try fd.writeAll(bytes)
        } catch {
            Failure.exit("cannot write \(path): \(error)", code: 1)
        }
    }
}
