import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import TestSupport
@testable import TraceTransport
import Wire
import XCTest

// The signal handler's only state: the C cancellation word of the transport
// under test (set before the handler is installed).
nonisolated(unsafe) var cancellationForSignal: UnsafeMutablePointer<fks_cancellation>? = nil

nonisolated func cancelFromSignalHandler(_ signal: CInt) {
    if let state = cancellationForSignal { _ = fks_cancellation_cancel_current(state, CancelReason.shutdown.rawValue) }
}

final class TransportTests: XCTestCase {
    var registry: AtForkRegistry!

    override func setUp() { registry = AtForkRegistry() }

    func payload(spans: Int = 1, bytes: Int = 64) -> EncodedPayload {
        let span = Span(traceID: 1, spanID: 2, parentID: 0, name: "n", resource: "r", service: "s", type: "web", start: 1, duration: 2, error: 0)
        var encoded = TraceAPIVersion.v04.encode([Array(repeating: span, count: spans)])
        if encoded.count < bytes { encoded = Array(repeating: 0x90, count: bytes) }
        return EncodedPayload(path: "/v0.4/traces", bytes: encoded, headers: ["Content-Type": "application/msgpack"], traceCount: 1, spanCount: spans)
    }

    func transport(_ url: String, policy: SendPolicy = .drain, timeouts: Timeouts = Timeouts()) throws -> Transport {
        try Transport(endpoint: AgentEndpoint(parsing: url), policy: policy, timeouts: timeouts, registry: registry)
    }

    /// Runs `send` on this thread while `cancel` runs on another once the
    /// server side shows the send is in the phase under test.
    func sendAndCancel(_ transport: Transport, _ payload: EncodedPayload, when ready: () throws -> Void,
                       cancel: @escaping () -> Void) throws -> (SendOutcome, UInt64) {
        var outcome: SendOutcome = .deferred
        let sender = TestThread { outcome = transport.send(payload) }
        try ready()
        let start = Clock.monotonicNanoseconds()
        cancel()
        sender.join()
        return (outcome, (Clock.monotonicNanoseconds() - start) / 1000)
    }

