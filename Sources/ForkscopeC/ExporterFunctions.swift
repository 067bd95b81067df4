import CForkscope
import EventRing
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// Bounds on what one call may ask for, so a garbage count from a caller
/// is an error, not an allocation of terabytes.
private enum Limits {
    static let spansPerTrace = 100_000
    static let tagsPerSpan = 4_096
}

@_cdecl("forkscope_exporter_create")
public func forkscopeExporterCreate(
    _ agentURL: UnsafePointer<CChar>?, _ policy: UnsafePointer<CChar>?, _ out: UnsafeMutablePointer<UInt64>?
) -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let out else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "out is NULL") }
        out.pointee = 0
        let url = try optionalString(agentURL, "agent_url") ?? environment("FORKSCOPE_AGENT_URL") ?? "http://127.0.0.1:8126"
        let policyText = try optionalString(policy, "policy") ?? environment("FORKSCOPE_POLICY") ?? "drain"
        let endpoint: AgentEndpoint
        do { endpoint = try AgentEndpoint(parsing: url) } catch {
            throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(error)")
        }
        guard let sendPolicy = SendPolicy(parsing: policyText) else {
            throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "fork policy \"\(policyText)\" is not drain, cancel or drain:T (T in ms, or with an ms/s suffix)")
        }
        var configuration = WriterConfiguration()
        configuration.flushIntervalMilliseconds = try environmentNumber("FORKSCOPE_FLUSH_INTERVAL_MS", 1_000, range: 1...3_600_000)
        let detects = try environmentNumber("FORKSCOPE_DETECT_FORKS", 1, range: 0...1) == 1
        fksc_set_max_cancel_reason(UInt32(CancelReason.allCases.map(\.rawValue).max() ?? 0))
        let writer: TraceWriter
        do { writer = try TraceWriter(endpoint: endpoint, policy: sendPolicy, configuration: configuration) } catch {
            throw ABIFailure(FORKSCOPE_E_SYSTEM, "cannot create the exporter: \(error)")
        }
        writer.transport.participant.detectsUnhookedForks = detects
        let exporter = Exporter(writer: writer)
        do throws(ABIFailure) { out.pointee = try ExporterTable.insert(exporter) } catch {
            writer.stop(deadlineMilliseconds: 0)
            throw error
        }
    }
}

/// The exporter behind `handle`, after recovering from a fork that
/// bypassed the stages (one load when there was none): every entry point
/// does this, as `TraceWriter.enqueue` does.
private func openExporter(_ handle: UInt64) throws(ABIFailure) -> Exporter {
    let exporter = try ExporterTable.lookup(handle)
    exporter.participant.recoverFromUnhookedFork()
    return exporter
}

@_cdecl("forkscope_exporter_set_fork_detection")
public func forkscopeExporterSetForkDetection(_ handle: UInt64, _ enabled: Int32) -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard enabled == 0 || enabled == 1 else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "enabled is \(enabled), not 0 or 1") }
        try ExporterTable.lookup(handle).participant.detectsUnhookedForks = enabled == 1
    }
}

@_cdecl("forkscope_exporter_enqueue")
public func forkscopeExporterEnqueue(_ handle: UInt64, _ spans: UnsafePointer<forkscope_span>?, _ count: Int) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let exporter = try openExporter(handle)
        guard count >= 1, count <= Limits.spansPerTrace else {
            throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "a trace of \(count) spans (1...\(Limits.spansPerTrace))")
        }
        guard let spans else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "spans is NULL") }
        var trace: [Span] = []
        trace.reserveCapacity(count)
        for index in 0..<count { trace.append(try span(spans[index], index)) }
        if !exporter.writer.enqueue(trace) {
            throw ABIFailure(FORKSCOPE_E_DROPPED, "trace of \(count) span(s) dropped and counted: the buffer is full (\(exporter.writer.configuration.bufferCapacity) spans) or the exporter is closing")
        }
    }
}

