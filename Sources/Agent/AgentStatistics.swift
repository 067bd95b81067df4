import CPosix
import Posix
import Wire

/// The (trace id, span id) pairs the agent has seen: a tracer that
/// re-sends a payload sends the same pairs again, so a pair seen before is
/// a duplicate.
///
/// Open addressing over one flat array of pairs, not a `Set`: under `wrk`
/// the agent inserts a few hundred thousand pairs a second into a table of
/// millions, far larger than the cache, and a `Set`'s seeded SipHash of 16
/// bytes plus its generic probing was most of the agent's CPU on a machine
/// it shares with the server it measures. What costs now is memory: the
/// layout is chosen so that a trace's spans cost one prefetched miss
/// together, not one miss each.
struct SpanKeySet: Sendable {
    /// In huge pages: with 4 KiB pages nearly every trace's window also
    /// missed the TLB, and under `bench host` the agent stalled on the
    /// page walk of its first prefetch more than on anything else. (When
    /// each run built its table anew, zeroing 2 MiB pages cost more than
    /// that saved; the table is now kept across resets.)
    private final class Table: @unchecked Sendable {
        let region: MappedRegion
        /// (0, 0) marks a free slot.
        let slots: UnsafeMutableBufferPointer<SpanKey>
        let mask: Int
        /// Per-process random seed: a peer choosing its ids cannot aim them
        /// at one slot. Kept here, not read from a lazy global per insert.
        let seed: UInt64

        init(slots count: Int, seed: UInt64) {
            mask = count - 1
            self.seed = seed
            // Zeroed pages, faulted in by the kernel in one pass: probing
            // reads a page before writing it, so lazily mapped memory took
            // two faults per page (the zero page, then a copy on write), and
            // allocate + initialize wrote every zero a second time. Either
            // was a fifth of the agent's time in a run that grew the table
            // to 4 M slots.
            do {
                region = try MappedRegion.anonymous(length: count * MemoryLayout<SpanKey>.stride, shared: false, populate: true,
                                                    hugePages: true)
            } catch {
                fatalError("forkscope agent: no memory for a table of \(count) span ids: \(error)")
            }
            slots = UnsafeMutableBufferPointer(start: region.base.bindMemory(to: SpanKey.self, capacity: count), count: count)
        }

        deinit { try? region.unmap() }

        func copy() -> Table {
            let table = Table(slots: mask + 1, seed: seed)
            _ = table.slots.update(fromContentsOf: slots)
            return table
        }

        /// Whether the pair was absent (it is present now).
        ///
        /// A pair goes first to the window of its trace id, so the spans
        /// of one trace, which arrive together, share the window's cache
        /// lines, which `prefetch` loads ahead. Only when the window is
        /// full does the pair go where its own hash leads (as many spans of
        /// one trace would): pairs are never removed one by one, so a full
        /// window stays full, and a lookup that found a free slot in it
        /// knows the pair is nowhere else.
        func insert(_ key: SpanKey) -> Bool {
            let home = self.home(key.traceID)
            for step in 0..<SpanKeySet.window {
                let slot = (home + step) & mask
                if slots[slot] == key { return false }
                if slots[slot] == SpanKeySet.free {
                    slots[slot] = key
                    return true
                }
            }
            var slot = self.slot(key)
            while slots[slot] != SpanKeySet.free {
                if slots[slot] == key { return false }
                slot = (slot + 1) & mask
            }
            slots[slot] = key
            return true
        }

        /// The first slot of a trace id's window, at the start of a cache line.
        @inline(__always)
        func home(_ traceID: UInt64) -> Int {
            let product = (traceID ^ seed).multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
            return Int(truncatingIfNeeded: product.high ^ product.low) & mask & ~(SpanKeySet.slotsPerLine - 1)
        }

        @inline(__always)
        func slot(_ key: SpanKey) -> Int {
            let first = (key.traceID ^ seed).multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
            let second = (key.spanID ^ first.high ^ first.low).multipliedFullWidth(by: 0xD6E8_FEB8_6659_FD93)
            return Int(truncatingIfNeeded: second.high ^ second.low) & mask
        }
    }

    static let free = SpanKey(traceID: 0, spanID: 0)
    static let slotsPerLine = 64 / MemoryLayout<SpanKey>.stride
    /// Slots a trace's spans try before their own hash's: four cache lines,
    /// fetched together. With two lines, one insert in six (at a load near
    /// a half) found the window full and paid an unprefetched miss, half
    /// the time of all inserts; with four, about one in thirty.
    static let window = 4 * slotsPerLine

