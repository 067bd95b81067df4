import CPosix
import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// The fork scenarios of ForkSafetyTests. Each builds an exporter core
/// (a worker runtime and a fork participant), forks, and checks: the child
/// reports the first failed check through its exit code (`ChildStep`), the
/// parent prints `ok key=value…` or `fail STEP WHY` and exits with the step.
/// Every event goes into the ring the test reads afterwards.
///
///   fork-job mid|between     fork while a worker is mid-job / between jobs
///   fork-many COUNT          COUNT consecutive Fork.fork() with busy workers
///   fork-daemon FIFO         Fork.daemon(); the daemon reports into FIFO
///   fork-unhooked            a raw fork(): the child detects it and recovers
///   fork-unhooked-locked COUNT  COUNT raw forks while a thread keeps taking the runtime's lock
///   fork-unhooked-writer     a raw fork() with detection off, turned on in the child: the writer's next trace recovers
///   fork-eagain              an injected fork() failing with EAGAIN
///   fork-policy drain|cancel|drain:T   a send in flight when the fork starts
///   fork-late-send cancel|drain:T   the send begins only once `before` is past its cancel/drain step
///   fork-census              prints both pids, waits on stdin for the test's census
///   fork-deferred            workers start on first use after a fork, at once when work waits
///   fork-eventfd             the child sets the shared cancellation eventfd aside; its first send takes its own
enum ForkScenarios {
    static func run(_ mode: String, writer: RingWriter, arguments: [String]) -> Never {
        Telemetry.install(writer)
        // Last resort: a hung scenario ends itself (the test kills it sooner).
        alarm(30)
        let argument = arguments.first ?? ""
        switch mode {
        case "fork-job": forkDuringJob(midJob: argument != "between")
        case "fork-many": manyForksWithBusyWorkers(count: Int(argument) ?? 200)
        case "fork-daemon": daemon(reportingInto: argument)
        case "fork-unhooked": unhookedFork()
        case "fork-unhooked-locked": unhookedForksWhileLocked(count: Int(argument) ?? 20)
        case "fork-unhooked-writer": unhookedForkOfAWriter()
        case "fork-eagain": failedFork()
        case "fork-policy":
            guard let policy = SendPolicy(parsing: argument) else { fail(64, "unknown policy \(argument)") }
            sendInFlight(policy: policy)
        case "fork-late-send":
            guard let policy = SendPolicy(parsing: argument), policy != .drain else { fail(64, "policy cancel or drain:T, not \(argument)") }
            sendBeginningLate(policy: policy)
        case "fork-census": census()
        case "fork-deferred": deferredStart()
        case "fork-eventfd": childCancellationEventFD()
        default: fail(64, "unknown mode \(mode)")
        }
        exit(0)
    }

    private static func exporter(policy: SendPolicy = .drain, workers: Int = 2) -> (WorkerRuntime, ForkParticipant) {
        let runtime = WorkerRuntime(name: "exp", workers: workers)
        guard let participant = try? ForkParticipant(name: "exporter", policy: policy, runtime: runtime) else {
            fail(92, "ForkParticipant: \(Errno.current)")
        }
        runtime.start()
        return (runtime, participant)
    }

    private static func forkOrFail(_ step: Int32) -> ForkOutcome {
        do { return try Fork.fork() } catch { fail(step, "Fork.fork(): \(error)") }
    }

    /// The child's side of every hooked fork: Fork.generation 1, a fresh
    /// runtime at generation 2, running, with none of the parent's queued
    /// jobs, whose workers run a new job.
    private static func checkFreshRuntimeInChild(_ runtime: WorkerRuntime) {
        childRequire(Fork.generation == 1, .forkGeneration)
        childRequire(runtime.generation == 2, .runtimeGeneration)
        childRequire(runtime.state == .running, .runtimeNotRunning)
        childRequire(runtime.queuedJobs == 0, .parentJobQueued)
        childRequire(runtimeRunsAJob(runtime), .noJob)
        childRequire(allWorkersRunTogether(runtime), .noJob)
    }

    // MARK: fork-job

