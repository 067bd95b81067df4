import CPosix
import EventRing
import Posix

/// A hook's failure, as reported by `Fork.fork()`.
public struct HookFailure: Error, Equatable, CustomStringConvertible {
    public let stage: ForkStage
    public let name: String
    public let message: String
    public var description: String { "at-fork \(stage.name) hook \"\(name)\" failed: \(message)" }

    init(_ entry: borrowing AtForkRegistry.Entry, _ error: any Error) {
        stage = entry.handle.stage
        name = entry.name
        message = "\(error)"
    }
}

/// Handle to one registered hook. Removing it twice, or removing a handle
/// this registry never issued, does nothing.
public struct HookHandle: Hashable, Sendable {
    public let id: UInt64
    public let stage: ForkStage
    /// Hooks registered together (a participant's before/parent/child)
    /// share a group: `parent` runs for a group only if its `before` did.
    public let group: UInt64
}

/// The at-fork registry, stages `before`, `parent`, `child`, as in
/// `pthread_atfork` and dd-trace-rb's `AtForkMonkeyPatch`:
///
/// - `before` runs in reverse registration order and stops at the first
///   failure: the fork is not performed, and `parent` then runs only for the
///   groups whose `before` succeeded (never unlock what was not locked).
/// - `parent` and `child` run in registration order; all entries run, and
///   the first failure is reported after all ran.
///
/// Copy-on-write: a run (one fork: `before`, then `parent` or `child`)
/// works on the list as it was when its `before` started, so a hook that
/// registers or removes hooks changes only later forks — and an entry whose
/// `before` ran still gets its `parent` or `child` in that fork, even if it
/// was removed meanwhile (else what it locked would stay locked).
public final class AtForkRegistry: @unchecked Sendable {
    public typealias Hook = () throws -> Void

    struct Entry {
        let handle: HookHandle
        let name: String
        let nameRef: UInt64
        let hook: Hook
    }

    /// One fork's snapshot of the entries, split by stage, and whether each
    /// group's `before` succeeded. Everything is computed before fork():
    /// after it, each page either process writes is a copy-on-write fault
    /// (several µs here), so the `parent` and `child` stages allocate
    /// nothing and touch as little as they can.
    struct Run {
        let before: [Entry]
        let parent: [Entry]
        let child: [Entry]
        /// Per `parent` entry: the index in `before` of its group's
        /// `before` entry, or nil when its group has none.
        private let beforeIndex: [Int?]
        /// `before` runs from the last entry down and stops at the first
        /// failure, so the entries that succeeded are `before[succeededFrom...]`.
        private var succeededFrom: Int

        init(_ entries: [Entry]) {
            before = entries.filter { $0.handle.stage == .before }
            parent = entries.filter { $0.handle.stage == .parent }
            child = entries.filter { $0.handle.stage == .child }
            var indexOfGroup: [UInt64: Int] = [:]
            for (index, entry) in before.enumerated() { indexOfGroup[entry.handle.group] = index }
            beforeIndex = parent.map { indexOfGroup[$0.handle.group] }
            succeededFrom = before.count
        }

        /// Records that `before[index]` succeeded (they run from the last down).
        mutating func beforeSucceeded(at index: Int) { succeededFrom = index }

        /// Whether `parent` runs for the `parent` entry at `index`.
        func parentRuns(_ index: Int) -> Bool {
            guard let own = beforeIndex[index] else { return true }
            return own >= succeededFrom
        }
    }

    /// The process's registry, used by `Fork.fork()` by default.
    public static let shared = AtForkRegistry()

    /// Hook ids are unique in the process, not per registry, so a handle
    /// one registry issued is "never issued" in every other one.
    nonisolated(unsafe) private static let lastID: UnsafeMutablePointer<UInt64> = {
        let counter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        counter.initialize(to: 0)
        return counter
    }()

    /// Guards `entries`; also held across the fork() call
    /// itself, so no thread is mid-registration when the child is made.
    let lock = Lock()
    private var entries: [Entry] = []

    public init() {}

    /// Registers one hook; returns its handle.
    @discardableResult
    public func register(_ stage: ForkStage, name: String, _ hook: @escaping Hook) -> HookHandle {
        register([(stage, hook)], name: name)[0]
    }