    private var table = Table(slots: 1 << 12, seed: {
        var generator = SystemRandomNumberGenerator()
        return generator.next() | 1
    }())
    /// The pair (0, 0) (ids a peer left nil) is remembered here, as that marks a free slot.
    private var containsZero = false
    private(set) var count = 0

    init() {}

    /// Forgets every pair but keeps the table: the next run of a benchmark
    /// or test that resets the agent fills it again, and growing it anew
    /// rehashed every pair once per doubling (a fifth of the agent's time).
    mutating func removeAll() {
        if !isKnownUniquelyReferenced(&table) { table = Table(slots: table.mask + 1, seed: table.seed) } else { table.slots.update(repeating: Self.free) }
        containsZero = false
        count = 0
    }

    /// Makes room for `extra` more pairs at a load of at most one half
    /// (probes stay short), and makes the table this value's own (a copy
    /// of the statistics keeps its own set): once per payload, so that
    /// `insert` checks neither per pair.
    mutating func reserve(_ extra: Int) {
        if !isKnownUniquelyReferenced(&table) { table = table.copy() }
        while (count + extra) * 2 > table.mask + 1 { grow() }
    }

    /// Adds the pair; returns whether it was new. `reserve` made room for it.
    mutating func insert(_ key: SpanKey) -> Bool {
        if key == Self.free {
            defer { containsZero = true }
            if !containsZero { count += 1 }
            return !containsZero
        }
        guard table.insert(key) else { return false }
        count += 1
        return true
    }

    /// Starts loading the first half of a trace id's window, where its
    /// spans nearly always land: inserting a payload's spans is otherwise
    /// one miss after another. (All four lines kept more misses in flight
    /// than the core tracks, and the prefetches themselves stalled.)
    func prefetch(traceID: UInt64) {
        let base = table.slots.baseAddress!, home = table.home(traceID)
        fks_prefetch_for_write(base + home)
        fks_prefetch_for_write(base + ((home + Self.slotsPerLine) & table.mask))
    }

    private mutating func grow() {
        let old = table
        table = Table(slots: (old.mask + 1) * 2, seed: old.seed)
        for key in old.slots where key != Self.free { _ = table.insert(key) }
    }
}

/// What one sending process delivered.
public struct ProcessTally: Equatable, Sendable {
    /// Spans counted (every copy).
    public var spans = 0
    /// Spans seen for the first time.
    public var unique = 0
    /// Copies of spans seen before.
    public var duplicates: Int { spans - unique }
}

/// How often a fault was applied, and to how many spans.
public struct FaultTally: Equatable, Sendable {
    public var requests = 0
    public var spans = 0
}

/// Everything `GET /stats` reports. Counting is exact: every span of a
/// decoded, counted payload is either unique or a duplicate.
///
/// Spans are attributed to a process by their trace chunk: real tracers put
/// `process_id` in the metrics of the chunk's local root only (dd-trace-py
/// `Tracer._start_span`), so every span of a chunk goes to the first
/// `process_id` found in it, and to pid 0 when none carries one.
public struct AgentStatistics: Sendable {
    /// Requests to `/v0.4/traces` and `/v0.5/traces`, whatever their outcome.
    public private(set) var traceRequests = 0
    /// Trace chunks counted.
    public private(set) var traces = 0
    /// Spans counted, every copy.
    public private(set) var spans = 0
    public private(set) var uniqueSpans = 0
    public var duplicateSpans: Int { spans - uniqueSpans }
    /// Spans of payloads answered with a refusing fault (500, 413, 429): read, not counted.
    public private(set) var rejectedSpans = 0
    /// Traces requests whose body did not decode (answered 400).
    public private(set) var badPayloads = 0
    /// Body bytes of every traces request.
    public private(set) var bytes = 0
    /// Traces replies never delivered: the client closed while the reply was held or delayed.
    public var abandonedReplies = 0
    public private(set) var perProcess: [Int64: ProcessTally] = [:]
    public private(set) var faultsApplied: [AgentFaultKind: FaultTally] = [:]
    /// Requests by route (`/v0.4/traces`, `/info`, `/control/hold`, `other`, `malformed`).
    public private(set) var endpoints: [String: Int] = [:]
    /// Replies by status code, as written (a reset or garbage reply is status 0).
    public private(set) var statuses: [Int: Int] = [:]
    var seen = SpanKeySet()

    public init() {}

    /// Every counter back to zero and every span id forgotten (`/control/reset`).
    mutating func reset() {
        var seen = self.seen
        self = AgentStatistics()
        seen.removeAll()
        self.seen = seen
    }

    /// A traces request arrived (before its payload is decoded).
    mutating func recordTraceRequest(bytes count: Int) {
        traceRequests += 1
        bytes += count
    }