    private static func forkDuringJob(midJob: Bool) {
        let runtime = WorkerRuntime(name: "exp", workers: 2)
        let stateWhenQueued = AtomicWord()
        let queuedJobRan = Pipe()
        if !midJob {
            // Registered before the participant, so its `before` runs after
            // the participant's (newest first): the runtime is quiesced then.
            // The job it queues is the parent's: it runs after resume, and
            // never in the child.
            AtForkRegistry.shared.register(.before, name: "queue-while-quiesced") {
                stateWhenQueued.store(runtime.state == .quiesced ? 1 : 2)
                runtime.submit { queuedJobRan.signal(UInt8(truncatingIfNeeded: getpid())) }
            }
        }
        guard let participant = try? ForkParticipant(name: "exporter", policy: .drain, runtime: runtime) else { fail(92, "participant") }
        runtime.start()
        require(runtimeRunsAJob(runtime), 1, "the runtime did not run a job before the fork")

        let jobFinished = AtomicWord()
        if midJob {
            let started = Pipe()
            runtime.submit {
                ScenarioMark.jobStarted.publish()
                started.signal()
                // Stay mid-job until the fork's `before` waits to join us.
                let quiescing = spin(until: { runtime.state == .quiescing })
                jobFinished.store(quiescing ? 1 : 2)
                ScenarioMark.jobEnded.publish()
            }
            require(started.next() != nil, 2, "the job did not start")
        }

        switch forkOrFail(3) {
        case .child:
            enterForkedChild()
            childRequire(!midJob || jobFinished.load() == 1, .jobInProgressAtFork)
            checkFreshRuntimeInChild(runtime)
            _exit(0)
        case .parent(let child):
            require(!midJob || jobFinished.load() == 1, 4, "before did not wait for the job in progress (\(jobFinished.load()))")
            require(runtime.generation == 1 && runtime.state == .running, 5, "the parent's runtime did not resume: \(runtime.state) at \(runtime.generation)")
            if !midJob {
                require(stateWhenQueued.load() == 1, 6, "the runtime was not quiesced when a later before hook ran")
                require(queuedJobRan.next() == UInt8(truncatingIfNeeded: getpid()), 7, "the job queued while quiesced did not run in the parent")
            }
            require(runtimeRunsAJob(runtime), 8, "the resumed runtime did not run a job")
            expectChildSuccess(child, step: 9)
            require(midJob || queuedJobRan.isEmpty, 10, "the parent's queued job also ran in the child")
            report("ok parent=\(getpid()) child=\(child)")
        }
        withExtendedLifetime(participant) {}
    }

    // MARK: fork-many

    private static func manyForksWithBusyWorkers(count: Int) {
        let (runtime, participant) = exporter(workers: 2)
        let jobsDone = AtomicWord(), stop = AtomicWord()
        // A job that works ~50 µs and queues its successor: both workers
        // stay busy, so forks land mid-job.
        func busyJob() -> WorkerRuntime.Job {
            {
                let end = Clock.monotonicNanoseconds() + 50_000
                while Clock.monotonicNanoseconds() < end {}
                jobsDone.add()
                if stop.load() == 0 { runtime.submit(busyJob()) }
            }
        }
        runtime.submit(busyJob())
        runtime.submit(busyJob())
        require(spin(until: { jobsDone.load() >= 4 }), 1, "the busy jobs did not run")
        let jobsBefore = jobsDone.load()
        let started = Clock.monotonicNanoseconds()
        for index in 0..<count {
            switch forkOrFail(2) {
            case .child:
                enterForkedChild()
                checkFreshRuntimeInChild(runtime)
                _exit(0)
            case .parent(let child):
                expectChildSuccess(child, step: 3, "child of fork \(index)")
                require(runtime.state == .running, 4, "fork \(index): runtime \(runtime.state)")
            }
        }
        let milliseconds = (Clock.monotonicNanoseconds() - started) / 1_000_000
        let jobs = jobsDone.load() - jobsBefore
        stop.store(1)
        require(jobs > 0, 5, "the workers did no work during the forks")
        report("ok forks=\(count) ms=\(milliseconds) jobs=\(jobs)")
        withExtendedLifetime(participant) {}
    }

    // MARK: fork-daemon

