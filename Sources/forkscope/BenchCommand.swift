import ArgumentParser
import CPosix
import EventRing
import Glibc
import Posix

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure, side by side in one run, what the hot paths cost.",
        subcommands: [RingBench.self, RingProducer.self, ForkBench.self, TransportBench.self, HostBench.self, TUIBench.self]
    )
}

struct RingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Publish cost (with and without the clock) against a pipe write(2) and a mutex-protected ring; two producer processes; reader throughput."
    )

    @Option(help: "Events per measured batch.")
    var events = 20_000_000

    @Option(help: "Repetitions of each measurement (the best is reported).")
    var repeats = 3

    @Flag(help: "Run even in a debug build (figures are then meaningless).")
    var allowDebug = false

    func run() throws {
        #if DEBUG
        if !allowDebug {
            Failure.exit("this is a debug build: its figures mean nothing. Run `swift run -c release forkscope bench ring` (or pass --allow-debug)", code: 2)
        }
        warn("WARNING: debug build — these figures are not the product's")
        #endif
        let scratch = try BenchScratch()
        defer { scratch.remove() }
        let ring = try Ring.create(at: scratch.session.ringPath, configuration: RingConfiguration(laneCount: 16, slotsPerLane: 65536))
        defer { ring.unmap() }
        let writer = ring.writer
        let n = events
        writer.publish(.mark, at: 0, 0)  // claim the lane outside the timing

        var rows: [(name: String, ns: Double)] = []
        func best(_ body: () -> Void) -> Double {
            var result = Double.infinity
            for _ in 0..<repeats {
                let start = Clock.monotonicNanoseconds()
                body()
                result = min(result, Double(Clock.monotonicNanoseconds() - start) / Double(n))
            }
            return result
        }

        rows.append(("publish, no clock", best {
            for i in 0..<n { writer.publish(.mark, at: 0, generation: 0, UInt64(i), 0, 0, 0) }
        }))
        rows.append(("publish, with clock", best {
            for i in 0..<n { writer.publish(.mark, generation: 0, UInt64(i), 0, 0, 0) }
        }))
        let pipeEvents = min(n, 2_000_000)
        rows.append(("write(2) 64 B to a pipe", PipeBaseline.measure(events: pipeEvents, repeats: repeats)))
        rows.append(("pthread_mutex ring", MutexRingBaseline.measure(events: n, repeats: repeats)))

        let (twoProcessNs, twoProcessOK) = try twoProducers(ringPath: scratch.session.ringPath, perProducer: n / 2)
        rows.append(("publish, 2 processes (each)", twoProcessNs))

        // Reader: a fresh reader validating a full window of every lane.
        let readerRate = try measureReader(ringPath: scratch.session.ringPath)

        let noClock = rows[0].ns, withClock = rows[1].ns, pipe = rows[2].ns
        print("forkscope bench ring — \(n) events per batch, best of \(repeats)")
        print(pad("measurement", 32) + pad("ns/event", 12, right: true) + pad("vs publish", 14, right: true))
        for row in rows {
            print(pad(row.name, 32) + pad(fixed(row.ns, 2), 12, right: true) + pad(fixed(row.ns / noClock, 1) + "×", 14, right: true))
        }
        print(pad("reader (validated)", 32) + pad(fixed(readerRate / 1e6, 1) + " M events/s", 26, right: true))
        print("pipe write ÷ publish: \(fixed(pipe / noClock, 1))× (no clock), \(fixed(pipe / withClock, 1))× (with clock)   two-process accounting exact: \(twoProcessOK)")
        print("targets: publish ≤ 10 ns without clock, ≤ 45 ns with clock, ≥ 20× faster than a pipe write, reader ≥ 30 M events/s")
        print("{\"bench\":\"ring\",\"events\":\(n),\"publish_no_clock_ns\":\(fixed(noClock, 2)),\"publish_clock_ns\":\(fixed(withClock, 2)),\"pipe_write_ns\":\(fixed(pipe, 2)),\"mutex_ring_ns\":\(fixed(rows[3].ns, 2)),\"two_process_ns\":\(fixed(twoProcessNs, 2)),\"two_process_exact\":\(twoProcessOK),\"reader_events_per_s\":\(Int(readerRate)),\"pipe_over_publish_no_clock\":\(fixed(pipe / noClock, 1)),\"pipe_over_publish_clock\":\(fixed(pipe / withClock, 1))}")
    }

    /// Two producer processes publish concurrently into one ring; returns
    /// their mean ns/event and whether the reader's accounting was exact.
    func twoProducers(ringPath: String, perProducer: Int) throws -> (Double, Bool) {
        let executable = try ProcessControl.currentExecutablePath()
        let go = try FileDescriptor.pipe()
        var producers: [(pid: pid_t, output: FileDescriptor)] = []
        for _ in 0..<2 {
            let out = try FileDescriptor.pipe()
            let pid = try Spawn.run(
                executable, arguments: ["forkscope", "bench", "producer", ringPath, String(perProducer)],
                fileActions: [.duplicate(go.read, as: .standardInput), .duplicate(out.write, as: .standardOutput)]
            )
            try out.write.close()
            producers.append((pid, out.read))
        }
        try go.read.close()
        try go.write.writeAll("go")  // one byte each: both start together
        try go.write.close()
        var total = 0.0
        for producer in producers {
            let text = String(decoding: try producer.output.readAll(limit: 4096), as: UTF8.self)
            try producer.output.close()
            _ = try ProcessControl.wait(for: producer.pid)
            total += Double(text.split(separator: " ").first.map(String.init) ?? "") ?? .nan
        }
        var events: [Event] = []
        let accounting = try RingReader(path: ringPath).readNew(into: &events)
        return (total / 2, accounting.lanes.allSatisfy(\.isBalanced))
    }

    func measureReader(ringPath: String) throws -> Double {
        var best = 0.0
        var events: [Event] = []
        events.reserveCapacity(16 * 65536)
        for _ in 0..<repeats {
            events.removeAll(keepingCapacity: true)
            let reader = try RingReader(path: ringPath)
            let start = Clock.monotonicNanoseconds()
            let accounting = try reader.readNew(into: &events)
            let seconds = Double(Clock.monotonicNanoseconds() - start) / 1e9
            precondition(accounting.total.ok == UInt64(events.count))
            best = max(best, Double(events.count) / seconds)
        }
        return best
    }
}

