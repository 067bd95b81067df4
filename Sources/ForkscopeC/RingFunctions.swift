import CForkscope
import EventRing
import ForkSafety
import Glibc
import Posix

/// The ring this process publishes into, attached once (before the
/// threads that publish start: `Telemetry` reads it without a lock).
enum RingAttachment {
    private static let lock = Lock()
    nonisolated(unsafe) private static var ring: Ring?

    static var writer: RingWriter? { Telemetry.writer }

    static func attach(path: String, _ open: (String) throws(RingError) -> Ring) throws(ABIFailure) {
        lock.lock()
        defer { lock.unlock() }
        if let ring {
            if ring.path == path { return }
            throw ABIFailure(FORKSCOPE_E_ALREADY_ATTACHED, "already attached to the ring \(ring.path); cannot attach to \(path) as well")
        }
        do {
            let opened = try open(path)
            ring = opened
            Telemetry.install(opened.writer)
        } catch {
            throw ABIFailure(FORKSCOPE_E_RING, "\(error)")
        }
    }

    static func requireWriter() throws(ABIFailure) -> RingWriter {
        guard let writer else {
            throw ABIFailure(FORKSCOPE_E_NO_RING, "no ring attached: call forkscope_ring_open (or set FORKSCOPE_RING) first")
        }
        return writer
    }
}

/// A configuration value from the environment: nil when unset or empty.
func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let text = String(cString: value)
    return text.isEmpty ? nil : text
}

/// An unsigned number from the environment, or `fallback` when unset.
func environmentNumber(_ name: String, _ fallback: UInt64, range: ClosedRange<UInt64>) throws(ABIFailure) -> UInt64 {
    guard let text = environment(name) else { return fallback }
    guard let value = UInt64(text), range.contains(value) else {
        throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(name)=\(text) is not a number in \(range.lowerBound)...\(range.upperBound)")
    }
    return value
}

@_cdecl("forkscope_abi_version")
public func forkscopeABIVersion() -> UInt32 { UInt32(FORKSCOPE_ABI_VERSION) }

@_cdecl("forkscope_last_error")
public func forkscopeLastError() -> UnsafePointer<CChar> {
    UnsafePointer(ThreadState.existing?.message ?? StaticCStrings.empty)
}

@_cdecl("forkscope_status_name")
public func forkscopeStatusName(_ status: Int32) -> UnsafePointer<CChar> {
    UnsafePointer(StaticCStrings.statusNames[UInt32(bitPattern: status)] ?? StaticCStrings.unknownStatus)
}

@_cdecl("forkscope_ring_open")
public func forkscopeRingOpen(_ path: UnsafePointer<CChar>?) -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let path = try optionalString(path, "path") ?? environment("FORKSCOPE_RING") else {
            throw ABIFailure(FORKSCOPE_E_NO_RING, "no ring path given and FORKSCOPE_RING is not set")
        }
        try RingAttachment.attach(path: path) { (path) throws(RingError) in try Ring.open(at: path) }
    }
}

@_cdecl("forkscope_ring_create")
public func forkscopeRingCreate(_ path: UnsafePointer<CChar>?, _ lanes: UInt32, _ slotsPerLane: UInt32) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let path = try string(path, "path")
        let defaults = RingConfiguration()
        let laneCount = lanes != 0 ? UInt64(lanes)
            : try environmentNumber("FORKSCOPE_RING_LANES", UInt64(defaults.laneCount), range: 1...UInt64(RingFormat.maxLanes))
        let slots = slotsPerLane != 0 ? UInt64(slotsPerLane)
            : try environmentNumber("FORKSCOPE_RING_SLOTS", UInt64(defaults.slotsPerLane), range: UInt64(RingFormat.minSlotsPerLane)...UInt64(RingFormat.maxSlotsPerLane))
        guard laneCount <= UInt64(RingFormat.maxLanes), slots <= UInt64(RingFormat.maxSlotsPerLane) else {
            throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "ring shape \(laneCount) lanes × \(slots) slots is out of range (lanes 1...\(RingFormat.maxLanes), slots a power of two in \(RingFormat.minSlotsPerLane)...\(RingFormat.maxSlotsPerLane))")
        }
        let configuration = RingConfiguration(laneCount: UInt32(laneCount), slotsPerLane: UInt32(slots))
        try RingAttachment.attach(path: path) { (path) throws(RingError) in try Ring.create(at: path, configuration: configuration) }
    }
}