    private static func daemon(reportingInto fifo: String) {
        let (runtime, participant) = exporter(workers: 2)
        require(runtimeRunsAJob(runtime), 1, "the runtime did not run a job before daemonizing")
        let original = getpid()
        report("daemonizing pid=\(original)")
        do { _ = try Fork.daemon(logPath: fifo) } catch { fail(2, "Fork.daemon(): \(error)") }
        // Only the daemon gets here; its stdout and stderr are the FIFO. No
        // parent-death signal: its parent (the intermediate) exits at once.
        alarm(10)
        var step: Int32 = 0
        if Fork.generation != 1 { step = ChildStep.forkGeneration.rawValue }
        else if runtime.generation != 2 { step = ChildStep.runtimeGeneration.rawValue }
        else if runtime.state != .running { step = ChildStep.runtimeNotRunning.rawValue }
        else if getsid(0) == getpid() || getppid() == original { step = ChildStep.daemonSession.rawValue }
        else if !runtimeRunsAJob(runtime) { step = ChildStep.noJob.rawValue }
        ScenarioMark.daemonReady.publish(UInt64(step))
        report("daemon pid=\(getpid()) session=\(getsid(0)) step=\(step)")
        withExtendedLifetime(participant) {}
        _exit(step)
    }

    // MARK: fork-unhooked

    /// After a hooked fork the runtime's threads start on first use — in
    /// the child always, in the parent unless the owner has work waiting —
    /// and a raw fork of a process whose threads were deferred starts
    /// nothing until the fork is detected.
    private static func deferredStart() {
        let ownerHasWork = AtomicWord()
        let runtime = WorkerRuntime(name: "exp", workers: 1, tickEvery: 1000, tick: {}, hasWork: { ownerHasWork.load() != 0 })
        guard let participant = try? ForkParticipant(name: "exporter", policy: .drain, runtime: runtime) else { fail(92, "ForkParticipant: \(Errno.current)") }
        runtime.start()
        require(runtimeRunsAJob(runtime), 1, "the runtime did not run a job before the fork")
        func workerThreads() -> Int { ownThreadNames().values.filter { $0.hasPrefix("fks-exp") }.count }

        // 1. Nothing waits: no thread starts in either process's fork stage.
        switch forkOrFail(2) {
        case .child:
            childRequire(runtime.state == .running && runtime.threadsDeferred && runtime.threadsExistHere, .threadsNotDeferred)
            childRequire(workerThreads() == 0, .threadsNotDeferred)
            childRequire(runtimeRunsAJob(runtime), .noJob)
            childRequire(!runtime.threadsDeferred && workerThreads() == 1, .noJob)
            _exit(0)
        case .parent(let child):
            require(runtime.threadsDeferred, 3, "the parent started its workers at resume with nothing waiting")
            require(workerThreads() == 0, 4, "the parent has \(workerThreads()) worker threads right after the fork")
            expectChildSuccess(child, step: 5)
        }
        // First use: `startIfDeferred` (a writer's enqueue) starts them.
        runtime.startIfDeferred()
        require(!runtime.threadsDeferred, 6, "startIfDeferred did not start the worker")
        // (A worker names itself before its first job.)
        require(runtimeRunsAJob(runtime) && workerThreads() == 1, 7, "the parent's runtime did not run a job on one worker")

        // 2. The owner has work (e.g. buffered spans): the parent's
        // workers start in the `parent` stage already.
        ownerHasWork.store(1)
        switch forkOrFail(8) {
        case .child:
            childRequire(runtime.threadsDeferred, .threadsNotDeferred)
            _exit(0)
        case .parent(let child):
            require(!runtime.threadsDeferred, 9, "work waited, yet the parent's worker did not start at resume")
            expectChildSuccess(child, step: 10)
        }

        // 3. A raw fork of a process whose workers are deferred: the child's
        // flag is the parent's, and must start nothing until detection.
        ownerHasWork.store(0)
        switch forkOrFail(11) {
        case .child: _exit(0)
        case .parent(let child): expectChildSuccess(child, step: 12)
        }
        require(runtime.threadsDeferred, 13, "the parent's worker is not deferred")
        let raw = Glibc.fork()
        if raw == 0 {
            enterForkedChild()
            runtime.startIfDeferred()
            childRequire(workerThreads() == 0 && !runtime.threadsExistHere, .threadsNotDeferred)
            childRequire(participant.recoverFromUnhookedFork(), .recoveryNotDetected)
            childRequire(runtime.generation == 2 && runtime.threadsDeferred, .runtimeGeneration)
            childRequire(runtimeRunsAJob(runtime), .noJob)
            _exit(0)
        }
        require(raw > 0, 14, "fork(): \(Errno.current)")
        expectChildSuccess(raw, step: 15)
        report("ok parent=\(getpid())")
    }

