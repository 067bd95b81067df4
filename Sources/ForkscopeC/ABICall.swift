import CForkscope
import ForkSafety
import Glibc

/// A failure to report across the C ABI: a status and a message a user can
/// act on. Never thrown across the boundary: `abiCall` turns it into the
/// return code and the calling thread's `forkscope_last_error()`.
struct ABIFailure: Error {
    let status: forkscope_status
    let message: String

    init(_ status: forkscope_status, _ message: String) {
        self.status = status
        self.message = message
    }
}

extension forkscope_status {
    var code: Int32 { Int32(bitPattern: rawValue) }
}

/// Runs one ABI function's body: success is `FORKSCOPE_OK`, a failure
/// becomes its status and the thread's message. Bodies throw only
/// `ABIFailure` (typed throws), and check what they index or convert, so
/// no Swift error or trap reaches the C caller.
@inline(__always)
func abiCall(_ body: () throws(ABIFailure) -> Void) -> Int32 {
    do {
        try body()
        return FORKSCOPE_OK.code
    } catch {
        ThreadState.current?.setMessage(error.message)
        return error.status.code
    }
}

/// What one thread keeps across calls: its last error message (the C
/// string `forkscope_last_error` returns) and a fork it is between the
/// `before` and `parent`/`child` stages of. Per thread, so two threads
/// forking at once (a host that releases its own lock around the stages)
/// each complete their own fork; a forked child inherits the forking
/// thread's copy with the rest of its memory.
final class ThreadState {
    private(set) var message: UnsafeMutablePointer<CChar>?
    var pendingFork: Fork.Preparation?
    /// The forking thread's children before fork(), to name the new one.
    var childrenBeforeFork: Set<pid_t> = []

    deinit { free(message) }

    func setMessage(_ text: String) {
        free(message)
        message = strdup(text)
    }

    /// The calling thread's state, created on first use; nil only if the
    /// thread-local key could not be created (then messages are lost, not
    /// the call's status).
    static var current: ThreadState? {
        guard let key = ThreadStateKey.key else { return nil }
        if let raw = pthread_getspecific(key) { return Unmanaged<ThreadState>.fromOpaque(raw).takeUnretainedValue() }
        let state = ThreadState()
        let raw = Unmanaged.passRetained(state).toOpaque()
        guard pthread_setspecific(key, raw) == 0 else {
            Unmanaged<ThreadState>.fromOpaque(raw).release()
            return nil
        }
        return state
    }

    /// The state if this thread has one (no allocation).
    static var existing: ThreadState? {
        guard let key = ThreadStateKey.key, let raw = pthread_getspecific(key) else { return nil }
        return Unmanaged<ThreadState>.fromOpaque(raw).takeUnretainedValue()
    }
}

private enum ThreadStateKey {
    /// Created once; released with the thread (the destructor drops the
    /// retain `current` took).
    static let key: pthread_key_t? = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { raw in
            if let raw { Unmanaged<ThreadState>.fromOpaque(raw).release() }
        }
        return rc == 0 ? key : nil
    }()
}

/// C strings the library hands out: allocated once, never freed, so a
/// caller may keep the pointer for the life of the process.
enum StaticCStrings {
    nonisolated(unsafe) static let empty: UnsafeMutablePointer<CChar> = strdup("")!

    nonisolated(unsafe) static let statusNames: [UInt32: UnsafeMutablePointer<CChar>] = {
        let names: [(forkscope_status, String)] = [
            (FORKSCOPE_OK, "FORKSCOPE_OK"),
            (FORKSCOPE_E_INVALID_ARGUMENT, "FORKSCOPE_E_INVALID_ARGUMENT"),
            (FORKSCOPE_E_NOT_UTF8, "FORKSCOPE_E_NOT_UTF8"),
            (FORKSCOPE_E_BAD_HANDLE, "FORKSCOPE_E_BAD_HANDLE"),
            (FORKSCOPE_E_CLOSED, "FORKSCOPE_E_CLOSED"),
            (FORKSCOPE_E_NO_RING, "FORKSCOPE_E_NO_RING"),
            (FORKSCOPE_E_RING, "FORKSCOPE_E_RING"),
            (FORKSCOPE_E_UNKNOWN_KIND, "FORKSCOPE_E_UNKNOWN_KIND"),
            (FORKSCOPE_E_DROPPED, "FORKSCOPE_E_DROPPED"),
            (FORKSCOPE_E_STAGE_ORDER, "FORKSCOPE_E_STAGE_ORDER"),
            (FORKSCOPE_E_HOOK_FAILED, "FORKSCOPE_E_HOOK_FAILED"),
            (FORKSCOPE_E_TIMEOUT, "FORKSCOPE_E_TIMEOUT"),
            (FORKSCOPE_E_NO_SEND, "FORKSCOPE_E_NO_SEND"),
            (FORKSCOPE_E_LIMIT, "FORKSCOPE_E_LIMIT"),
            (FORKSCOPE_E_SYSTEM, "FORKSCOPE_E_SYSTEM"),
            (FORKSCOPE_E_ALREADY_ATTACHED, "FORKSCOPE_E_ALREADY_ATTACHED"),
        ]
        var table: [UInt32: UnsafeMutablePointer<CChar>] = [:]
        for (status, name) in names { table[status.rawValue] = strdup(name) }
        return table
    }()

    nonisolated(unsafe) static let unknownStatus: UnsafeMutablePointer<CChar> = strdup("FORKSCOPE_E_UNKNOWN_STATUS")!
}

/// A C string argument as a Swift `String`, refusing null (unless
/// `optional`) and invalid UTF-8. `what` names the argument in the message.
func string(_ pointer: UnsafePointer<CChar>?, _ what: String) throws(ABIFailure) -> String {
    guard let pointer else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(what) is NULL") }
    guard let text = String(validatingCString: pointer) else {
        throw ABIFailure(FORKSCOPE_E_NOT_UTF8, "\(what) is not valid UTF-8")
    }
    return text
}

func optionalString(_ pointer: UnsafePointer<CChar>?, _ what: String) throws(ABIFailure) -> String? {
    guard let pointer else { return nil }
    return try string(pointer, what)
}
