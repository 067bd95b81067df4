/// One span as the Datadog agent receives it (`pb.Span` in datadog-agent's
/// pkg/proto/datadog/trace/span.proto), restricted to the fields both
/// `/v0.4/traces` and `/v0.5/traces` carry. `meta_struct`, `span_links` and
/// `span_events` are left out: this project's exporter never produces them,
/// and the decoders here skip them when a real tracer sends them (v0.4).
public struct Span: Equatable, Sendable {
    public var traceID: UInt64
    public var spanID: UInt64
    /// 0 for a root span.
    public var parentID: UInt64
    /// The operation name (`rack.request`, `forkscope.send`).
    public var name: String
    public var resource: String
    public var service: String
    /// `web`, `http`, `db`, … or empty.
    public var type: String
    /// Start, nanoseconds since the Unix epoch.
    public var start: Int64
    /// Nanoseconds.
    public var duration: Int64
    /// 1 if the span is an error, else 0.
    public var error: Int32
    /// String tags, in insertion order so payloads are deterministic.
    public var meta: OrderedMap<String>
    /// Numeric tags (`process_id`, `_sampling_priority_v1`, `_dd.top_level`).
    public var metrics: OrderedMap<Double>

    public init(
        traceID: UInt64, spanID: UInt64, parentID: UInt64 = 0,
        name: String, resource: String, service: String, type: String = "",
        start: Int64, duration: Int64, error: Int32 = 0,
        meta: OrderedMap<String> = OrderedMap(), metrics: OrderedMap<Double> = OrderedMap()
    ) {
        self.traceID = traceID
        self.spanID = spanID
        self.parentID = parentID
        self.name = name
        self.resource = resource
        self.service = service
        self.type = type
        self.start = start
        self.duration = duration
        self.error = error
        self.meta = meta
        self.metrics = metrics
    }
}

/// Which intake endpoint a payload is for.
public enum TraceAPIVersion: String, Sendable, CaseIterable {
    case v04 = "v0.4"
    case v05 = "v0.5"

    /// `/v0.4/traces` or `/v0.5/traces`.
    public var path: String { "/\(rawValue)/traces" }

    public func encode(_ traces: [[Span]]) -> [UInt8] {
        switch self {
        case .v04: TracePayload.encodeV04(traces)
        case .v05: TracePayload.encodeV05(traces)
        }
    }

    public func decode(_ bytes: [UInt8], limits: TraceDecodingLimits = .default) throws(TracePayloadError) -> [[Span]] {
        switch self {
        case .v04: try TracePayload.decodeV04(bytes, limits: limits)
        case .v05: try TracePayload.decodeV05(bytes, limits: limits)
        }
    }
}

/// Bounds on what a decoded payload may hold. A span can take as little as
/// one byte on the wire but ~200 bytes in memory, so the span count is
/// limited on its own, not only through the payload size.
public struct TraceDecodingLimits: Equatable, Sendable {
    public var maxSpans: Int
    /// Arrays and maps inside skipped fields (`meta_struct`, `span_links`).
    public var maxDepth: Int

    public init(maxSpans: Int = 250_000, maxDepth: Int = 32) {
        self.maxSpans = maxSpans
        self.maxDepth = maxDepth
    }

    public static let `default` = TraceDecodingLimits()
}

/// Why bytes are not a trace payload. Offsets are byte offsets into the payload.
public enum TracePayloadError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Not the MessagePack the format requires there.
    case malformed(MessagePackError)
    /// An array of the wrong length: the v0.5 payload (2) or a v0.5 span (12).
    case wrongElementCount(what: String, expected: Int, found: Int, offset: Int)
    /// A v0.5 string reference past the end of the string table.
    case stringIndexOutOfRange(index: UInt64, tableSize: Int, offset: Int)
    case tooManySpans(limit: Int)

    public var description: String {
        switch self {
        case .malformed(let error): "malformed trace payload: \(error)"
        case let .wrongElementCount(what, expected, found, offset):
            "malformed trace payload: \(what) has \(found) elements instead of \(expected), at offset \(offset)"
        case let .stringIndexOutOfRange(index, tableSize, offset):
            "malformed trace payload: string index \(index) at offset \(offset) is outside the \(tableSize)-entry string table"
        case .tooManySpans(let limit): "trace payload holds more than \(limit) spans"
        }
    }
}