    /// The cancellation eventfd is shared with the parent after fork():
    /// the child stops using it in its fork stage, and its first send
    /// takes a fresh one that a cancel there wakes (and the parent's does
    /// not, nor does the child drain the parent's).
    private static func childCancellationEventFD() {
        let (_, participant) = exporter(workers: 1)
        let source = participant.cancellation
        let inherited = source.wakeDescriptor.rawValue
        require(inherited >= 0, 1, "the parent has no cancellation eventfd")
        switch forkOrFail(2) {
        case .child:
            childRequire(source.wakeDescriptor.rawValue == -1, .inheritedEventFD)
            let token = source.begin()
            let fresh = source.wakeDescriptor.rawValue
            childRequire(fresh >= 0, .noFreshEventFD)
            // The inherited descriptor is closed (its number may be the
            // fresh one's, reused): it is no longer the parent's object.
            childRequire(fresh == inherited || fcntl(inherited, F_GETFD) == -1, .inheritedEventFD)
            childRequire(source.cancelCurrent(reason: .operatorRequest), .cancelDidNotWake)
            var fds = [pollfd(fd: fresh, events: Int16(POLLIN), revents: 0)]
            childRequire(poll(&fds, 1, 2000) == 1, .cancelDidNotWake)
            childRequire(source.end(token) == .operatorRequest, .cancelDidNotWake)
            _exit(0)
        case .parent(let child):
            expectChildSuccess(child, step: 3)
            // The parent's own descriptor is untouched and still works.
            require(source.wakeDescriptor.rawValue == inherited && fcntl(inherited, F_GETFD) != -1, 4, "the parent's eventfd changed")
            let token = source.begin()
            require(source.cancelCurrent(reason: .shutdown), 5, "the parent's cancel found no send")
            var fds = [pollfd(fd: inherited, events: Int16(POLLIN), revents: 0)]
            require(poll(&fds, 1, 2000) == 1, 6, "the parent's cancel did not wake its eventfd")
            require(source.end(token) == .shutdown, 7, "the parent's send did not end cancelled")
        }
        report("ok parent=\(getpid())")
    }

    private static func unhookedFork() {
        let (runtime, participant) = exporter(workers: 2)
        require(runtimeRunsAJob(runtime), 1, "the runtime did not run a job before the fork")
        let child = Glibc.fork()
        if child == 0 {
            enterForkedChild()
            // The exporter's first use after a fork nobody hooked.
            childRequire(participant.recoverFromUnhookedFork(), .recoveryNotDetected)
            childRequire(!participant.recoverFromUnhookedFork(), .recoveredTwice)
            childRequire(runtime.generation == 2, .runtimeGeneration)
            childRequire(runtime.state == .running, .runtimeNotRunning)
            childRequire(runtimeRunsAJob(runtime), .noJob)
            childRequire(participant.acquireSendPermit(), .sendPermitRefused)
            participant.releaseSendPermit()
            _exit(0)
        }
        require(child > 0, 2, "fork(): \(Errno.current)")
        require(!participant.recoverFromUnhookedFork(), 3, "the parent detected a fork of its own")
        expectChildSuccess(child, step: 4)
        require(runtimeRunsAJob(runtime), 5, "the parent's runtime did not run a job")
        report("ok parent=\(getpid()) child=\(child)")
    }

    /// A trace writer, forked raw with fork detection off (the seed's
    /// failure): its traces in the child recover nothing until detection is
    /// turned on there (`forkscope_set_fork_detection` at run time), and
    /// then the next trace recovers. Nothing is sent (the agent address
    /// refuses connections); the child only checks where the threads are.
    private static func unhookedForkOfAWriter() {
        let writer: TraceWriter
        do { writer = try TraceWriter(endpoint: AgentEndpoint(parsing: "http://127.0.0.1:9/"), policy: .drain, registry: AtForkRegistry()) } catch {
            fail(92, "TraceWriter: \(error)")
        }
        writer.transport.participant.detectsUnhookedForks = false
        require(runtimeRunsAJob(writer.runtime), 1, "the writer's runtime did not run a job before the fork")
        let child = Glibc.fork()
        if child == 0 {
            enterForkedChild()
            let trace = [Span(traceID: 1, spanID: 1, parentID: 0, name: "raw", resource: "fork", service: "writer", type: "custom", start: 1, duration: 1, error: 0)]
            writer.enqueue(trace)
            childRequire(!writer.runtime.threadsExistHere, .recoveredWithDetectionOff)
            writer.transport.participant.detectsUnhookedForks = true
            writer.enqueue(trace)
            childRequire(writer.runtime.threadsExistHere, .recoveryNotDetected)
            childRequire(writer.runtime.generation == 2, .runtimeGeneration)
            _exit(0)
        }
        require(child > 0, 2, "fork(): \(Errno.current)")
        expectChildSuccess(child, step: 3)
        report("ok parent=\(getpid()) child=\(child)")
    }

