import Dashboard
import DemoServer
import EventRing
import Glibc
import Posix

// The seeds these scenarios teach (see /work/shared/seeds and the README):
// - Sqreen, "background threads in preforking servers": "forking brutally
//   kills all threads except the one calling fork"; the fix detects the
//   fork (the pid changed) and restarts the thread in the worker.
// - dd-trace-rb #5835, "fork safety and cooperative cancellation": before_fork
//   quiesces the exporter's runtime (an in-flight send drains or is
//   cancelled through a per-send cancellation token), after_fork_in_parent
//   restores it, after_fork_in_child recreates it in the child.

private let sqreen = "Sqreen: \"forking brutally kills all threads except the one calling fork\""
private let ddtrace = "dd-trace-rb #5835: before_fork quiesces the runtime, after_fork_in_child recreates it"

public enum ScenarioCatalog {
    public static func named(_ name: String) -> Scenario? { all.first { $0.name == name } }

    public static let all: [Scenario] = [
        preloadWithoutHooks, preloadWithHooks, noPreload, pidDetection, forkDuringSend, cancelInFlight, drainTimeout,
        daemonize, refork, closeDeregisters, agentOutage, forkFailure,
    ]

    /// Requests, a graceful stop, and the spans-delivered checks shared by the startup scenarios.
    static func serveAndStop(_ c: ScenarioContext, requests: Int = 40) throws -> Observation {
        c.made = try c.run.requests(requests)
        c.step("\(requests) requests made \(c.made) spans in the workers; now QUIT: each worker flushes and closes its exporter at exit.")
        try c.run.stopGracefully()
        return try c.observe()
    }

    static let preloadWithoutHooks = Scenario(
        name: "preload-without-hooks",
        summary: "The exporter starts in the master, workers are forked without hooks: their spans are buffered and never sent.",
        mechanism: sqreen,
        sabotage: "fork through the at-fork hooks (the fix): spans are sent, so the check fails",
        serve: { sabotaged in ["--workers", "2", "--preload", sabotaged ? "--fork-hooks" : "--no-fork-hooks", "--no-detect-forks"] },
        script: { c in
            c.step("The master loaded the app and started the exporter's flush thread, then forked 2 workers without the hooks.")
            let o = try serveAndStop(c)
            let buffered = o.workers.map(o.lastBuffered).reduce(0, +)
            c.step("Workers were forked after the flush thread started; threads do not survive fork(), so each worker's spans sat in its buffer: \(buffered) buffered, \(o.stat("unique_spans")) at the agent.")
            c.check("spans made", c.made > 0, "\(c.made) spans")
            c.expectEqual("spans sent by workers (agent unique)", o.stat("unique_spans"), 0)
            c.expectEqual("spans still buffered in workers at exit", buffered, c.made)
            c.expectEqual("fork.child events (no hooks ran)", o.of(.forkChild).count, 0)
        })

    static let preloadWithHooks = Scenario(
        name: "preload-with-hooks",
        summary: "Preload, and fork through the at-fork hooks: the child rebuilds the exporter runtime, every span arrives once.",
        mechanism: ddtrace,
        sabotage: "fork without the hooks (and without detection): spans are lost, so the check fails",
        serve: { sabotaged in ["--workers", "2", "--preload", sabotaged ? "--no-fork-hooks" : "--fork-hooks", sabotaged ? "--no-detect-forks" : "--detect-forks"] },
        script: { c in
            c.step("The master loaded the app; each fork ran before (quiesce), parent (resume) and child (rebuild at generation+1).")
            let o = try serveAndStop(c)
            c.step("Every worker rebuilt its runtime in the child hook, so its flush thread exists: \(o.stat("unique_spans")) of \(c.made) spans arrived.")
            c.check("spans made", c.made > 0, "\(c.made) spans")
            c.expectEqual("unique spans at the agent = accepted", o.stat("unique_spans"), c.made)
            c.expectEqual("duplicate spans", o.stat("duplicate_spans"), 0)
            for pid in o.workers {
                c.expectEqual("worker \(pid): fork.child", o.of(.forkChild, pid: pid).count, 1)
                c.check("worker \(pid): runtime rebuilt", !o.of(.runtimeRebuild, pid: pid).isEmpty, "\(o.of(.runtimeRebuild, pid: pid).count) runtime.rebuild")
            }
            if let master = o.master {
                let stages = o.hookStages(master)
                c.expectEqual("master: before hooks (one per worker)", stages.filter { $0 == .before }.count, 2)
                c.expectEqual("master: parent hooks (one per worker)", stages.filter { $0 == .parent }.count, 2)
            }
        })