/// A C span as the writer's `Span`, every string checked.
private func span(_ c: forkscope_span, _ index: Int) throws(ABIFailure) -> Span {
    let what = "spans[\(index)]"
    let name = try string(c.name, "\(what).name")
    guard c.meta_count <= UInt32(Limits.tagsPerSpan), c.metrics_count <= UInt32(Limits.tagsPerSpan) else {
        throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(what) has \(c.meta_count) meta and \(c.metrics_count) metrics (at most \(Limits.tagsPerSpan) each)")
    }
    guard c.error == 0 || c.error == 1 else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(what).error is \(c.error), not 0 or 1") }
    guard c.duration_ns >= 0 else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(what).duration_ns is negative") }
    var meta = OrderedMap<String>(minimumCapacity: Int(c.meta_count))
    if c.meta_count > 0 {
        guard let tags = c.meta else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(what).meta is NULL with meta_count \(c.meta_count)") }
        for i in 0..<Int(c.meta_count) {
            meta[try string(tags[i].key, "\(what).meta[\(i)].key")] = try string(tags[i].value, "\(what).meta[\(i)].value")
        }
    }
    var metrics = OrderedMap<Double>(minimumCapacity: Int(c.metrics_count))
    if c.metrics_count > 0 {
        guard let values = c.metrics else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "\(what).metrics is NULL with metrics_count \(c.metrics_count)") }
        for i in 0..<Int(c.metrics_count) {
            metrics[try string(values[i].key, "\(what).metrics[\(i)].key")] = values[i].value
        }
    }
    return Span(
        traceID: c.trace_id, spanID: c.span_id, parentID: c.parent_id,
        name: name, resource: try optionalString(c.resource, "\(what).resource") ?? name,
        service: try string(c.service, "\(what).service"), type: try optionalString(c.type, "\(what).type") ?? "",
        start: c.start_ns, duration: c.duration_ns, error: c.error, meta: meta, metrics: metrics
    )
}

@_cdecl("forkscope_exporter_flush")
public func forkscopeExporterFlush(_ handle: UInt64, _ timeoutMilliseconds: UInt32) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let exporter = try openExporter(handle)
        exporter.writer.flushSoon()
        let deadline = Deadline.after(milliseconds: UInt64(timeoutMilliseconds))
        while true {
            let buffered = exporter.writer.snapshot.buffered
            if buffered == 0 { return }
            if deadline.hasPassed {
                let runtime = exporter.writer.runtime
                throw ABIFailure(FORKSCOPE_E_TIMEOUT, "\(buffered) span(s) still buffered after \(timeoutMilliseconds) ms (flush runtime \(runtime.state.rawValue), generation \(runtime.generation); is the agent at \(exporter.writer.transport.endpoint) answering?)")
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 2_000_000)
            nanosleep(&pause, nil)
        }
    }
}

@_cdecl("forkscope_exporter_counters")
public func forkscopeExporterCounters(_ handle: UInt64, _ out: UnsafeMutablePointer<forkscope_counters>?) -> Int32 {
    abiCall { () throws(ABIFailure) in
        guard let out else { throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "out is NULL") }
        let exporter = try openExporter(handle)
        let counters = exporter.writer.snapshot
        var c = forkscope_counters()
        c.accepted = counters.accepted
        c.sent = counters.sent
        c.buffered = counters.buffered
        c.requeued = counters.requeued
        c.cancelled = counters.cancelled
        c.failed = counters.failed
        c.dropped = counters.droppedTotal
        withUnsafeMutableBytes(of: &c.dropped_by_reason) { raw in
            let slots = raw.bindMemory(to: UInt64.self)
            for (reason, count) in counters.dropped where Int(reason.rawValue) < slots.count { slots[Int(reason.rawValue)] = count }
        }
        let runtime = exporter.writer.runtime
        c.runtime_generation = runtime.generation
        c.runtime_state = switch runtime.state {
        case .stopped: FORKSCOPE_RUNTIME_STOPPED.rawValue
        case .running: FORKSCOPE_RUNTIME_RUNNING.rawValue
        case .quiescing: FORKSCOPE_RUNTIME_QUIESCING.rawValue
        case .quiesced: FORKSCOPE_RUNTIME_QUIESCED.rawValue
        }
        c.detects_unhooked_forks = exporter.participant.detectsUnhookedForks ? 1 : 0
        c.pid = getpid()
        out.pointee = c
    }
}

/// A `forkscope_cancel_reason` from a C caller.
private func cancelReason(_ raw: UInt32) throws(ABIFailure) -> CancelReason {
    guard let reason = CancelReason(rawValue: UInt64(raw)) else {
        throw ABIFailure(FORKSCOPE_E_INVALID_ARGUMENT, "cancel reason \(raw) is not a forkscope_cancel_reason")
    }
    return reason
}

@_cdecl("forkscope_exporter_cancel_send")
public func forkscopeExporterCancelSend(_ handle: UInt64, _ reason: UInt32) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let exporter = try openExporter(handle)
        let reason = try cancelReason(reason)
        guard exporter.writer.transport.cancelInFlight(reason: reason) else {
            throw ABIFailure(FORKSCOPE_E_NO_SEND, "no send in flight to cancel")
        }
    }
}

@_cdecl("forkscope_exporter_close")
public func forkscopeExporterClose(_ handle: UInt64, _ timeoutMilliseconds: UInt32) -> Int32 {
    abiCall { () throws(ABIFailure) in
        let exporter = try ExporterTable.remove(handle)
        exporter.participant.recoverFromUnhookedFork()
        exporter.writer.stop(deadlineMilliseconds: UInt64(timeoutMilliseconds))
    }
}
