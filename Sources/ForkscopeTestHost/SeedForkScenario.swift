import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// The first seed's delaying-agent test, as a process: a send is in flight
/// (the agent holds its reply) when this process forks through the hooks.
///
///     seed-fork RING AGENT_URL POLICY
///
/// Prints "enqueued" once the first payload is handed to the writer, waits
/// for a line "fork" on stdin, forks, prints "forked" in the parent, and
/// exits 0 only if the child delivered its own spans and the parent
/// delivered all of its own (the held payload and one sent after the fork).
enum SeedForkScenario {
    static func run(ring: String, agentURL: String, policy text: String) -> Int32 {
        guard let policy = SendPolicy(parsing: text) else { return 64 }
        do { Telemetry.install(try Ring.open(at: ring).writer) } catch { return 65 }
        var configuration = WriterConfiguration()
        configuration.flushIntervalMilliseconds = 10
        configuration.flushThreshold = 1
        let writer: TraceWriter
        do {
            writer = try TraceWriter(endpoint: AgentEndpoint(parsing: agentURL), policy: policy, configuration: configuration,
                                     timeouts: Timeouts(connectMilliseconds: 1_000, readMilliseconds: 30_000, totalMilliseconds: 30_000))
        } catch {
            return 66
        }
        writer.enqueue(trace(base: 100))
        say("enqueued")
        guard readLine() == "fork" else { return 67 }
        let outcome: ForkOutcome
        do { outcome = try Fork.fork() } catch { return 68 }
        switch outcome {
        case .child:
            // A fresh runtime at generation + 1, an empty buffer: send our own.
            writer.enqueue(trace(base: 200))
            writer.stop(deadlineMilliseconds: 10_000)
            let counters = writer.snapshot
            _exit(counters.sent == 3 && counters.isBalanced ? 0 : 3)
        case .parent(let child):
            say("forked")
            let status = try? ProcessControl.wait(for: child, deadline: .after(milliseconds: 20_000))
            if status == nil { try? ProcessControl.send(SIGKILL, to: child) }
            writer.enqueue(trace(base: 300))
            writer.stop(deadlineMilliseconds: 20_000)
            let counters = writer.snapshot
            say("parent sent \(counters.sent) requeued \(counters.requeued) cancelled \(counters.cancelled) child \(status.map { "\($0)" } ?? "hung")")
            return status == .exited(0) && counters.sent == 6 && counters.isBalanced ? 0 : 1
        }
    }

    static func trace(base: UInt64) -> [Span] {
        (0..<3).map { index in
            var span = Span(traceID: base, spanID: base + UInt64(index), parentID: index == 0 ? 0 : base, name: "seed", resource: "fork",
                            service: "seed-fork", type: "custom", start: 1, duration: 1, error: 0)
            span.metrics = ["process_id": Double(getpid())]
            return span
        }
    }

    static func say(_ text: String) { try? FileDescriptor.standardOutput.writeAll(text + "\n") }

    static func readLine() -> String {
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while (try? withUnsafeMutableBytes(of: &byte) { try FileDescriptor.standardInput.read(into: $0) }) == 1, byte != 10 {
            line.append(byte)
        }
        return String(decoding: line, as: UTF8.self)
    }
}
