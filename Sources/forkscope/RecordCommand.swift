import ArgumentParser
import Dashboard
import EventRing
import Glibc
import Posix

/// `forkscope record`: saves a ring to a file that `attach`, `dump` and
/// `export` read like a live one.
///
/// The saved file is a ring (same format, same validation), so there is one
/// reader for live and saved rings. Without `--duration` it is the ring's
/// own bytes now. With `--duration S` it is a continuous capture: the ring
/// is followed for S seconds and every event read is written into a new,
/// larger ring (`RingRecording`) with its own pid, tid and time — so events
/// the source ring overwrote during the capture are kept.
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
        guard let duration else {
            OutputFile.write(live.copyBytes(), to: output, mode: 0o600, exclusive: true)
            // Validated like any ring a user hands us.
            let saved = RingContents.read(output, mode: .snapshot)
            print("recorded \(saved.events.count) events from \(ringPath) to \(output)")
            return
        }
        // A continuous capture: as many lanes as the source, four times
        // its window (at least 16,384 events per process).
        let slots = min(RingFormat.maxSlotsPerLane, max(16_384, UInt32(live.header.slotsPerLane) * 4))
        let recording: RingRecording
        do {
            let ring = try Ring.create(at: output, configuration: RingConfiguration(
                laneCount: UInt32(live.header.laneCount), slotsPerLane: slots, stringBytes: 1 << 20), privateDirectory: false)
            recording = RingRecording(ring: ring, clockOf: live.header)
        } catch {
            Failure.exit("\(error)", code: 2)
        }
        var events: [Event] = []
        var accounting: RingAccounting? = nil
        let deadline = Deadline.after(milliseconds: UInt64(duration * 1000))
        var last = false
        while !last {
            last = deadline.hasPassed
            events.removeAll(keepingCapacity: true)
            do { accounting = try live.readNew(into: &events) } catch { Failure.exit("\(error)", code: 2) }
            RingReader.merge(&events)
            for event in events {
                let owner = accounting?.lanes[event.lane]
                let start = owner?.ownerPid == event.pid ? owner?.ownerStart ?? 0 : 0
                recording.append(event, ownerStart: start) { live.string(at: $0) }
            }
            if !last {
                var none: [pollfd] = []
                _ = try? poll(&none, timeoutMilliseconds: 50)
            }
        }
        recording.ring.unmap()
        let saved = RingContents.read(output, mode: .snapshot)
        let missed = accounting.map { $0.total.overwritten + $0.total.torn + $0.total.abandoned } ?? 0
        print("recorded \(saved.events.count) events from \(ringPath) to \(output) (followed \(duration) s; "
            + "\(missed) overwritten before they could be read, \(recording.dropped) with no lane left)")
    }
}

/// `forkscope replay`: a saved ring played back as text on its own time
/// axis — speed ×0.25–×16, `--from` seeks (folds silently up to that time
/// and prints the state there), `--to` stops, `--step` waits for Enter
/// between events. The dashboard (`forkscope attach FILE`) shows a saved
/// file as a whole; these controls are not in the TUI yet.
struct Replay: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Play a saved ring back as text: speed, seek (--from), stop (--to), step; the per-process state at the end."
    )

    @Argument(help: "A saved ring (forkscope record), or a ring or session directory.")
    var path: String?

    @Option(help: "Playback speed, 0.25 to 16.")
    var speed = 1.0

    @Option(help: "Seek: start at this many seconds after the ring's creation (the state there is printed first).")
    var from: Double?

    @Option(help: "Stop at this many seconds after the ring's creation.")
    var to: Double?

    @Flag(help: "Wait for Enter before each event (end of input: no more waiting).")
    var step = false

    func validate() throws {
        guard (0.25...16).contains(speed) else { throw ValidationError("--speed must be 0.25 to 16") }
        if let from, !(from >= 0) { throw ValidationError("--from must be seconds, 0 or more") }
        if let to, !(to >= 0) { throw ValidationError("--to must be seconds, 0 or more") }
    }

    func run() throws {
        let contents = RingContents.read(try RingLocation.resolve(path), mode: .snapshot)
        let reader = contents.reader
        let origin = RingOrigin(reader.header)
        let text = EventText(header: reader.header) { [reader] in reader.string(at: $0) }
        let start = from.map { UInt64($0 * 1e9) } ?? 0
        let end = to.map { UInt64($0 * 1e9) } ?? .max
        var model = DashboardModel(origin: origin)
        var output = OutputBuffer()
        let skipped = contents.events.prefix { origin.offset($0.time) < start }
        if let from {
            model.fold(skipped) { reader.string(at: $0) }
            output.append("— at \(EventText.seconds(UInt64(from * 1e9))) (\(skipped.count) events folded) —")
            output.append(String(ProcessSummary.text(model, source: reader.path, live: false).dropLast()))  // it ends with a newline
        }
        var clock = start
        var waitingForInput = step
        for event in contents.events.dropFirst(skipped.count) {
            let at = origin.offset(event.time)
            if at > end { break }
            if waitingForInput {
                if !output.flush() { return }
                waitingForInput = Replay.waitForEnter()
            } else if !step, at > clock {
                if !output.flush() { return }
                // The gap to the next event at the chosen speed (a poll with no descriptors is a sleep with a deadline).
                let milliseconds = Double(at - clock) / 1e6 / speed
                var none: [pollfd] = []
                _ = try? poll(&none, timeoutMilliseconds: Int32(min(milliseconds, 60_000)))
            }
            clock = at
            output.append(text.line(event))
            model.fold(CollectionOfOne(event)) { reader.string(at: $0) }
        }
        output.append("— end at \(EventText.seconds(clock)) —")
        output.append(String(ProcessSummary.text(model, source: reader.path, live: false).dropLast()))  // it ends with a newline
        _ = output.flush()
    }

    /// True after an Enter; false at end of input (then playback stops waiting).
    static func waitForEnter() -> Bool {
        var byte: UInt8 = 0
        let deadline = Deadline.after(milliseconds: 600_000)
        while (try? FileDescriptor.standardInput.poll(for: Int16(POLLIN), deadline: deadline)) ?? 0 != 0 {
            guard (try? withUnsafeMutableBytes(of: &byte, { try FileDescriptor.standardInput.read(into: $0) })) == 1 else { return false }
            if byte == 10 { return true }
        }
        return false
    }
}
