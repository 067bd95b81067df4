import CPosix
import Dashboard
import Glibc
import Posix
import Synchronization

/// Runs a `Controller`'s commands one at a time on a thread of its own, so
/// a command that blocks (a fork waiting for a drain can take seconds) never
/// freezes the screen. Results come back through `results()` after a
/// `SignalPipe` wake-up.
final class ControllerWorker: Sendable {
    private struct State {
        var queue: [ControlCommand] = []
        var results: [(ControlCommand, ControlResult)] = []
        var stopping = false
        var busy: ControlCommand?
    }

    private let controller: any Controller
    private let wake: SignalPipe
    private let state = Mutex(State())
    private let doorbell: (read: FileDescriptor, write: FileDescriptor)
    private let thread: Mutex<pthread_t?> = Mutex(nil)

    init(controller: any Controller, wake: SignalPipe) throws(SystemError) {
        self.controller = controller
        self.wake = wake
        doorbell = try FileDescriptor.pipe(flags: O_CLOEXEC | O_NONBLOCK)
        let box = Unmanaged.passRetained(self).toOpaque()
        var handle = pthread_t()
        let rc = pthread_create(&handle, nil, runControllerWorker, box)
        guard rc == 0 else {
            Unmanaged<ControllerWorker>.fromOpaque(box).release()
            throw SystemError("pthread_create", Errno(rawValue: rc))
        }
        thread.withLock { $0 = handle }
    }

    /// Queues `command`; returns at once.
    func submit(_ command: ControlCommand) {
        state.withLock { $0.queue.append(command) }
        ring()
    }

    /// Results since the last call, in completion order.
    func results() -> [(ControlCommand, ControlResult)] {
        state.withLock { state in
            defer { state.results.removeAll() }
            return state.results
        }
    }

    /// The command being carried out now, if any.
    var busy: ControlCommand? { state.withLock { $0.busy } }

    /// Stops after the command in progress (queued ones are dropped) and joins.
    func stop() {
        state.withLock { $0.stopping = true; $0.queue.removeAll() }
        ring()
        if let handle = thread.withLock({ t -> pthread_t? in defer { t = nil }; return t }) { pthread_join(handle, nil) }
        try? doorbell.read.close()
        try? doorbell.write.close()
    }

    private func ring() {
        var byte: UInt8 = 1
        _ = withUnsafeBytes(of: &byte) { try? doorbell.write.write($0) }
    }

    fileprivate func run() {
        // Signals (SIGWINCH above all) must reach the main thread, whose
        // poll they interrupt; this thread takes none.
        _ = try? Signals.block(.all)
        _ = "fks-tui-control".withCString { fks_set_thread_name($0) }  // named in /proc
        while true {
            let next: ControlCommand? = state.withLock { state in
                if state.stopping { return nil }
                if state.queue.isEmpty { return nil }
                let command = state.queue.removeFirst()
                state.busy = command
                return command
            }
            if let next {
                let result = controller.perform(next)
                state.withLock { $0.results.append((next, result)); $0.busy = nil }
                wake.wake()
                continue
            }
            if state.withLock({ $0.stopping }) { return }
            _ = try? doorbell.read.poll(for: Int16(POLLIN), deadline: .never)
            var buffer = [UInt8](repeating: 0, count: 64)
            _ = buffer.withUnsafeMutableBytes { try? doorbell.read.read(into: $0) }
        }
    }
}

/// Thread entry: a nonisolated free function (a closure written in a
/// main-actor context would trap on this thread).
nonisolated private func runControllerWorker(_ raw: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    let worker = Unmanaged<ControllerWorker>.fromOpaque(raw!).takeRetainedValue()
    worker.run()
    return nil
}
