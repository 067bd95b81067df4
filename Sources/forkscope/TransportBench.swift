import ArgumentParser
import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// `forkscope bench transport`: encode rate, end-to-end spans/s to a real
/// `forkscope agent` on loopback beside the same payloads sent by `curl`,
/// and cancel-to-return latency of a send held by the agent.
struct TransportBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "transport",
        abstract: "Encode spans/s, end-to-end spans/s to the agent (beside curl), cancel latency p50/p99."
    )

    @Option(help: "Spans per payload.")
    var spansPerPayload = 1_000

    @Option(help: "Seconds for each end-to-end measurement.")
    var seconds = 3.0

    @Option(help: "Cancellations measured.")
    var cancels = 200

    @Flag(help: "Run even in a debug build (figures are then meaningless).")
    var allowDebug = false

    func run() throws {
        #if DEBUG
        if !allowDebug {
            Failure.exit("this is a debug build: its figures mean nothing. Run `swift run -c release forkscope bench transport` (or pass --allow-debug)", code: 2)
        }
        warn("WARNING: debug build — these figures are not the product's")
        #endif
        let traces = sampleTraces(spans: spansPerPayload)
        let encodeRate = measureEncode(traces)
        let agent = try BenchAgent()
        defer { agent.stop() }
        let endToEnd = try measureEndToEnd(traces, agent: agent)
        let curlRate = try measureCurl(traces, agent: agent)
        let cancel = try measureCancel(agent: agent)

        print("forkscope bench transport — \(spansPerPayload) spans per payload, v0.4")
        print(pad("measurement", 40) + pad("figure", 22, right: true))
        print(pad("encode (v0.4)", 40) + pad(fixed(encodeRate / 1e6, 2) + " M spans/s", 22, right: true))
        print(pad("end to end, Transport → agent", 40) + pad(fixed(endToEnd / 1e3, 1) + " k spans/s", 22, right: true))
        print(pad("end to end, curl (keep-alive) → agent", 40) + pad(fixed(curlRate / 1e3, 1) + " k spans/s", 22, right: true))
        print(pad("cancel → send returns, p50", 40) + pad(fixed(cancel.p50, 1) + " µs", 22, right: true))
        print(pad("cancel → send returns, p99", 40) + pad(fixed(cancel.p99, 1) + " µs", 22, right: true))
        print("targets: encode ≥ 2 M spans/s, end to end ≥ 300 k spans/s, cancel p99 < 200 µs")
        print("{\"bench\":\"transport\",\"spans_per_payload\":\(spansPerPayload),\"encode_spans_per_s\":\(Int(encodeRate)),\"end_to_end_spans_per_s\":\(Int(endToEnd)),\"curl_spans_per_s\":\(Int(curlRate)),\"cancel_p50_us\":\(fixed(cancel.p50, 1)),\"cancel_p99_us\":\(fixed(cancel.p99, 1))}")
    }

    func sampleTraces(spans: Int) -> [[Span]] {
        var traces: [[Span]] = []
        var id: UInt64 = 1
        while traces.reduce(0, { $0 + $1.count }) < spans {
            var trace: [Span] = []
            let traceID = id
            for index in 0..<min(4, spans - traces.reduce(0, { $0 + $1.count })) {
                var span = Span(traceID: traceID, spanID: id, parentID: index == 0 ? 0 : traceID, name: index == 0 ? "http.request" : "db.query",
                                resource: "GET /items", service: "bench", type: "web", start: 1_700_000_000_000_000_000, duration: 1_234, error: 0)
                span.meta = ["http.method": "GET", "component": "bench", "env": "bench"]
                span.metrics = ["process_id": Double(getpid()), "_sampling_priority_v1": 1]
                trace.append(span)
                id += 1
            }
            traces.append(trace)
        }
        return traces
    }

    func measureEncode(_ traces: [[Span]]) -> Double {
        let spans = traces.reduce(0) { $0 + $1.count }
        var best = 0.0
        for _ in 0..<5 {
            let start = Clock.monotonicNanoseconds()
            var bytes = 0
            for _ in 0..<200 { bytes &+= TraceAPIVersion.v04.encode(traces).count }
            let seconds = Double(Clock.monotonicNanoseconds() - start) / 1e9
            if bytes > 0 { best = max(best, Double(spans * 200) / seconds) }
        }
        return best
    }

    /// Payloads with fresh span ids each time, so the agent counts them all.
    func payload(_ traces: [[Span]], round: UInt64) -> EncodedPayload {
        let shifted = traces.map { $0.map { span -> Span in var s = span; s.spanID &+= round << 32; return s } }
        return EncodedPayload(path: "/v0.4/traces", bytes: TraceAPIVersion.v04.encode(shifted),
                              headers: TracePayload.requestHeaders(traceCount: shifted.count, tracer: WriterConfiguration().tracer),
                              traceCount: shifted.count, spanCount: shifted.reduce(0) { $0 + $1.count })
    }

    func measureEndToEnd(_ traces: [[Span]], agent: BenchAgent) throws -> Double {
        let transport = try Transport(endpoint: agent.endpoint, policy: .drain, registry: AtForkRegistry())
        defer { transport.close() }
        // Payloads are encoded before timing: this measures sending.
        let payloads = (0..<64).map { payload(traces, round: UInt64($0) + 1) }
        let deadline = Deadline(seconds: seconds)
        let start = Clock.monotonicNanoseconds()
        var sent = 0, round = 0
        while !deadline.hasPassed {
            guard case .responded(200, _, _) = transport.send(payloads[round % payloads.count]) else {
                throw ValidationError("the agent did not accept a payload")
            }
            sent += payloads[0].spanCount
            round += 1
        }
        return Double(sent) / (Double(Clock.monotonicNanoseconds() - start) / 1e9)
    }

    /// The same payload through `curl`, one process sending it N times on
    /// one keep-alive connection.
    func measureCurl(_ traces: [[Span]], agent: BenchAgent) throws -> Double {
        let file = agent.directory + "/payload.msgpack"
        let bytes = payload(traces, round: 9999).bytes
        let fd = try FileDescriptor.open(file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try fd.writeAll(raw) } }.get()
        try fd.close()
        let url = "\(agent.endpoint)/v0.4/traces"
        let repeats = 200
        var arguments = ["curl", "-s", "-X", "PUT", "-H", "Content-Type: application/msgpack", "-H", "X-Datadog-Trace-Count: \(traces.count)",
                         "--data-binary", "@" + file, "-o", "/dev/null"]
        for _ in 0..<repeats { arguments += [url] }
        let start = Clock.monotonicNanoseconds()
        let pid = try Spawn.run("/usr/bin/curl", arguments: arguments, fileActions: [.nullDevice(as: .standardOutput)])
        guard let status = try ProcessControl.wait(for: pid, deadline: .after(milliseconds: 120_000)), status == .exited(0) else {
            throw ValidationError("curl failed or took over 2 minutes (is curl installed?)")
        }
        let seconds = Double(Clock.monotonicNanoseconds() - start) / 1e9
        return Double(repeats * traces.reduce(0) { $0 + $1.count }) / seconds
    }

    /// A send held by the agent, cancelled from another thread: the time
    /// from `cancel` to the sender's return.
    func measureCancel(agent: BenchAgent) throws -> Percentiles {
        let transport = try Transport(endpoint: agent.endpoint, policy: .drain, registry: AtForkRegistry())
        defer { transport.close() }
        try agent.control("POST", "/control/hold")
        defer { try? agent.control("POST", "/control/hold?enabled=false"); try? agent.control("POST", "/control/release") }
        let small = payload(sampleTraces(spans: 4), round: 77)
        var samples: [Double] = []
        for _ in 0..<cancels {
            let probe = CancelProbe(transport: transport, payload: small)
            probe.start()
            // Cancel only once the agent holds the request (it has read it).
            try agent.control("GET", "/control/wait-held?count=1&timeout_ms=5000")
            let cancelledAt = Clock.monotonicNanoseconds()
            transport.cancelInFlight(reason: .operatorRequest)
            let returnedAt = probe.join()
            samples.append(Double(returnedAt &- cancelledAt) / 1000)
            try agent.control("POST", "/control/release")
        }
        return Percentiles(samples)
    }
}