    static let noPreload = Scenario(
        name: "no-preload",
        summary: "Without preload each worker loads the app after fork: its exporter (and thread) is its own, nothing to repair.",
        mechanism: "Sqreen: \"start the background thread only when the workers effectively start\"",
        sabotage: "preload in the master (still without hooks): spans are lost, so the check fails",
        serve: { sabotaged in ["--workers", "2", sabotaged ? "--preload" : "--no-preload", "--no-fork-hooks", "--no-detect-forks"] },
        script: { c in
            c.step("The master forked 2 workers before loading the app; each worker then opened its own transport.")
            let o = try serveAndStop(c)
            c.step("Each worker's flush thread was started in that worker, after fork: \(o.stat("unique_spans")) of \(c.made) spans arrived.")
            c.check("spans made", c.made > 0, "\(c.made) spans")
            c.expectEqual("unique spans at the agent = accepted", o.stat("unique_spans"), c.made)
            for pid in o.workers {
                c.check("worker \(pid): opened its own transport", !o.of(.transportOpen, pid: pid).isEmpty, "\(o.of(.transportOpen, pid: pid).count) transport.open")
            }
            if let master = o.master {
                c.expectEqual("master: no transport (app not loaded)", o.of(.transportOpen, pid: master).count, 0)
            }
        })

    static let pidDetection = Scenario(
        name: "pid-detection",
        summary: "Preload, no hooks, but the exporter detects the fork on first use (fork counter) and rebuilds itself.",
        mechanism: "Sqreen's fix: detect that the process was forked (the pid changed) and restart the thread; ours compares the ring's fork counter",
        sabotage: "turn detection off (--no-detect-forks): spans are lost, so the check fails",
        serve: { sabotaged in ["--workers", "2", "--preload", "--no-fork-hooks", sabotaged ? "--no-detect-forks" : "--detect-forks"] },
        script: { c in
            c.step("Workers were forked with a raw fork(); glibc still ran the ring's pthread_atfork child handler, which bumped the fork counter.")
            let o = try serveAndStop(c)
            let detected = Set(o.of(.forkDetectedWithoutHooks).map(\.pid))
            c.step("On its first span each worker saw the counter changed, published fork.detected_without_hooks and rebuilt: \(detected.count) of \(o.workers.count) workers.")
            c.check("spans made", c.made > 0, "\(c.made) spans")
            c.expectEqual("workers that detected their fork", detected, Set(o.workers))
            c.expectEqual("unique spans at the agent = accepted", o.stat("unique_spans"), c.made)
        })

    /// Hold the agent, make worker 0's flush send wait on it; returns worker 0.
    static func holdASend(_ c: ScenarioContext) throws -> (pid: pid_t, start: UInt64) {
        try c.run.agentControl("/control/hold")
        c.made = try c.run.requests(3)
        try c.run.agentControl("/control/wait-held?count=1&timeout_ms=3000")
        try c.run.agentControl("/control/hold?enabled=false")
        guard let worker = try c.run.processes().first(where: { $0.role == "worker" }) else { throw ScenarioError("no worker in the master's table") }
        c.step("The agent holds worker \(worker.pid)'s send: it has read the payload and not answered, so the send is in flight.")
        return (worker.pid, worker.start)
    }