    /// A raw fork() copies a lock another thread holds, held, into a child
    /// where that thread does not exist. Here a thread keeps taking the
    /// runtime's lock (reading `queuedJobs`) while main forks without hooks,
    /// so children inherit it held: recovery must re-initialise before it
    /// takes any inherited lock.
    private static func unhookedForksWhileLocked(count: Int) {
        let (runtime, participant) = exporter(workers: 1)
        let stop = AtomicWord()
        let poller = HostThread(name: "fks-poller") {
            while stop.load() == 0 { _ = runtime.queuedJobs }
        }
        for index in 0..<count {
            let child = Glibc.fork()
            if child == 0 {
                enterForkedChild()
                childRequire(participant.recoverFromUnhookedFork(), .recoveryNotDetected)
                childRequire(runtime.generation == 2, .runtimeGeneration)
                childRequire(runtimeRunsAJob(runtime), .noJob)
                _exit(0)
            }
            require(child > 0, 1, "fork(): \(Errno.current)")
            expectChildSuccess(child, step: 2, within: 2000, "child of raw fork \(index)")
        }
        stop.store(1)
        poller.join()
        report("ok parent=\(getpid()) forks=\(count)")
        withExtendedLifetime(participant) {}
    }

    // MARK: fork-eagain

    private static func failedFork() {
        let (runtime, participant) = exporter(workers: 2)
        let calls = AtomicWord()
        do {
            _ = try Fork.fork(using: {
                calls.add()
                fks_set_errno(EAGAIN)
                return -1
            })
            fail(1, "Fork.fork() did not throw")
        } catch .forkFailed(let errno) {
            require(errno == Errno(rawValue: EAGAIN), 2, "forkFailed(\(errno)), not EAGAIN")
        } catch {
            fail(3, "Fork.fork() threw \(error)")
        }
        require(calls.load() == 1, 4, "the fork function ran \(calls.load()) times")
        // `parent` ran: nothing the participant's `before` took stays taken.
        require(participant.sendLock.tryLock(), 5, "the send lock is still held")
        participant.sendLock.unlock()
        require(!participant.isQuiescing, 6, "the participant is still quiescing")
        require(participant.acquireSendPermit(), 7, "a send cannot start")
        participant.releaseSendPermit()
        require(runtime.state == .running && runtime.generation == 1, 8, "runtime \(runtime.state) at \(runtime.generation)")
        require(runtimeRunsAJob(runtime), 9, "the runtime did not run a job after the failed fork")

        switch forkOrFail(10) {
        case .child:
            enterForkedChild()
            checkFreshRuntimeInChild(runtime)
            _exit(0)
        case .parent(let child):
            expectChildSuccess(child, step: 11)
            require(runtimeRunsAJob(runtime), 12, "the runtime did not run a job after the real fork")
            report("ok parent=\(getpid()) child=\(child)")
        }
    }

    // MARK: fork-policy

    /// Where a send thread leaves its result (a forked child inherits it).
    final class SendRecord: @unchecked Sendable {
        let began = AtomicWord(), ended = AtomicWord(), outcome = AtomicWord(), reason = AtomicWord(), sequence = AtomicWord()

        static let refused: UInt64 = 9

        static func code(_ outcome: CancellationToken.WaitOutcome?) -> UInt64 {
            switch outcome {
            case .ready: 1
            case .cancelled: 2
            case .timedOut: 3
            case nil: 4
            }
        }

        var outcomeName: String {
            switch outcome.load() {
            case 1: "ready"
            case 2: "cancelled"
            case 3: "timed_out"
            case SendRecord.refused: "refused"
            default: "error"
            }
        }