/// A sender thread for the cancel measurement.
final class CancelProbe: @unchecked Sendable {
    let transport: Transport
    let payload: EncodedPayload
    var returnedAt: UInt64 = 0
    private var thread = pthread_t()

    init(transport: Transport, payload: EncodedPayload) {
        self.transport = transport
        self.payload = payload
    }

    func start() { pthread_create(&thread, nil, cancelProbeMain, Unmanaged.passRetained(self).toOpaque()) }

    func join() -> UInt64 {
        pthread_join(thread, nil)
        return returnedAt
    }
}

nonisolated private func cancelProbeMain(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let probe = Unmanaged<CancelProbe>.fromOpaque(raw!).takeRetainedValue()
    _ = probe.transport.send(probe.payload)
    probe.returnedAt = Clock.monotonicNanoseconds()
    return nil
}

/// A `forkscope agent` (this same executable) for benchmarks.
final class BenchAgent {
    let pid: pid_t
    let endpoint: AgentEndpoint
    let directory: String

    init() throws {
        let executable = try ProcessControl.currentExecutablePath()
        directory = try FileSystem.makeTemporaryDirectory(in: "/tmp", prefix: "forkscope-bench-")
        let out = try FileDescriptor.pipe()
        pid = try Spawn.run(executable, arguments: ["forkscope", "agent", "--listen", "127.0.0.1:0"],
                            fileActions: [.duplicate(out.write, as: .standardOutput), .nullDevice(as: .standardError)])
        try out.write.close()
        defer { try? out.read.close() }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while line.last != 10 {
            guard try out.read.poll(for: Int16(POLLIN), deadline: Deadline(seconds: 10)) != 0,
                  try withUnsafeMutableBytes(of: &byte, { try out.read.read(into: $0) }) == 1 else {
                throw ValidationError("the agent did not start")
            }
            line.append(byte)
        }
        let text = String(decoding: line.dropLast(), as: UTF8.self)
        endpoint = try AgentEndpoint(parsing: "http://" + text.dropFirst("listening on ".count))
    }

    func control(_ method: String, _ target: String) throws {
        _ = try AgentConnection.request(method, target, to: endpoint,
                                        timeouts: Timeouts(connectMilliseconds: 1000, readMilliseconds: 10_000, totalMilliseconds: 10_000)).get()
    }

    func stop() {
        try? ProcessControl.send(SIGTERM, to: pid)
        _ = try? ProcessControl.wait(for: pid, deadline: .after(milliseconds: 5_000))
        try? FileSystem.removeTree(directory)
    }
}