    mutating func recordBadPayload() { badPayloads += 1 }

    /// Counts every span of a payload read by `census`.
    mutating func count(_ census: TraceCensus) {
        // One process's tally is kept here while its chunks follow each
        // other (a payload usually comes from one process), not looked up
        // in the dictionary per chunk.
        var pid: Int64?
        var tally = ProcessTally()
        let keys = census.keys
        seen.reserve(keys.count)
        for key in keys.prefix(Self.prefetchDistance) { seen.prefetch(traceID: key.traceID) }
        var start = 0
        for chunk in 0..<census.chunkCount {
            traces += 1
            let end = census.chunkEnds[chunk]
            let chunkPID = census.chunkProcessIDs[chunk].map { Int64(exactly: $0.rounded()) ?? 0 } ?? 0
            if chunkPID != pid {
                if let pid { perProcess[pid] = tally }
                pid = chunkPID
                tally = perProcess[chunkPID] ?? ProcessTally()
            }
            for index in start..<end {
                let ahead = index + Self.prefetchDistance
                // Spans of one trace share a window: one prefetch per trace.
                if ahead < keys.endIndex && keys[ahead].traceID != keys[ahead - 1].traceID { seen.prefetch(traceID: keys[ahead].traceID) }
                if seen.insert(keys[index]) {
                    uniqueSpans += 1
                    tally.unique += 1
                }
            }
            tally.spans += end - start
            spans += end - start
            start = end
        }
        if let pid { perProcess[pid] = tally }
    }

    /// How many spans ahead `count` prefetches: enough misses in flight
    /// to hide memory latency, few enough that the lines are still cached.
    static let prefetchDistance = 16

    /// A fault was applied to a payload of `spanCount` spans.
    mutating func recordFault(_ kind: AgentFaultKind, spans spanCount: Int) {
        faultsApplied[kind, default: FaultTally()].requests += 1
        faultsApplied[kind, default: FaultTally()].spans += spanCount
        if !kind.countsSpans { rejectedSpans += spanCount }
    }

    mutating func recordEndpoint(_ route: String) { endpoints[route, default: 0] += 1 }

    mutating func recordStatus(_ status: Int) { statuses[status, default: 0] += 1 }

    /// The `/stats` document. `live` carries what is state, not a counter.
    func json(_ live: LiveState) -> JSONValue {
        var processes = OrderedMap<JSONValue>()
        for pid in perProcess.keys.sorted() {
            let tally = perProcess[pid]!
            processes[String(pid)] = ["spans": .number(Double(tally.spans)), "unique": .number(Double(tally.unique)),
                                      "duplicates": .number(Double(tally.duplicates))]
        }
        var faults = OrderedMap<JSONValue>()
        for kind in AgentFaultKind.allCases {
            guard let tally = faultsApplied[kind] else { continue }
            faults[kind.rawValue] = ["requests": .number(Double(tally.requests)), "spans": .number(Double(tally.spans)),
                                     "counted": .bool(kind.countsSpans)]
        }
        var routes = OrderedMap<JSONValue>()
        for route in endpoints.keys.sorted() { routes[route] = .number(Double(endpoints[route]!)) }
        var codes = OrderedMap<JSONValue>()
        for status in statuses.keys.sorted() { codes[String(status)] = .number(Double(statuses[status]!)) }
        var fault: JSONValue = .null
        if let current = live.fault {
            fault = ["kind": .string(current.kind.rawValue), "remaining": current.remaining.map { .number(Double($0)) } ?? .null]
        }
        func n(_ value: Int) -> JSONValue { .number(Double(value)) }
        return [
            "requests": n(traceRequests),
            "traces": n(traces),
            "spans": n(spans),
            "unique_spans": n(uniqueSpans),
            "duplicate_spans": n(duplicateSpans),
            "rejected_spans": n(rejectedSpans),
            "bad_payloads": n(badPayloads),
            "bytes": n(bytes),
            "held": n(live.held),
            "delayed": n(live.delayed),
            "abandoned_replies": n(abandonedReplies),
            "holding": .bool(live.holding),
            "delay_ms": .number(Double(live.delayMilliseconds)),
            "fault": fault,
            "faults_applied": .object(faults),
            "per_process": .object(processes),
            "endpoints": .object(routes),
            "statuses": .object(codes),
            "connections": ["open": n(live.openConnections), "accepted": n(live.acceptedConnections)],
        ]
    }
}

/// The agent's current settings and gauges, beside its counters.
struct LiveState {
    var held: Int
    var delayed: Int
    var holding: Bool
    var delayMilliseconds: UInt64
    var fault: AgentFault?
    var openConnections: Int
    var acceptedConnections: Int
}