    func waitUntilSending(_ transport: Transport) throws {
        let deadline = Deadline(seconds: 10)
        while transport.participant.cancellation.runningSend == nil {
            guard !deadline.hasPassed else { throw SystemError("send", path: "did not start", .timedOut) }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 1)
        }
    }

    func testEndpointURLs() throws {
        XCTAssertEqual(try AgentEndpoint(parsing: "http://localhost:8126").description, "http://127.0.0.1:8126")
        XCTAssertEqual(try AgentEndpoint(parsing: "127.0.0.1:9").host, "127.0.0.1:9")
        XCTAssertEqual(try AgentEndpoint(parsing: "unix:///var/run/datadog/apm.socket").description, "unix:///var/run/datadog/apm.socket")
        for bad in ["https://x:1", "http://example.com", "http://127.0.0.1", "unix://" + String(repeating: "x", count: 200)] {
            XCTAssertThrowsError(try AgentEndpoint(parsing: bad)) { XCTAssertTrue("\($0)".contains("expected http://"), "\($0)") }
        }
    }

    func testSendReceivesTheAgentsAnswerAndReusesTheConnection() throws {
        let server = try LoopbackServer()
        let transport = try transport(server.url)
        var outcomes: [SendOutcome] = []
        let client = TestThread { outcomes = [transport.send(self.payload()), transport.send(self.payload())] }
        let connection = try server.accept()
        for _ in 0..<2 {
            let request = try server.readRequest(from: connection)
            XCTAssertEqual(request.method, "PUT")
            XCTAssertEqual(request.target, "/v0.4/traces")
            XCTAssertEqual(request.headers["Host"], server.address.description)
            try server.respond(on: connection)
        }
        client.join()
        XCTAssertEqual(outcomes.count, 2)
        for outcome in outcomes {
            guard case .responded(200, _, let body) = outcome else { return XCTFail("\(outcome)") }
            XCTAssertEqual(try AgentSamplingRates.parse(body)["service:,env:"], 1)
        }
        XCTAssertEqual(server.accepted.count, 1, "keep-alive: one connection for both sends")
    }

    func testRefusedWhenNoAgentListens() throws {
        let server = try LoopbackServer()
        let url = server.url
        try server.listener.close()
        let outcome = try transport(url).send(payload())
        guard case .failed(.refused, _) = outcome else { return XCTFail("\(outcome)") }
    }

    func testCancelFromAnotherThreadDuringConnect() throws {
        // Backlog 0 admits one connection that is never accepted; the next
        // connect stays in progress (the SYN is dropped).
        let server = try LoopbackServer(backlog: 0)
        let filler = try Socket.open(.ipv4, .stream, flags: [.closeOnExec, .nonBlocking])
        defer { try? filler.close() }
        _ = try filler.connect(to: server.address)
        let transport = try transport(server.url, timeouts: Timeouts(connectMilliseconds: 10_000, readMilliseconds: 10_000, totalMilliseconds: 20_000))
        let (outcome, micros) = try sendAndCancel(transport, payload(), when: { try waitUntilSending(transport) }) {
            transport.cancelInFlight(reason: .operatorRequest)
        }
        guard case .cancelled(.operatorRequest, _) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertLessThan(micros, 1_000_000, "woken promptly, not by a timeout")
    }

    func testCancelFromASignalHandlerDuringWrite() throws {
        let server = try LoopbackServer()
        let transport = try transport(server.url, policy: .cancel)
        cancellationForSignal = transport.participant.cancellation.signalSafeState
        defer { cancellationForSignal = nil }
        try Signals.install(cancelFromSignalHandler, for: SIGUSR2)
        defer { try? Signals.restoreDefault(SIGUSR2) }
        // 32 MiB: far more than the socket buffers hold while nobody reads.
        let big = payload(bytes: 32 << 20)
        var outcome: SendOutcome = .deferred
        let sender = TestThread { outcome = transport.send(big) }
        try server.accept()
        try waitUntilSending(transport)
        // Deliver the signal to the sending thread itself: the handler runs
        // on the thread that is blocked in poll.
        XCTAssertEqual(sender.signal(SIGUSR2), 0)
        sender.join()
        guard case .cancelled(.shutdown, _) = outcome else { return XCTFail("\(outcome)") }
    }

    func testCancelDuringReadAndACancelAimedAtAFinishedSendDoesNotTouchTheNext() throws {
        let server = try LoopbackServer()
        let transport = try transport(server.url)
        var firstSequence: UInt64 = 0
        let (outcome, micros) = try sendAndCancel(transport, payload(), when: {
            let connection = try server.accept()
            _ = try server.readRequest(from: connection)  // read, never answer
            firstSequence = try XCTUnwrap(transport.participant.cancellation.runningSend)
        }) {
            transport.cancelInFlight(reason: .operatorRequest)
        }
        guard case .cancelled(.operatorRequest, _) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertLessThan(micros, 1_000_000)

        // The next send: a late cancel for the first one must not hit it.
        var second: SendOutcome = .deferred
        let sender = TestThread { second = transport.send(self.payload()) }
        let connection = try server.accept()  // the cancelled connection was closed: a fresh one
        _ = try server.readRequest(from: connection)
        XCTAssertFalse(transport.participant.cancellation.cancel(sequence: firstSequence, reason: .operatorRequest))
        try server.respond(on: connection)
        sender.join()
        guard case .responded(200, _, _) = second else { return XCTFail("\(second)") }
    }

    func testReadTimeoutAndGarbageReplyAreTypedFailures() throws {
        let server = try LoopbackServer()
        let transport = try transport(server.url, timeouts: Timeouts(connectMilliseconds: 1000, readMilliseconds: 200, totalMilliseconds: 5000))
        var outcome: SendOutcome = .deferred
        var sender = TestThread { outcome = transport.send(self.payload()) }
        var connection = try server.accept()
        _ = try server.readRequest(from: connection)
        sender.join()
        guard case .failed(.timedOut(.read), _) = outcome else { return XCTFail("\(outcome)") }

        sender = TestThread { outcome = transport.send(self.payload()) }
        connection = try server.accept()
        _ = try server.readRequest(from: connection)
        try server.send(Array("SSH-2.0-OpenSSH\r\n\r\n".utf8), on: connection)
        sender.join()
        guard case .failed(.malformedResponse, _) = outcome else { return XCTFail("\(outcome)") }
    }

    func testIdleConnectionClosedByTheAgentIsReopenedOnce() throws {
        let server = try LoopbackServer()
        let transport = try transport(server.url)
        var outcome: SendOutcome = .deferred
        var sender = TestThread { outcome = transport.send(self.payload()) }
        let first = try server.accept()
        _ = try server.readRequest(from: first)
        try server.respond(on: first)
        sender.join()
        try first.close()  // the agent drops the idle keep-alive connection
        server.accepted.removeAll()
        sender = TestThread { outcome = transport.send(self.payload()) }
        let second = try server.accept()
        _ = try server.readRequest(from: second)
        try server.respond(on: second)
        sender.join()
        guard case .responded(200, _, _) = outcome else { return XCTFail("\(outcome)") }
    }

    func testCloseIsIdempotentDeregistersAndRefusesLaterSends() throws {
        let server = try LoopbackServer()
        for _ in 0..<100 {
            let transport = try transport(server.url)
            XCTAssertEqual(registry.count(), 3)
            transport.close()
            transport.close()
            XCTAssertEqual(registry.count(), 0)
            guard case .failed(.closed, _) = transport.send(payload()) else { return XCTFail("send after close") }
        }
        XCTAssertEqual(registry.count(), 0, "100 transports created and closed leave no hooks")
    }

    func testCloseWaitsForTheSendInFlight() throws {
        let server = try LoopbackServer()
        let transport = try transport(server.url)
        var outcome: SendOutcome = .deferred
        let sender = TestThread { outcome = transport.send(self.payload()) }
        let connection = try server.accept()
        _ = try server.readRequest(from: connection)
        var closedAt: UInt64 = 0
        let closer = TestThread {
            transport.close()
            closedAt = Clock.monotonicNanoseconds()
        }
        let answeredAt = Clock.monotonicNanoseconds()
        try server.respond(on: connection)
        closer.join()
        sender.join()
        guard case .responded(200, _, _) = outcome else { return XCTFail("\(outcome)") }
        XCTAssertGreaterThan(closedAt, answeredAt, "close returned only after the send finished")
    }

    // MARK: the full matrix: each phase, cancelled from a thread and from a signal handler

    enum Phase: CaseIterable { case connect, write, read }
    enum Source: CaseIterable { case thread, signal }

    /// Puts a send in `phase` against a loopback server, cancels it from
    /// `source`, and returns the outcome.
    func cancel(in phase: Phase, from source: Source) throws -> SendOutcome {
        let server = try LoopbackServer(backlog: phase == .connect ? 0 : 16)
        var filler: Socket? = nil
        if phase == .connect {
            // Backlog 0 admits one connection never accepted; ours then stays in progress.
            filler = try Socket.open(.ipv4, .stream, flags: [.closeOnExec, .nonBlocking])
            _ = try filler!.connect(to: server.address)
        }
        defer { try? filler?.close() }
        let transport = try transport(server.url, timeouts: Timeouts(connectMilliseconds: 20_000, readMilliseconds: 20_000, totalMilliseconds: 30_000))
        cancellationForSignal = transport.participant.cancellation.signalSafeState
        defer { cancellationForSignal = nil }
        try Signals.install(cancelFromSignalHandler, for: SIGUSR2)
        defer { try? Signals.restoreDefault(SIGUSR2) }
        let payload = phase == .write ? payload(bytes: 32 << 20) : payload()
        var outcome: SendOutcome = .deferred
        let sender = TestThread { outcome = transport.send(payload) }
        switch phase {
        case .connect: try waitUntilSending(transport)
        case .write: try server.accept(); try waitUntilSending(transport)
        case .read: _ = try server.readRequest(from: try server.accept())
        }
        switch source {
        case .thread: transport.cancelInFlight(reason: .shutdown)
        case .signal: XCTAssertEqual(sender.signal(SIGUSR2), 0)  // the handler runs on the sending thread
        }
        sender.join()
        return outcome
    }

    func testCancellationWakesASenderInEveryPhaseFromAThreadOrASignalHandler() throws {
        for phase in Phase.allCases {
            for source in Source.allCases {
                let started = Clock.monotonicNanoseconds()
                let outcome = try cancel(in: phase, from: source)
                let micros = (Clock.monotonicNanoseconds() - started) / 1000
                guard case .cancelled(.shutdown, _) = outcome else {
                    XCTFail("\(phase) / \(source): \(outcome)")
                    continue
                }
                XCTAssertLessThan(micros, 5_000_000, "\(phase) / \(source): woken by the cancel, not a timeout")
            }
        }
    }
}