    static let forkDuringSend = Scenario(
        name: "fork-during-send",
        summary: "A worker forks (refork) while its send is in flight; with drain, before_fork waits for the send, then forks.",
        mechanism: ddtrace + "; the :before hook blocks until any in-flight send drains",
        sabotage: "policy cancel instead of drain: the send is cancelled, so the drain check fails",
        serve: { sabotaged in ["--workers", "1", "--preload", "--fork-hooks", "--policy", sabotaged ? "cancel" : "drain"] },
        script: { c in
            let worker = try holdASend(c)
            try c.run.control(.fork(pid: worker.pid, start: worker.start))
            c.step("Refork requested: worker \(worker.pid)'s before hook set quiescing and now waits for its held send (policy drain).")
            try c.run.waitUntil("the fork to start waiting", within: 2_000) { !(try c.observe().of(.forkBeforeStart, pid: worker.pid)).isEmpty }
            try c.run.agentControl("/control/release")
            try c.run.waitUntil("the fork to finish", within: 3_000) { !(try c.observe().of(.forkParent, pid: worker.pid)).isEmpty }
            c.step("Released: the send completed, then the fork proceeded (parent resumed, the child rebuilt).")
            try c.run.stopGracefully()
            let o = try c.observe()
            let before = o.of(.forkBeforeStart, pid: worker.pid).first?.time ?? 0
            let parent = o.of(.forkParent, pid: worker.pid).first?.time ?? 0
            let completedInside = o.of(.sendComplete, pid: worker.pid).contains { $0.time >= before && $0.time <= parent }
            c.check("the held send completed inside the fork's before window", completedInside, "before \(before) parent \(parent)")
            c.expectEqual("sends cancelled", o.of(.sendCancel, pid: worker.pid).count, 0)
            c.expectEqual("drain outcome", o.of(.drainWait, pid: worker.pid).first.map { Outcome(rawValue: $0.a2)?.name ?? "?" } ?? "none", "ok")
            c.expectEqual("unique spans at the agent = accepted", o.stat("unique_spans"), c.made)
            c.expectEqual("duplicate spans", o.stat("duplicate_spans"), 0)
        })

    static let cancelInFlight = Scenario(
        name: "cancel-in-flight",
        summary: "The operator cancels a held send: it ends within milliseconds, the payload is re-queued and sent again.",
        mechanism: "dd-trace-rb #5835: a cancellation token per send call, cancelled from outside, cooperatively aborts the in-flight request",
        sabotage: "do not cancel: the send stays held, so the cancel check fails",
        serve: { _ in ["--workers", "1", "--preload", "--fork-hooks", "--policy", "drain"] },
        script: { c in
            let worker = try holdASend(c)
            if !c.sabotaged { try c.run.control(.cancel(pid: worker.pid, start: worker.start)) }
            c.step("Cancel sent: the worker's cancellation word was set and its eventfd written; the send returned cancelled and its spans were re-queued.")
            // The agent counted the held payload when it read it: wait for the cancel in the ring, then for the re-sent copy.
            try? c.run.waitUntil("the send to be cancelled", within: 1_000) { !(try c.observe().of(.sendCancel, pid: worker.pid)).isEmpty }
            try? c.run.waitUntil("the payload to arrive again", within: 1_000) { try c.observe().stat("duplicate_spans") >= c.made }
            try c.run.agentControl("/control/release")
            try c.run.stopGracefully()
            let o = try c.observe()
            let cancels = o.of(.sendCancel, pid: worker.pid).filter { CancelReason(rawValue: $0.a1) == .operatorRequest }
            c.step("The agent had read the payload before the cancel, so it arrived twice: \(o.stat("duplicate_spans")) duplicate spans, shown, not lost.")
            c.expectEqual("sends cancelled by the operator", cancels.count, 1)
            c.check("cancelled within 200 ms of the request", cancels.first.map { $0.a2 < 200_000 } ?? false, "\(cancels.first?.a2 ?? 0) us in flight")
            c.check("spans re-queued", !o.of(.spanRequeued, pid: worker.pid).isEmpty, "\(o.of(.spanRequeued, pid: worker.pid).map(\.a0).reduce(0, +)) spans")
            c.expectEqual("unique spans at the agent = accepted (nothing lost)", o.stat("unique_spans"), c.made)
            c.expectEqual("duplicate spans (at-least-once made visible)", o.stat("duplicate_spans"), c.made)
        })