/// Who is sending: the values of the `Datadog-Meta-*` headers real tracers
/// send (datadog-agent pkg/trace/api/internal/header, dd-trace-rb
/// Core::Transport::Ext::HTTP, dd-trace-py AgentWriter).
public struct TracerIdentity: Equatable, Sendable {
    /// `Datadog-Meta-Lang`: `ruby`, `python`, `swift`.
    public var language: String
    /// `Datadog-Meta-Lang-Version`: `3.3.0`.
    public var languageVersion: String
    /// `Datadog-Meta-Lang-Interpreter`: `ruby-x86_64-linux`, `CPython`.
    public var languageInterpreter: String?
    /// `Datadog-Meta-Lang-Interpreter-Vendor`: `ruby`, `jruby`.
    public var languageInterpreterVendor: String?
    /// `Datadog-Meta-Tracer-Version`.
    public var tracerVersion: String
    /// `Datadog-Container-ID`, when running in a container.
    public var containerID: String?
    /// `Datadog-Client-Computed-Top-Level: yes`: the tracer marked `_dd.top_level` itself.
    public var computedTopLevel: Bool
    /// `Datadog-Client-Computed-Stats: yes`: the tracer computed stats; the agent should not.
    public var computedStats: Bool

    public init(
        language: String, languageVersion: String, languageInterpreter: String? = nil,
        languageInterpreterVendor: String? = nil, tracerVersion: String, containerID: String? = nil,
        computedTopLevel: Bool = false, computedStats: Bool = false
    ) {
        self.language = language
        self.languageVersion = languageVersion
        self.languageInterpreter = languageInterpreter
        self.languageInterpreterVendor = languageInterpreterVendor
        self.tracerVersion = tracerVersion
        self.containerID = containerID
        self.computedTopLevel = computedTopLevel
        self.computedStats = computedStats
    }
}

extension TracePayload {
    /// The headers of a trace upload, in a fixed order: `Host` (when
    /// given), `Content-Type: application/msgpack`, `X-Datadog-Trace-Count`,
    /// the `Datadog-Meta-*` fields, then the optional ones. `Content-Length`
    /// is left to the HTTP writer, which sets it from the body.
    public static func requestHeaders(host: String? = nil, traceCount: Int, tracer: TracerIdentity) -> HTTPHeaders {
        var headers = HTTPHeaders()
        if let host { headers.add(name: "Host", value: host) }
        headers.add(name: "Content-Type", value: "application/msgpack")
        headers.add(name: "X-Datadog-Trace-Count", value: String(traceCount))
        headers.add(name: "Datadog-Meta-Lang", value: tracer.language)
        headers.add(name: "Datadog-Meta-Lang-Version", value: tracer.languageVersion)
        if let interpreter = tracer.languageInterpreter { headers.add(name: "Datadog-Meta-Lang-Interpreter", value: interpreter) }
        if let vendor = tracer.languageInterpreterVendor { headers.add(name: "Datadog-Meta-Lang-Interpreter-Vendor", value: vendor) }
        headers.add(name: "Datadog-Meta-Tracer-Version", value: tracer.tracerVersion)
        if let containerID = tracer.containerID { headers.add(name: "Datadog-Container-ID", value: containerID) }
        if tracer.computedTopLevel { headers.add(name: "Datadog-Client-Computed-Top-Level", value: "yes") }
        if tracer.computedStats { headers.add(name: "Datadog-Client-Computed-Stats", value: "yes") }
        return headers
    }
}

/// The agent's reply to a trace upload: `{"rate_by_service": {"service:web,env:prod": 0.5, "service:,env:": 1}}`
/// (datadog-agent pkg/trace/api/version.go, v0.4 and v0.5 responses).
public enum AgentSamplingRates {
    /// The rates by `service:…,env:…` key, in document order; empty when the
    /// reply has no `rate_by_service` (an agent may send `{}`).
    public static func parse(_ body: [UInt8], limits: JSONLimits = .default) throws(JSONError) -> OrderedMap<Double> {
        let document = try JSONValue(parsing: body, limits: limits)
        guard case .object = document else { throw .unexpectedShape("the agent's reply is not a JSON object") }
        guard let rates = document["rate_by_service"] else { return [:] }
        guard case .object(let members) = rates else { throw .unexpectedShape("rate_by_service is not an object") }
        var result = OrderedMap<Double>(minimumCapacity: members.count)
        for (key, value) in members {
            guard case .number(let rate) = value else { throw .unexpectedShape("rate_by_service[\(key)] is not a number") }
            result[key] = rate
        }
        return result
    }

    /// The reply body a mock agent sends.
    public static func responseBody(_ rates: OrderedMap<Double>) -> [UInt8] {
        var members = OrderedMap<JSONValue>(minimumCapacity: rates.count)
        for (key, rate) in rates { members[key] = .number(rate) }
        return JSONValue.object(["rate_by_service": .object(members)]).serialized()
    }
}
