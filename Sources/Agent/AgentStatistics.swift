import CPosix
import Posix
import Wire

/// The (trace id, span id) pairs the agent has seen: a tracer that
/// re-sends a payload sends the same pairs again, so a pair seen before is
/// a duplicate.
///
/// Open addressing over two flat arrays, not a `Set` of a struct: under
/// `wrk` the agent inserts a few hundred thousand pairs a second, and a
/// `Set`'s seeded SipHash of 16 bytes plus its generic probing was most of
/// the agent's CPU on a machine it shares with the server it measures.
struct SpanKeySet: Sendable {
    /// Slot i is the pair (`pairs[2i]`, `pairs[2i+1]`): both ids on one
    /// cache line, so a probe costs one miss, not two. (Huge pages were
    /// measured too: zeroing 2 MiB pages on each fault cost more than the
    /// TLB misses they saved.)
    private final class Table: @unchecked Sendable {
        let region: MappedRegion
        let pairs: UnsafeMutableBufferPointer<UInt64>
        let mask: Int

        init(slots: Int) {
            mask = slots - 1
            // Zeroed pages, faulted in by the kernel in one pass: probing
            // reads a page before writing it, so lazily mapped memory took
            // two faults per page (the zero page, then a copy on write), and
            // allocate + initialize wrote every zero a second time. Either
            // was a fifth of the agent's time in a run that grew the table
            // to 4 M slots.
            do {
                region = try MappedRegion.anonymous(length: slots * 2 * MemoryLayout<UInt64>.stride, shared: false, populate: true)
            } catch {
                fatalError("forkscope agent: no memory for a table of \(slots) span ids: \(error)")
            }
            pairs = UnsafeMutableBufferPointer(start: region.base.bindMemory(to: UInt64.self, capacity: slots * 2), count: slots * 2)
        }

        deinit { try? region.unmap() }

        func copy() -> Table {
            let table = Table(slots: mask + 1)
            _ = table.pairs.update(fromContentsOf: pairs)
            return table
        }

        /// Whether the pair was absent (it is present now).
        func insert(_ traceID: UInt64, _ spanID: UInt64) -> Bool {
            var slot = SpanKeySet.slot(traceID, spanID, mask)
            while pairs[2 * slot] != 0 || pairs[2 * slot + 1] != 0 {
                if pairs[2 * slot] == traceID && pairs[2 * slot + 1] == spanID { return false }
                slot = (slot + 1) & mask
            }
            pairs[2 * slot] = traceID
            pairs[2 * slot + 1] = spanID
            return true
        }
    }

    private var table = Table(slots: 1 << 12)
    /// (0, 0) marks a free slot; the pair (0, 0) itself (ids a peer left
    /// nil) is remembered here.
    private var containsZero = false
    private(set) var count = 0

    init() {}

    /// Forgets every pair but keeps the table: the next run of a benchmark
    /// or test that resets the agent fills it again, and growing it anew
    /// rehashed every pair once per doubling (a fifth of the agent's time).
    mutating func removeAll() {
        if !isKnownUniquelyReferenced(&table) { table = Table(slots: table.mask + 1) } else { table.pairs.update(repeating: 0) }
        containsZero = false
        count = 0
    }

    /// Adds the pair; returns whether it was new.
    mutating func insert(traceID: UInt64, spanID: UInt64) -> Bool {
        if traceID == 0 && spanID == 0 {
            defer { containsZero = true }
            if !containsZero { count += 1 }
            return !containsZero
        }
        // A value type over a class: a copy of the statistics keeps its own set.
        if !isKnownUniquelyReferenced(&table) { table = table.copy() }
        guard table.insert(traceID, spanID) else { return false }
        count += 1
        // Grow at a load of one half: probes stay short.
        if count * 2 > table.mask + 1 { grow() }
        return true
    }

    /// Starts loading the slot where the pair's probe begins: inserting a
    /// payload's spans is otherwise one cache miss after another.
    func prefetch(traceID: UInt64, spanID: UInt64) {
        fks_prefetch_for_write(table.pairs.baseAddress! + 2 * Self.slot(traceID, spanID, table.mask))
    }

    private mutating func grow() {
        let old = table
        table = Table(slots: (old.mask + 1) * 2)
        for slot in 0...old.mask where old.pairs[2 * slot] != 0 || old.pairs[2 * slot + 1] != 0 {
            _ = table.insert(old.pairs[2 * slot], old.pairs[2 * slot + 1])
        }
    }

    /// Per-process random seed: a peer choosing its ids cannot aim them at one slot.
    private static let seed: UInt64 = {
        var generator = SystemRandomNumberGenerator()
        return generator.next() | 1
    }()

    @inline(__always)
    fileprivate static func slot(_ traceID: UInt64, _ spanID: UInt64, _ mask: Int) -> Int {
        let first = (traceID ^ seed).multipliedFullWidth(by: 0x9E37_79B9_7F4A_7C15)
        let second = (spanID ^ first.high ^ first.low).multipliedFullWidth(by: 0xD6E8_FEB8_6659_FD93)
        return Int(truncatingIfNeeded: second.high ^ second.low) & mask
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
        var start = 0
        for chunk in 0..<census.chunkCount {
            traces += 1
            let end = census.chunkEnds[chunk]
            let pid = census.chunkProcessIDs[chunk].map { Int64(exactly: $0.rounded()) ?? 0 } ?? 0
            var tally = perProcess[pid] ?? ProcessTally()
            for index in start..<end {
                let ahead = index + Self.prefetchDistance
                if ahead < census.spanCount { seen.prefetch(traceID: census.traceIDs[ahead], spanID: census.spanIDs[ahead]) }
                spans += 1
                tally.spans += 1
                if seen.insert(traceID: census.traceIDs[index], spanID: census.spanIDs[index]) {
                    uniqueSpans += 1
                    tally.unique += 1
                }
            }
            perProcess[pid] = tally
            start = end
        }
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
