import ArgumentParser
import Dashboard
import DemoServer
import EventRing
import Glibc
import Posix

/// The default command. Until the dashboard lands it shows the ring at work
/// on real processes: a session and ring are created, a spawned demo host
/// really forks workers (one through a raw fork() that no hook saw), every
/// process publishes, and the merged timeline is printed.
struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start the demo on embedded defaults (the default command).")

    @Option(help: "Workers the demo host forks.")
    var workers = 2

    @Flag(help: "Keep the session directory afterwards (default: removed).")
    var keep = false

    func run() throws {
        let session = try SessionDirectory.create()
        defer { if !keep { try? FileSystem.removeTree(session.path) } }
        let ring = try Ring.create(at: session.ringPath)
        ring.writer.publish(.processStart, 0, ProcessRole.tool.rawValue, ring.writer.intern("forkscope demo"))

        // The process that forks is a spawned one: this process may one day
        // run the TUI, which must never fork (DESIGN.md).
        let executable = try ProcessControl.currentExecutablePath()
        let host = try Spawn.run(executable, arguments: ["forkscope", "demo-host", session.ringPath, String(workers)])
        let status = try ProcessControl.wait(for: host)?.status
        ring.writer.publish(.workerExited, UInt64(host), status?.exitArgument ?? 0, status?.signalArgument ?? 0)

        let reader = try RingReader(path: session.ringPath)
        var events: [Event] = []
        let accounting = try reader.readNew(into: &events)
        RingReader.merge(&events)
        let text = EventText(header: reader.header) { reader.string(at: $0) }
        print("session \(session.path)\(keep ? " (kept)" : "")")
        for event in events { print(text.line(event)) }
        for lane in accounting.lanes where lane.headAdvance > 0 { print(EventText.accountingLine(lane)) }
    }
}

/// The forking half of the demo, in its own process.
struct DemoHost: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "demo-host", shouldDisplay: false)

    @Argument var ring: String
    @Argument var workers: Int

    func run() throws {
        let writer = try Ring.open(at: ring).writer
        writer.publish(.processStart, UInt64(getppid()), ProcessRole.master.rawValue, writer.intern("demo master"))
        var children: [(pid_t, Int)] = []
        for index in 0..<workers {
            let stage = writer.intern("demo fork")
            writer.publish(.forkBeforeStart, 0, ForkPolicy.drain.rawValue)
            let started = Clock.monotonicNanoseconds()
            let pid = fork()
            if pid == 0 {
                // The ring's pthread_atfork handler bumped the fork counter:
                // this first publish claims a fresh lane for the child.
                writer.publish(.forkChild, UInt64(getppid()), 1)
                writer.publish(.processStart, UInt64(getppid()), ProcessRole.worker.rawValue, writer.intern("demo worker \(index)"))
                writer.publish(.hookRun, ForkStage.child.rawValue, stage, Outcome.ok.rawValue, 0)
                writer.publish(.processExit, 0, 0)
                _exit(0)
            }
            guard pid > 0 else { throw SystemError("fork", .current) }
            writer.publish(.forkParent, UInt64(pid), (Clock.monotonicNanoseconds() - started) / 1000)
            writer.publish(.workerSpawned, UInt64(pid), UInt64(index))
            children.append((pid, index))
        }
        for (pid, index) in children {
            let status = try ProcessControl.wait(for: pid)?.status
            writer.publish(.workerExited, UInt64(pid), status?.exitArgument ?? 0, status?.signalArgument ?? 0, UInt64(index))
        }
        writer.publish(.processExit, 0, 0)
    }
}