    static let drainTimeout = Scenario(
        name: "drain-timeout",
        summary: "With drain:200 a fork waits at most 200 ms for a held send, then cancels it and forks.",
        mechanism: "dd-trace-rb #5835: before_fork must not hang on a stuck agent; drain, then cancel through the token",
        sabotage: "policy drain without a timeout: the fork waits for the release, so the timeout check fails",
        serve: { sabotaged in ["--workers", "1", "--preload", "--fork-hooks", "--policy", sabotaged ? "drain" : "drain:200"] },
        script: { c in
            let worker = try holdASend(c)
            try c.run.control(.fork(pid: worker.pid, start: worker.start))
            c.step("Refork requested while the agent holds the send: the before hook waits up to 200 ms.")
            try? c.run.waitUntil("the fork to finish", within: 1_200) { !(try c.observe().of(.forkParent, pid: worker.pid)).isEmpty }
            try c.run.agentControl("/control/release")
            try c.run.waitUntil("the fork to finish", within: 3_000) { !(try c.observe().of(.forkParent, pid: worker.pid)).isEmpty }
            try c.run.stopGracefully()
            let o = try c.observe()
            let drain = o.of(.drainWait, pid: worker.pid).first
            c.step("The drain timed out after \((drain?.a3 ?? 0) / 1000) ms; the send was cancelled (drain_timeout), re-queued, and sent again after the fork.")
            c.expectEqual("drain outcome", drain.map { Outcome(rawValue: $0.a2)?.name ?? "?" } ?? "none", "timed_out")
            c.check("waited ≥ 200 ms and < 1 s", drain.map { $0.a3 >= 200_000 && $0.a3 < 1_000_000 } ?? false, "\(drain?.a3 ?? 0) us")
            c.expectEqual("sends cancelled for drain_timeout", o.of(.sendCancel, pid: worker.pid).filter { CancelReason(rawValue: $0.a1) == .drainTimeout }.count, 1)
            c.expectEqual("unique spans at the agent = accepted (nothing lost)", o.stat("unique_spans"), c.made)
        })

    static let daemonize = Scenario(
        name: "daemonize",
        summary: "A daemon (fork, setsid, fork) runs before and child but never parent, and its exporter still delivers.",
        mechanism: ddtrace + "; daemon = before + child (the intermediate parent exits without resuming)",
        sabotage: "none through the server: Fork.daemon runs the registered hooks whatever --fork-hooks says (measured), so --sabotage changes nothing",
        serve: { _ in ["--workers", "1", "--preload", "--fork-hooks"] },
        script: { c in
            try c.run.control(.daemonize)
            c.step("The master's child called Fork.daemon(): before (quiesce), fork, setsid, fork, child (rebuild); the daemon traces 3 jobs.")
            var daemon: pid_t = 0
            try c.run.waitUntil("the daemon to exit", within: 3_000) {
                let o = try c.observe()
                guard let start = o.of(.processStart).first(where: { ProcessRole(rawValue: $0.a1) == .daemon }) else { return false }
                daemon = start.pid
                return !o.of(.processExit, pid: daemon).isEmpty
            }
            try c.run.stopGracefully()
            let o = try c.observe()
            let stages = o.hookStages(daemon)
            c.step("The daemon ran the child hook (stages \(stages.map(\.name))) and its \(o.spansAtAgent(from: daemon)) spans reached the agent.")
            c.check("daemon ran the child stage", stages.contains(.child), "\(stages.map(\.name))")
            c.check("daemon ran no parent stage", !stages.contains(.parent), "\(stages.map(\.name))")
            let accepted = Int(o.of(.writerGauge, pid: daemon).last?.a1 ?? 0)
            c.check("daemon traced spans", accepted > 0, "\(accepted) accepted by its writer")
            c.expectEqual("daemon spans at the agent = accepted by its writer", o.spansAtAgent(from: daemon), accepted)
        })