    /// Registers hooks of several stages as one group (one participant).
    public func register(_ hooks: [(ForkStage, Hook)], name: String) -> [HookHandle] {
        let nameRef = Telemetry.intern(name)
        let handles: [HookHandle] = lock.withLock {
            let first = fks_fetch_add_u64(AtForkRegistry.lastID, UInt64(hooks.count)) + 1
            var handles: [HookHandle] = []
            var updated = entries
            for (offset, (stage, hook)) in hooks.enumerated() {
                let handle = HookHandle(id: first + UInt64(offset), stage: stage, group: first)
                updated.append(Entry(handle: handle, name: name, nameRef: nameRef, hook: hook))
                handles.append(handle)
            }
            entries = updated
            return handles
        }
        for handle in handles { Telemetry.publish(.hookRegistered, handle.stage.rawValue, handle.id, nameRef) }
        return handles
    }

    /// Removes a hook; returns whether it was registered.
    @discardableResult
    public func remove(_ handle: HookHandle) -> Bool {
        let found: Bool = lock.withLock {
            guard let index = entries.firstIndex(where: { $0.handle == handle }) else { return false }
            var updated = entries
            updated.remove(at: index)
            entries = updated
            return true
        }
        Telemetry.publish(.hookRemoved, handle.stage.rawValue, handle.id, found ? 1 : 0)
        return found
    }

    /// How many hooks of `stage` are registered (all stages when nil).
    public func count(_ stage: ForkStage? = nil) -> Int {
        lock.withLock { entries.filter { stage == nil || $0.handle.stage == stage }.count }
    }

    /// The entries as they are now: the list one fork works on throughout.
    func beginRun() -> Run { Run(lock.withLock { entries }) }

    /// The latest fork's run, released at the next fork's `prepare` rather
    /// than after `parent`/`child`: freeing its arrays right after fork()
    /// would write to pages both processes share, a copy-on-write fault
    /// each. Called with `lock` held.
    func keepUntilNextFork(_ run: Run) { lastRun = run }
    private var lastRun: Run?

    /// Runs the run's `before` hooks, newest first, stopping at the first
    /// failure; records in `run` the groups whose `before` succeeded.
    func runBefore(_ run: inout Run, generation: UInt32) -> HookFailure? {
        for index in run.before.indices.reversed() {
            if let error = runOne(run.before[index], generation: generation) { return HookFailure(run.before[index], error) }
            run.beforeSucceeded(at: index)
        }
        return nil
    }

    /// Runs the run's `parent` hooks in registration order for the groups
    /// whose `before` succeeded (and for groups that have no `before`).
    func runParent(_ run: Run, generation: UInt32) -> HookFailure? {
        var first: HookFailure? = nil
        for index in run.parent.indices where run.parentRuns(index) {
            if let error = runOne(run.parent[index], generation: generation), first == nil { first = HookFailure(run.parent[index], error) }
        }
        return first
    }

    /// Runs every one of the run's `child` hooks in registration order.
    func runChild(_ run: Run, generation: UInt32) -> HookFailure? {
        var first: HookFailure? = nil
        for index in run.child.indices {
            if let error = runOne(run.child[index], generation: generation), first == nil { first = HookFailure(run.child[index], error) }
        }
        return first
    }

    /// The `child` stage as `Fork` runs it in a new process: the same runs
    /// and events, without building the failure nobody reads there (its
    /// destruction alone ran generic runtime code, paged in by the child).
    func runChildHooks(_ run: Run, generation: UInt32) {
        for index in run.child.indices { _ = runOne(run.child[index], generation: generation) }
    }

    /// Runs one hook and publishes the run; returns what it threw. Entries
    /// are borrowed, not copied: a copy retains the name and the closure,
    /// writes a forked child pays for in page faults.
    private func runOne(_ entry: borrowing Entry, generation: UInt32) -> (any Error)? {
        // Timed only when published: in a fresh child the clock's code is
        // three page faults away.
        let observed = Telemetry.writer != nil
        let start = observed ? Clock.monotonicNanoseconds() : 0
        var thrown: (any Error)? = nil
        do { try entry.hook() } catch { thrown = error }
        if observed {
            Telemetry.publish(.hookRun, generation: generation, entry.handle.stage.rawValue, entry.nameRef,
                              (thrown == nil ? Outcome.ok : .failed).rawValue, microsSince(start))
        }
        return thrown
    }
}