/// `forkscope bench producer RING COUNT`: one of the two producer
/// processes. Waits for a byte on stdin, publishes, prints ns/event.
struct RingProducer: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "producer", shouldDisplay: false)

    @Argument var ring: String
    @Argument var count: Int

    func run() throws {
        let writer = try Ring.open(at: ring).writer
        writer.publish(.mark, at: 0, 0)
        var byte: UInt8 = 0
        _ = try withUnsafeMutableBytes(of: &byte) { try FileDescriptor.standardInput.read(into: $0) }
        let start = Clock.monotonicNanoseconds()
        for i in 0..<count { writer.publish(.mark, at: 0, generation: 0, UInt64(i), 0, 0, 0) }
        let ns = Double(Clock.monotonicNanoseconds() - start) / Double(count)
        print("\(ns) ns/event")
    }
}

/// A throwaway session for the benchmark, removed afterwards.
struct BenchScratch {
    let root: String
    let session: SessionDirectory

    init() throws {
        root = SessionDirectory.root() + "-bench-\(getpid())"
        session = try SessionDirectory.create(name: "bench", root: root)
    }

    func remove() { try? FileSystem.removeTree(root) }
}

func fixed(_ value: Double, _ digits: Int) -> String {
    guard value.isFinite else { return "nan" }
    var scale = 1.0
    for _ in 0..<digits { scale *= 10 }
    let scaled = (value * scale).rounded()
    let whole = Int(scaled / scale)
    let fraction = Int(abs(scaled) - abs(Double(whole)) * scale)
    if digits == 0 { return String(whole) }
    let text = String(fraction)
    return "\(value < 0 && whole == 0 ? "-" : "")\(whole).\(String(repeating: "0", count: digits - text.count))\(text)"
}

func pad(_ text: String, _ width: Int, right: Bool = false) -> String {
    let fill = String(repeating: " ", count: max(0, width - text.count))
    return right ? fill + text : text + fill
}

/// Resource usage of this process or of its waited-for children, for the
/// benchmarks' fault and CPU counts. The corresponding C function is `getrusage`.
func resourceUsage(_ who: __rusage_who) -> rusage {
    var usage = rusage()
    getrusage(__rusage_who_t(truncatingIfNeeded: who.rawValue), &usage)
    return usage
}

func warn(_ text: String) { try? FileDescriptor.standardError.writeAll(text + "\n") }