    static let refork = Scenario(
        name: "refork",
        summary: "Puma's fork_worker: a new worker is forked from worker 0 (not the master) through the hooks.",
        mechanism: ddtrace + "; any process can fork, so every process runs the same three stages",
        sabotage: "fork the new worker from the master with a raw fork() (fork-unsafe) and detection off: no child of worker 0 exists, so the check fails",
        serve: { sabotaged in ["--profile", "puma", "--workers", "1", "--preload", "--fork-hooks"] + (sabotaged ? ["--no-detect-forks"] : []) },
        script: { c in
            guard let worker = try c.run.processes().first(where: { $0.role == "worker" }) else { throw ScenarioError("no worker") }
            if c.sabotaged {
                try c.run.control(.forkUnsafe)
            } else {
                try c.run.control(.fork(pid: worker.pid, start: worker.start))
            }
            c.step("Worker \(worker.pid) forked a new worker: its before hook quiesced its exporter, parent resumed it, child rebuilt it.")
            try c.run.waitUntil("a second worker", within: 3_000) { try c.run.processes().filter { $0.role == "worker" }.count >= 2 }
            let o = try serveAndStop(c, requests: 40)
            let children = o.of(.forkChild).filter { $0.a0 == UInt64(UInt32(bitPattern: worker.pid)) }
            c.expectEqual("children forked from worker 0 (fork.child naming it)", children.count, 1)
            c.check("worker 0 ran before and parent", Set(o.hookStages(worker.pid)).isSuperset(of: [.before, .parent]), "\(o.hookStages(worker.pid).map(\.name))")
            c.expectEqual("unique spans at the agent = accepted", o.stat("unique_spans"), c.made)
        })

    static let closeDeregisters = Scenario(
        name: "close-deregisters",
        summary: "Closing an exporter removes its fork hooks (handle found) so a later fork runs none of them.",
        mechanism: "dd-trace-rb #5835: the exporter's fork hooks live as long as the exporter; close() deregisters, idempotently",
        sabotage: "SIGKILL the workers instead of QUIT: nothing is closed, so the check fails",
        serve: { _ in ["--workers", "2", "--preload", "--fork-hooks"] },
        script: { c in
            c.made = try c.run.requests(10)
            if c.sabotaged {
                for worker in try c.run.processes() where worker.role == "worker" { _ = try? ProcessControl.send(SIGKILL, to: worker.pid) }
            }
            c.step("QUIT: every worker closes its exporter at exit; close() removes the hooks it registered.")
            try c.run.stopGracefully()
            let o = try c.observe()
            // Workers inherit the master's registrations (the preloaded exporter's hooks) across fork.
            let inherited = o.master.map { o.of(.hookRegistered, pid: $0).count } ?? 0
            c.check("the preloaded exporter registered fork hooks in the master", inherited > 0, "\(inherited) hook.registered")
            for pid in o.workers {
                let registered = inherited + o.of(.hookRegistered, pid: pid).count
                let removed = o.of(.hookRemoved, pid: pid).filter { $0.a2 != 0 }.count
                let closed = o.of(.transportClose, pid: pid).count
                c.check("worker \(pid): transport closed", closed >= 1, "\(closed) transport.close")
                c.check("worker \(pid): every hook it registered was removed", removed == registered, "registered (inherited + own) \(registered), removed (found) \(removed)")
            }
        })

