import CPosix
import EventRing
import Glibc
import Posix
import TestSupport
import XCTest

/// A wait in a test that reached its deadline: the test fails instead of hanging.
struct DeadlinePassed: Error, CustomStringConvertible {
    let what: String
    var description: String { "deadline passed waiting for \(what)" }
}

/// A `forkscope-testhost fork-…` scenario: the host forks, never the XCTest
/// process. Every wait has a deadline; when one passes, the host and every
/// process below it are SIGKILLed and the test fails.
final class ForkScenario {
    let host: SpawnedProcess
    let scratch: ScratchSession
    private var lines: [String] = []
    private var reaped = false

    /// Starts `forkscope-testhost MODE RING ARGUMENTS…` on a fresh ring
    /// large enough that no lane of a scenario wraps.
    init(_ mode: String, _ arguments: [String] = [], scratch: ScratchSession? = nil) throws {
        let scratch = try scratch ?? ScratchSession()
        self.scratch = scratch
        if !FileSystem.exists(scratch.ringPath) {
            let ring = try scratch.createRing(RingConfiguration(laneCount: 16, slotsPerLane: 4096, stringBytes: 64 * 1024))
            ring.unmap()
        }
        host = try SpawnedProcess([mode, scratch.ringPath] + arguments)
    }

    deinit { killTree() }

    /// Ends the host and everything it forked (children first would let the
    /// host reap them; the tree is signalled parents first, then the host).
    func killTree() {
        guard !reaped else { return }
        _ = try? ProcessControl.killTree(root: host.pid, signal: SIGKILL, includingRoot: false)
        host.kill()
        reaped = true
    }

    /// The next line the host prints, within `seconds`.
    func line(within seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line) throws -> String {
        do {
            let text = try host.readLine(within: seconds, file: file, line: line)
            lines.append(text)
            return text
        } catch {
            killTree()
            throw error
        }
    }

    /// Waits for the host to exit with status 0 within `seconds`; on any
    /// other status, fails with everything the host printed (its `fail
    /// STEP WHY` line names the step that failed).
    func expectSuccess(within seconds: Double = 10, file: StaticString = #filePath, line: UInt = #line) throws {
        let rest: String
        do { rest = try host.readToEnd(within: seconds, file: file, line: line) } catch { killTree(); throw error }
        lines += rest.split(separator: "\n").map(String.init)
        let status: WaitStatus
        do { status = try host.wait(within: seconds, file: file, line: line) } catch { killTree(); throw error }
        reaped = true
        let errors = (try? host.readErrors(within: 1)) ?? ""
        XCTAssertEqual(status, .exited(0), "host output:\n\(lines.joined(separator: "\n"))\n\(errors)", file: file, line: line)
    }

    /// Everything the host printed so far, one element per line.
    var output: [String] { lines }

    /// The value after `key=` in the host's `ok …` line.
    func reported(_ key: String) -> String? {
        for text in lines where text.hasPrefix("ok") {
            for word in text.split(separator: " ") where word.hasPrefix(key + "=") {
                return String(word.dropFirst(key.count + 1))
            }
        }
        return nil
    }

    func reportedPid(_ key: String) -> pid_t? { reported(key).flatMap { pid_t($0) } }

    /// The ring's events, merged by time.
    func events() throws -> RingEvents {
        let reader = try RingReader(path: scratch.ringPath)
        var events: [Event] = []
        _ = try reader.readNew(into: &events)
        RingReader.merge(&events)
        return RingEvents(events: events, reader: reader)
    }
}

/// Events read back from a ring, with the queries the fork tests make.
struct RingEvents {
    let events: [Event]
    let reader: RingReader

    func of(_ kind: EventKind, pid: pid_t? = nil) -> [Event] {
        events.filter { $0.kind == kind && (pid == nil || $0.pid == pid) }
    }

    /// `hook.run` events of `stage`.
    func hookRuns(_ stage: ForkStage, pid: pid_t? = nil) -> [Event] {
        of(.hookRun, pid: pid).filter { $0.a0 == stage.rawValue }
    }

    func name(_ offset: UInt64) -> String { reader.string(at: offset) ?? "?" }

    /// Kinds in time order, for failure messages.
    var summary: String {
        events.map { "\($0.pid) \($0.kind?.name ?? "\($0.rawKind)") g\($0.generation) \($0.a0),\($0.a1),\($0.a2),\($0.a3)" }.joined(separator: "\n")
    }
}

/// The thread names of a live process: `/proc/<pid>/task/*/comm`, by tid.
func threadNames(of pid: pid_t) throws -> [pid_t: String] {
    var names: [pid_t: String] = [:]
    for entry in try FileSystem.contents(ofDirectory: "/proc/\(pid)/task") {
        guard let tid = pid_t(entry) else { continue }
        guard let bytes = try? FileSystem.readFile("/proc/\(pid)/task/\(tid)/comm") else { continue }
        names[tid] = String(decoding: bytes, as: UTF8.self).split(separator: "\n").first.map(String.init) ?? ""
    }
    return names
}

/// Waits until thread `tid` of this process sleeps in poll/ppoll, so a
/// cancel measured against it wakes a real sleeper (no sleeping here: the
/// caller spins on /proc with `sched_yield`). False when `deadline` passed.
func waitUntilBlockedInPoll(tid: pid_t, before deadline: Deadline) -> Bool {
    while !deadline.hasPassed {
        if let bytes = try? FileSystem.readFile("/proc/self/task/\(tid)/syscall"),
           let number = String(decoding: bytes, as: UTF8.self).split(separator: " ").first,
           number == "\(SYS_poll)" || number == "\(SYS_ppoll)" {
            return true
        }
        sched_yield()
    }
    return false
}

/// Reads one byte from `fd` within `deadline`; nil when it passed or the
/// writer closed.
func readByte(_ fd: FileDescriptor, before deadline: Deadline) throws -> UInt8? {
    guard try fd.poll(for: Int16(POLLIN), deadline: deadline) & Int16(POLLIN) != 0 else { return nil }
    var byte: UInt8 = 0
    let count = try withUnsafeMutableBytes(of: &byte) { raw in Result { () throws(SystemError) in try fd.read(into: raw) } }.get()
    return count == 1 ? byte : nil
}