        var reasonName: String { CancelReason(rawValue: reason.load())?.name ?? "none" }
    }

    /// One send, as a transport does it: permit, begin, wait on the socket
    /// with the token, end, release.
    static func send(_ participant: ForkParticipant, on socket: Socket, record: SendRecord, deadline milliseconds: UInt64,
                     beforeBegin: () -> Void = {}, began: Pipe? = nil) {
        guard participant.acquireSendPermit() else {
            record.outcome.store(SendRecord.refused)
            began?.signal()
            return
        }
        beforeBegin()
        let token = participant.cancellation.begin()
        record.sequence.store(token.sequence)
        record.began.store(1)
        ScenarioMark.sendBegan.publish(token.sequence)
        began?.signal()
        let outcome = try? token.wait(for: socket.fileDescriptor, events: Int16(POLLIN), before: .after(milliseconds: milliseconds))
        let reason = participant.cancellation.end(token)
        record.outcome.store(SendRecord.code(outcome))
        record.reason.store(reason?.rawValue ?? 0)
        ScenarioMark.sendEnded.publish(token.sequence, SendRecord.code(outcome))
        record.ended.store(1)
        participant.releaseSendPermit()
    }

    /// The child's side of a fork that had a send in flight: the send ended
    /// before the fork, the send lock is fresh, a new send starts clean.
    private static func checkSendingInChild(_ participant: ForkParticipant, _ record: SendRecord) {
        childRequire(record.ended.load() == 1, .sendNotEnded)
        childRequire(!participant.isQuiescing, .quiescing)
        childRequire(participant.acquireSendPermit(), .sendPermitRefused)
        guard let fresh = try? Socket.pair() else { _exit(ChildStep.setup.rawValue) }
        let token = participant.cancellation.begin()
        let outcome = try? token.wait(for: fresh.0.fileDescriptor, events: Int16(POLLIN), before: .after(milliseconds: 20))
        childRequire(outcome == .timedOut && participant.cancellation.end(token) == nil, .sendCancelledInChild)
        participant.releaseSendPermit()
    }

    private static func sendInFlight(policy: SendPolicy) {
        let (runtime, participant) = exporter(policy: policy, workers: 1)
        guard let (agent, socket) = try? Socket.pair() else { fail(93, "socketpair") }
        let record = SendRecord()
        let began = Pipe()
        let sender = HostThread(name: "fks-sender") {
            send(participant, on: socket, record: record, deadline: 5000, began: began)
        }
        require(began.next() != nil && record.began.load() == 1, 1, "the send did not begin (\(record.outcomeName))")
        var answering: HostThread? = nil
        if policy == .drain {
            // The agent answers only once the fork's `before` waits for
            // the send (drain: a condition wait): the fork must wait for it.
            answering = HostThread(name: "fks-agent") {
                _ = spin(until: { participant.isQuiescing && threadWaitsInFutex(getpid()) })
                ScenarioMark.agentAnswered.publish()
                try? agent.fileDescriptor.writeAll("r")
            }
        }
        let forkStarted = Clock.monotonicNanoseconds()
        switch forkOrFail(2) {
        case .child:
            enterForkedChild()
            checkSendingInChild(participant, record)
            checkFreshRuntimeInChild(runtime)
            _exit(0)
        case .parent(let child):
            let micros = (Clock.monotonicNanoseconds() - forkStarted) / 1000
            sender.join()
            answering?.join()
            require(record.ended.load() == 1, 3, "the send had not ended")
            let expected: (outcome: String, reason: String)
            switch policy {
            case .drain: expected = ("ready", "none")
            case .cancel: expected = ("cancelled", "fork")
            case .drainThenCancel: expected = ("cancelled", "drain_timeout")
            }
            require(record.outcomeName == expected.outcome && record.reasonName == expected.reason, 4,
                    "send \(record.outcomeName) (\(record.reasonName)), expected \(expected.outcome) (\(expected.reason))")
            if case .drainThenCancel(let milliseconds) = policy {
                require(micros >= milliseconds * 1000, 5, "the fork did not wait \(milliseconds) ms for the send (\(micros) µs)")
            }
            require(micros < 2_000_000, 6, "the fork took \(micros) µs: it waited for the send's own deadline")
            require(participant.sendLock.tryLock(), 7, "the send lock is still held after parent")
            participant.sendLock.unlock()
            expectChildSuccess(child, step: 8)
            report("ok parent=\(getpid()) child=\(child) policy=\(policy) outcome=\(record.outcomeName) reason=\(record.reasonName) send=\(record.sequence.load()) fork_us=\(micros)")
        }
    }