    static let agentOutage = Scenario(
        name: "agent-outage",
        summary: "The agent answers 500 for a while, then recovers: sends fail and are retried; nothing is lost; duplicates are shown.",
        mechanism: "dd-trace-rb #5835: a failed send is not a lost payload; every span ends sent, re-queued or dropped with a counted reason",
        sabotage: "the outage never ends: spans never arrive, so the check fails",
        serve: { _ in ["--workers", "1", "--preload", "--fork-hooks"] },
        script: { c in
            try c.run.agentControl(c.sabotaged ? "/control/fault?kind=500" : "/control/fault?kind=500&count=3")
            c.made = try c.run.requests(20)
            c.step("The agent answers HTTP 500 to the next traces requests; the writer keeps the spans and retries.")
            try? c.run.waitUntil("recovery", within: 2_500) { try c.observe().stat("unique_spans") == c.made }
            try c.run.stopGracefully()
            let o = try c.observe()
            let failed = o.of(.sendComplete).filter { $0.a1 == 500 }.count
            c.step("\(failed) sends got 500; after recovery \(o.stat("unique_spans")) of \(c.made) spans arrived, \(o.stat("duplicate_spans")) of them more than once (the agent counted a 500'd payload).")
            c.check("sends answered 500", failed >= 1, "\(failed)")
            c.expectEqual("unique spans at the agent = accepted (nothing lost)", o.stat("unique_spans"), c.made)
            let dropped = o.of(.spanDropped).map(\.a0).reduce(0, +)
            c.expectEqual("spans dropped", dropped, 0)
        })

    static let forkFailure = Scenario(
        name: "fork-failure",
        summary: "fork() fails (EAGAIN from a pids cgroup limit): fork.failed is published, parent still runs, the master keeps serving, the next fork succeeds.",
        mechanism: "dd-trace-rb #5835: after_fork_in_parent runs even when the fork did not happen, so nothing quiesced stays quiesced (here without preload: the failure path itself, not a resumed exporter)",
        sabotage: "no pids limit: the fork succeeds, so the check fails",
        serve: { _ in ["--workers", "1", "--no-preload", "--fork-hooks"] },
        script: { c in
            guard let master = try c.run.processes().first(where: { $0.role == "master" }) else { throw ScenarioError("no master in the table") }
            // A pids cgroup (v1) around the master: pids.max = its current task count, so its next fork() gets EAGAIN.
            let limit = try PidsLimit(around: master.pid)
            defer { limit.remove() }
            if !c.sabotaged { try limit.freeze() }
            var refused = ""
            do { try c.run.control(.fork(pid: master.pid, start: master.start)) } catch { refused = "\(error)" }
            c.step("The master asked for a worker with pids.max at its current task count: fork() returned EAGAIN; Fork published fork.failed, ran the parent stage (this master, without preload, has no exporter to resume) and threw; the master logged it and kept serving.")
            try limit.lift()
            try c.run.control(.fork(pid: master.pid, start: master.start))
            try c.run.waitUntil("the second worker", within: 3_000) { try c.run.processes().filter { $0.role == "worker" }.count >= 2 }
            c.step("The limit is lifted: the same request forks a worker; nothing was left quiesced or locked.")
            let o = try serveAndStop(c, requests: 20)
            let failed = o.of(.forkFailed, pid: master.pid)
            // The master's own loop may retry the worker the request asked for while the limit holds: each try fails the same way.
            c.check("fork.failed in the master", failed.count >= 1, "\(failed.count) fork.failed")
            c.check("every failure is EAGAIN", failed.allSatisfy { Errno(rawValue: Int32(truncatingIfNeeded: $0.a0)) == .resourceTemporarilyUnavailable },
                    failed.map { Errno(rawValue: Int32(truncatingIfNeeded: $0.a0)).name }.joined(separator: ","))
            c.check("the control request reported the failure", refused.contains("fork failed"), refused.isEmpty ? "it succeeded" : refused)
            let failedAt = failed.first?.time ?? .max
            let after = o.of(.workerSpawned, pid: master.pid).filter { $0.time > failedAt }.count
            c.check("workers forked after the failure", after >= 1, "\(after) worker.spawned after fork.failed (the server also re-forks the worker the failed request asked for)")
            c.expectEqual("unique spans at the agent = accepted", o.stat("unique_spans"), c.made)
        })
}
