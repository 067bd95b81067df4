import EventRing
import ForkSafety
import Foundation
import Glibc
import Posix
import TestSupport
import TraceTransport
import Wire
import XCTest

/// The seed's delaying-mock-agent test: a send is in flight against a held
/// reply when the process forks through the hooks. With `drain` the fork
/// waits for the reply; with `cancel` it proceeds at once and the payload is
/// delivered later (a duplicate, since the agent had read it).
final class SeedForkTests: XCTestCase {
    var scratch: ScratchSession!
    var ring: Ring!
    var agent: SpawnedProcess!
    var url = ""

    override func setUpWithError() throws {
        scratch = try ScratchSession()
        ring = try scratch.createRing(RingConfiguration(laneCount: 16, slotsPerLane: 4096, stringBytes: 16 * 1024))
        agent = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", "127.0.0.1:0"])
        url = "http://" + (try agent.readLine()).dropFirst("listening on ".count)
    }

    override func tearDown() {
        agent.kill()
        ring.unmap()
    }

    func agentRequest(_ method: String, _ target: String, within seconds: UInt64 = 10) throws -> (Int, [String: Any]) {
        let response = try AgentConnection.request(method, target, to: try AgentEndpoint(parsing: url),
            timeouts: Timeouts(connectMilliseconds: 1000, readMilliseconds: seconds * 1000, totalMilliseconds: seconds * 1000)).get()
        return (response.head.status, (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:])
    }

    func events() throws -> [Event] {
        var events: [Event] = []
        try RingReader(path: scratch.ringPath).readNew(into: &events)
        RingReader.merge(&events)
        return events
    }

    /// Starts the host with its first send held by the agent.
    func hostWithHeldSend(policy: String) throws -> SpawnedProcess {
        _ = try agentRequest("POST", "/control/hold")
        let host = try SpawnedProcess(["seed-fork", scratch.ringPath, url, policy])
        XCTAssertEqual(try host.readLine(), "enqueued")
        XCTAssertEqual(try agentRequest("GET", "/control/wait-held?count=1&timeout_ms=10000").0, 200, "the agent read the send and holds its reply")
        _ = try agentRequest("POST", "/control/hold?enabled=false")  // later sends are answered at once
        return host
    }

    func testDrainMakesTheForkWaitForTheHeldReplyThenBothSidesSend() throws {
        let host = try hostWithHeldSend(policy: "drain")
        try host.send("fork\n")
        // The fork is waiting: the drain began and no fork.parent exists yet.
        let deadline = Deadline(seconds: 10)
        while try !events().contains(where: { $0.kind == .drainWait && $0.pid == host.pid }) {
            guard !deadline.hasPassed else { return XCTFail("no drain.wait published") }
            var none: [pollfd] = []
            _ = try poll(&none, timeoutMilliseconds: 10)
        }
        XCTAssertFalse(try events().contains { $0.kind == .forkParent && $0.pid == host.pid }, "the fork waits while the reply is held")
        XCTAssertEqual(try agentRequest("POST", "/control/release").0, 200)
        XCTAssertEqual(try host.readLine(), "forked")
        let summary = try host.readLine(within: 30)
        XCTAssertEqual(try host.wait(within: 30), .exited(0), summary)
        let (_, stats) = try agentRequest("GET", "/stats")
        XCTAssertEqual(stats["unique_spans"] as? Int, 9, "3 held + 3 from the child + 3 after the fork")
        XCTAssertEqual(stats["duplicate_spans"] as? Int, 0, "drain sends nothing twice")
        let all = try events()
        let completed = try XCTUnwrap(all.firstIndex { $0.kind == .sendComplete && $0.pid == host.pid })
        let parent = try XCTUnwrap(all.firstIndex { $0.kind == .forkParent && $0.pid == host.pid })
        XCTAssertLessThan(completed, parent, "the held send completed before the fork went on")
    }

    func testCancelForksAtOnceAndTheHeldPayloadIsDeliveredLater() throws {
        let host = try hostWithHeldSend(policy: "cancel")
        try host.send("fork\n")
        XCTAssertEqual(try host.readLine(), "forked", "the fork did not wait for the held reply")
        // Nothing was released: the fork went on while the agent held the
        // reply, and the cancelled send hung up on it.
        let (_, during) = try agentRequest("GET", "/stats")
        XCTAssertEqual((during["held"] as? Int ?? 0) + (during["abandoned_replies"] as? Int ?? 0), 1, "\(during)")
        _ = try agentRequest("POST", "/control/release")
        let summary = try host.readLine(within: 30)
        XCTAssertEqual(try host.wait(within: 30), .exited(0), summary)
        let (_, stats) = try agentRequest("GET", "/stats")
        XCTAssertEqual(stats["unique_spans"] as? Int, 9, "nothing lost")
        XCTAssertEqual(stats["duplicate_spans"] as? Int, 3, "the cancelled payload was re-sent after the agent had read it")
        let all = try events()
        XCTAssertTrue(all.contains { $0.kind == .sendCancel && $0.pid == host.pid && CancelReason(rawValue: $0.a1) == .fork })
        XCTAssertTrue(all.contains { $0.kind == .spanRequeued && $0.pid == host.pid && $0.a0 == 3 })
    }
}