    // MARK: fork-late-send

    /// A worker took the send permit just before the fork set `quiescing`,
    /// and begins its send only once `before` is past its cancel or drain
    /// step (while `before` joins the workers). Policy `cancel` must cancel
    /// that send too, `drain:T` give it T then cancel it: neither may wait
    /// for the whole send.
    private static func sendBeginningLate(policy: SendPolicy) {
        let (runtime, participant) = exporter(policy: policy, workers: 1)
        guard let (_, socket) = try? Socket.pair() else { fail(93, "socketpair") }
        let record = SendRecord()
        let permitted = Pipe()
        runtime.submit {
            send(participant, on: socket, record: record, deadline: 3000, beforeBegin: {
                permitted.signal()
                // `before` joins the workers after its cancel step.
                _ = spin(until: { runtime.state == .quiescing })
            })
        }
        require(permitted.next() != nil, 1, "the worker did not take the send permit (\(record.outcomeName))")
        let forkStarted = Clock.monotonicNanoseconds()
        switch forkOrFail(2) {
        case .child:
            enterForkedChild()
            checkSendingInChild(participant, record)
            _exit(0)
        case .parent(let child):
            let micros = (Clock.monotonicNanoseconds() - forkStarted) / 1000
            require(record.ended.load() == 1, 3, "the send had not ended")
            let reason = policy == .cancel ? "fork" : "drain_timeout"
            require(record.outcomeName == "cancelled" && record.reasonName == reason, 4,
                    "send \(record.outcomeName) (\(record.reasonName)) after \(micros) µs, expected cancelled (\(reason))")
            if case .drainThenCancel(let milliseconds) = policy {
                require(micros >= milliseconds * 1000, 5, "the fork did not give the send \(milliseconds) ms (\(micros) µs)")
            }
            require(micros < 1_000_000, 5, "the fork took \(micros) µs: it waited for the send's own deadline")
            expectChildSuccess(child, step: 6)
            report("ok parent=\(getpid()) child=\(child) outcome=\(record.outcomeName) reason=\(record.reasonName) fork_us=\(micros)")
        }
    }

    // MARK: fork-census

    /// Both processes, each with every worker running, wait while the test
    /// reads `/proc/<pid>/task/*/comm`; each also checks its own.
    private static func census() {
        let runtime = WorkerRuntime(name: "exp", workers: 2, tickEvery: 50) {}
        guard let participant = try? ForkParticipant(name: "exporter", policy: .drain, runtime: runtime) else { fail(92, "participant") }
        runtime.start()
        require(allWorkersRunTogether(runtime), 1, "the workers did not all run")
        let childReady = Pipe(), release = Pipe()
        switch forkOrFail(2) {
        case .child:
            enterForkedChild()
            childRequire(allWorkersRunTogether(runtime), .noJob)
            childRequire(onlyOurThreads(ownThreadNames()), .threadNames)
            childReady.signal()
            childRequire(release.next(within: 9000) != nil, .setup)
            _exit(0)
        case .parent(let child):
            require(allWorkersRunTogether(runtime), 3, "the resumed workers did not all run")
            let names = ownThreadNames()
            require(onlyOurThreads(names), 4, "parent threads: \(names)")
            require(childReady.next() != nil, 5, "the child did not get ready")
            report("census parent=\(getpid()) child=\(child)")
            var byte: UInt8 = 0
            let readable = (try? FileDescriptor.standardInput.poll(for: Int16(POLLIN), deadline: .after(milliseconds: 10_000))) ?? 0
            let read = readable == 0 ? 0 : ((try? withUnsafeMutableBytes(of: &byte) { try FileDescriptor.standardInput.read(into: $0) }) ?? 0)
            release.signal()
            require(read == 1, 6, "the test did not finish its census")
            expectChildSuccess(child, step: 7)
            report("ok parent=\(getpid()) child=\(child) threads=\(names.count)")
        }
        withExtendedLifetime(participant) {}
    }
}