@_cdecl("forkscope_ring_attached")
public func forkscopeRingAttached() -> Int32 { RingAttachment.writer == nil ? 0 : 1 }

@_cdecl("forkscope_event_kind_name")
public func forkscopeEventKindName(_ kind: UInt32) -> UnsafePointer<CChar>? {
    guard let kind = UInt16(exactly: kind) else { return nil }
    return EventNames.table[kind].map { UnsafePointer($0) }
}

private enum EventNames {
    nonisolated(unsafe) static let table: [UInt16: UnsafeMutablePointer<CChar>] = {
        var table: [UInt16: UnsafeMutablePointer<CChar>] = [:]
        for kind in EventKind.allCases { table[kind.rawValue] = strdup(kind.name) }
        return table
    }()
}

@_cdecl("forkscope_intern")
public func forkscopeIntern(_ text: UnsafePointer<CChar>?, _ offset: UnsafeMutablePointer<UInt64>?) -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let offset else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "offset is NULL") }
        let text = try string(text, "string")
        offset.pointee = try RingAttachment.requireWriter().intern(text)
    }
}

/// The vocabulary's kind for a C caller's number.
func eventKind(_ raw: UInt32) throws(ABIFailure) -> EventKind {
    guard let narrow = UInt16(exactly: raw), let kind = EventKind(rawValue: narrow) else {
        throw ABIFailure(FORKSCOPE_E_UNKNOWN_KIND, "event kind \(raw) is not in the vocabulary (1...\(EventKind.allCases.map(\.rawValue).max() ?? 0); see forkscope.h)")
    }
    return kind
}

func publish(_ kind: EventKind, _ args: [UInt64]) throws(ABIFailure) {
    let writer = try RingAttachment.requireWriter()
    let a = args + [UInt64](repeating: 0, count: max(0, 4 - args.count))
    if let cause = writer.publish(kind, generation: Fork.generation, a[0], a[1], a[2], a[3]) {
        let why = cause == .laneExhausted ? "every lane of the ring belongs to a live process" : "the slot was still held by a writer that never committed"
        throw ABIFailure(FORKSCOPE_E_DROPPED, "\(kind.name) dropped and counted in the ring: \(why)")
    }
}

@_cdecl("forkscope_publish")
public func forkscopePublish(_ kind: UInt32, _ a0: UInt64, _ a1: UInt64, _ a2: UInt64, _ a3: UInt64) -> Int32 {
    // The success path publishes straight away: lock-free and without
    // allocation, so a signal handler may call it once a ring is attached.
    if let narrow = UInt16(exactly: kind), EventKind(rawValue: narrow) != nil, let writer = RingAttachment.writer,
       writer.publish(rawKind: narrow, at: Clock.monotonicNanoseconds(), generation: Fork.generation, a0, a1, a2, a3) == nil {
        return FORKSCOPE_OK.code
    }
    return abiCall { () throws(ABIFailure) in try publish(try eventKind(kind), [a0, a1, a2, a3]) }
}

@_cdecl("forkscope_publish_typed")
public func forkscopePublishTyped(
    _ kind: UInt32, _ args: UnsafePointer<UInt64>?, _ strings: UnsafePointer<UnsafePointer<CChar>?>?
) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let kind = try eventKind(kind)
        let writer = try RingAttachment.requireWriter()
        var values = (0..<4).map { index in args?[index] ?? 0 }
        let arguments = kind.arguments
        for index in 0..<4 {
            guard let pointer = strings?[index] else { continue }
            guard index < arguments.count, arguments[index].type == .string else {
                let name = index < arguments.count ? "\(arguments[index].name) (\(arguments[index].type))" : "unused"
                throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(kind.name): argument \(index) is \(name), not a string")
            }
            values[index] = writer.intern(try string(pointer, "\(kind.name) argument \(arguments[index].name)"))
        }
        try publish(kind, values)
    }
}

@_cdecl("forkscope_publish_server_hook")
public func forkscopePublishServerHook(_ hook: UnsafePointer<CChar>?, _ server: UnsafePointer<CChar>?, _ workerIndex: UInt64) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let hook = try string(hook, "hook")
        let server = try string(server, "server")
        let writer = try RingAttachment.requireWriter()
        try publish(.serverHook, [writer.intern(hook), writer.intern(server), workerIndex])
    }
}
