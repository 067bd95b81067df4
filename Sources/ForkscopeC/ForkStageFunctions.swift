import CForkscope
import ForkSafety
import Glibc
import Posix

// The at-fork stages around a fork() the host performs itself, through
// the same pieces `Fork.fork()` is made of (`Fork.prepare`,
// `completeInParent`, `completeInChild`): the events, the hook order and
// the lock discipline are the same whoever calls fork().

@_cdecl("forkscope_before_fork")
public func forkscopeBeforeFork() -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let thread = ThreadState.current else {
            throw ABIFailure(FORKSCOPE_E_SYSTEM, "no thread-local state (pthread_key_create failed)")
        }
        if thread.pendingFork != nil {
            throw ABIFailure(FORKSCOPE_E_STAGE_ORDER, "forkscope_before_fork called twice on this thread without forkscope_after_fork_parent or _child between")
        }
        thread.childrenBeforeFork = Set(childrenOfCallingThread())
        do {
            thread.pendingFork = try Fork.prepare()
        } catch {
            throw ABIFailure(FORKSCOPE_E_HOOK_FAILED, "\(error); the parent stage already ran for the hooks that had quiesced, do not call forkscope_after_fork_parent")
        }
        // Held across fork() like the registry lock: the child never
        // inherits it from a thread that was mid-lookup.
        ExporterTable.lock.lock()
    }
}

@_cdecl("forkscope_after_fork_parent")
public func forkscopeAfterForkParent(_ childPid: Int64) -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let thread = ThreadState.existing, let preparation = thread.pendingFork else {
            throw ABIFailure(FORKSCOPE_E_STAGE_ORDER, "forkscope_after_fork_parent without a successful forkscope_before_fork on this thread")
        }
        thread.pendingFork = nil
        ExporterTable.lock.unlock()
        let pid: pid_t
        let error: Errno
        if childPid < 0 {
            pid = -1
            error = Errno(rawValue: Int32(clamping: -childPid))
        } else if childPid == 0 {
            let new = Set(childrenOfCallingThread()).subtracting(thread.childrenBeforeFork)
            pid = new.count == 1 ? (new.first ?? 0) : 0
            error = Errno(rawValue: 0)
        } else {
            pid = pid_t(clamping: childPid)
            error = Errno(rawValue: 0)
        }
        thread.childrenBeforeFork = []
        do { try Fork.completeInParent(preparation, child: pid, error: error) } catch {
            // Only a failed fork() throws here; the host already knows.
            _ = error
        }
    }
}

@_cdecl("forkscope_after_fork_child")
public func forkscopeAfterForkChild() -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let thread = ThreadState.existing, let preparation = thread.pendingFork else {
            throw ABIFailure(FORKSCOPE_E_STAGE_ORDER, "forkscope_after_fork_child without a successful forkscope_before_fork on the forking thread (exporters recover on first use through fork detection)")
        }
        thread.pendingFork = nil
        thread.childrenBeforeFork = []
        ExporterTable.reinitializeInChild()
        Fork.completeInChild(preparation)
    }
}

@_cdecl("forkscope_fork_generation")
public func forkscopeForkGeneration() -> UInt32 { Fork.generation }

/// The calling thread's children (`/proc/thread-self/children`), to name
/// the child of a fork whose pid the host did not pass (Python's
/// `after_in_parent` has no argument). Empty where the kernel lacks it.
private func childrenOfCallingThread() -> [pid_t] {
    guard let bytes = try? FileSystem.readFile("/proc/thread-self/children", limit: 1 << 16) else { return [] }
    return bytes.split(separator: UInt8(ascii: " ")).compactMap { pid_t(String(decoding: $0, as: UTF8.self).trimmingSpaces) }
}

extension String {
    fileprivate var trimmingSpaces: String {
        String(self.filter { !$0.isWhitespace })
    }
}
