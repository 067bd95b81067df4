import Posix
import Wire

// What the agent answers, by path.
//
// Like a Datadog agent (datadog-agent pkg/trace/api):
//   GET      /info                   the agent's description (endpoints, client_drop_p0s, config)
//   PUT|POST /v0.4/traces            a v0.4 payload: decoded, counted, 200 {"rate_by_service": …}
//   PUT|POST /v0.5/traces            the same for v0.5
//   PUT|POST /v0.6/stats             client-computed stats: accepted and counted, 200
//   POST     /telemetry/proxy/…      tracer telemetry: accepted and counted, 202
// A payload that does not decode gets 400 and the reason; a known path with
// the wrong method 405; any other path 404.
//
// Control API, on the same listener (replies are JSON; PUT works as POST):
//   GET  /stats                               every counter and setting (see AgentStatistics)
//   POST /control/delay?ms=N                  wait N ms before each traces reply (0: none)
//   POST /control/hold[?enabled=false]        hold every traces reply read from now on until
//                                             released (enabled=false: stop holding new ones;
//                                             replies already held stay held)
//   POST /control/release[?count=N]           release the N oldest held replies (all if omitted)
//   GET  /control/wait-held?count=N&timeout_ms=T
//                                             answer once N replies are held (so a test knows
//                                             the agent has *read* its request): 200
//                                             {"held":k,"reached":true}, or after T ms (default
//                                             10000) 408 {"held":k,"reached":false}
//   POST /control/fault?kind=K[&count=N][&interval_ms=I]
//                                             apply fault K (500, 413, 429, slow-body, reset,
//                                             garbage, close-after-headers) to the next N traces
//                                             requests (every one if omitted); kind=none clears;
//                                             interval_ms paces slow-body (default 50)
//   POST /control/reset                       zero every counter (settings and held replies stay)
//
// A fault, hold or delay applies to traces requests whose payload decoded;
// hold wins over delay; the fault is chosen when the request is read and
// shapes the reply when it goes out.
extension AgentServer {
    static let infoEndpoints = ["/v0.4/traces", "/v0.5/traces", "/v0.6/stats", "/telemetry/proxy/"]

    func route(_ request: HTTPRequest, on connection: ServerConnection) {
        let (path, query) = Self.split(request.target)
        let keepAlive = request.keepAlive
        if path.hasPrefix("/telemetry/proxy/") {
            statistics.recordEndpoint("/telemetry/proxy/")
            guard allow(request, ["POST", "PUT"], on: connection) else { return }
            return respond(connection, HTTPResponse(status: 202), keepAlive: keepAlive)
        }
        switch path {
        case "/v0.4/traces", "/v0.5/traces":
            statistics.recordEndpoint(path)
            guard allow(request, ["PUT", "POST"], on: connection) else { return }
            receiveTraces(request, version: path == "/v0.4/traces" ? .v04 : .v05, on: connection)
        case "/info":
            statistics.recordEndpoint(path)
            guard allow(request, ["GET"], on: connection) else { return }
            let headers: HTTPHeaders = ["Content-Type": "application/json", "Datadog-Agent-State": agentState]
            respond(connection, HTTPResponse(status: 200, headers: headers, body: infoBody), keepAlive: keepAlive)
        case "/v0.6/stats":
            statistics.recordEndpoint(path)
            guard allow(request, ["PUT", "POST"], on: connection) else { return }
            respond(connection, HTTPResponse(status: 200), keepAlive: keepAlive)
        case "/stats":
            statistics.recordEndpoint(path)
            guard allow(request, ["GET"], on: connection) else { return }
            respond(connection, json: statistics.json(liveState), keepAlive: keepAlive)
        case "/control/delay", "/control/hold", "/control/release", "/control/fault", "/control/reset", "/control/wait-held":
            statistics.recordEndpoint(path)
            guard allow(request, path == "/control/wait-held" ? ["GET"] : ["POST", "PUT"], on: connection) else { return }
            do throws(ControlError) {
                try control(path, query, on: connection, keepAlive: keepAlive)
            } catch {
                respond(connection, status: 400, json: ["error": .string(error.message)], keepAlive: keepAlive)
            }
        default:
            statistics.recordEndpoint("other")
            respond(connection, status: 404, text: "forkscope agent: no endpoint \(path)\n", keepAlive: keepAlive)
        }
    }

    /// Answers 405 (with `Allow`) unless the method is one of `methods`.
    func allow(_ request: HTTPRequest, _ methods: [String], on connection: ServerConnection) -> Bool {
        if methods.contains(request.method) { return true }
        let allowed = methods.joined(separator: ", ")
        respond(connection, status: 405, text: "forkscope agent: \(request.method) is not allowed here; use \(allowed)\n",
                keepAlive: request.keepAlive, headers: ["Allow": allowed])
        return false
    }

    // MARK: traces

    func receiveTraces(_ request: HTTPRequest, version: TraceAPIVersion, on connection: ServerConnection) {
        statistics.recordTraceRequest(bytes: request.body.count)
        // One pass over the bytes for what the counters need; the full
        // decoder runs only to word the error of a payload the census refused.
        let spanCount: Int
        do {
            try census.read(request.body, version: version)
            spanCount = census.spanCount
        } catch {
            statistics.recordBadPayload()
            let reason: TracePayloadError
            do { _ = try version.decode(request.body); reason = error } catch let decodeError { reason = decodeError }
            return respond(connection, status: 400, text: "forkscope agent: cannot decode the \(version.rawValue) payload: \(reason)\n",
                           keepAlive: request.keepAlive)
        }
        let kind = takeFault()
        if let kind { statistics.recordFault(kind, spans: spanCount) }
        if kind?.countsSpans ?? true { statistics.count(census) }

        var reply = PendingTracesReply(
            shape: replyShape(for: kind), keepAlive: request.keepAlive, spans: spanCount, bytes: request.body.count,
            path: version.path, readAt: Clock.monotonicNanoseconds(), releaseAt: nil, holdSequence: nil)
        if holding {
            reply.holdSequence = nextHoldSequence
            nextHoldSequence += 1
            connection.pending = .traces(reply)
        } else if delayMilliseconds > 0 {
            reply.releaseAt = .after(milliseconds: delayMilliseconds)
            connection.pending = .traces(reply)
        } else {
            deliver(reply, on: connection)
        }
    }

    /// The fault for this request, counting it off the current plan.
    func takeFault() -> AgentFaultKind? {
        guard var current = fault else { return nil }
        if let remaining = current.remaining {
            current.remaining = remaining - 1
            fault = remaining > 1 ? current : nil
        }
        return current.kind
    }

    func replyShape(for kind: AgentFaultKind?) -> ReplyShape {
        let accepted = acceptedTraces
        guard let kind else { return .response(accepted) }
        switch kind {
        case .internalError, .payloadTooLarge, .tooManyRequests:
            let headers: HTTPHeaders = ["Content-Type": "text/plain; charset=utf-8"]
            let body = Array("forkscope agent: injected fault \(kind.rawValue); the payload was not counted\n".utf8)
            return .response(HTTPResponse(status: kind.replyStatus, headers: headers, body: body))
        case .slowBody: return .slowBody(accepted)
        case .reset: return .reset
        case .garbage: return .garbage
        case .closeAfterHeaders: return .closeAfterHeaders(accepted)
        }
    }

    // MARK: control

    struct ControlError: Error {
        let message: String
    }

    func control(_ path: String, _ query: [String: String], on connection: ServerConnection, keepAlive: Bool) throws(ControlError) {
        switch path {
        case "/control/delay":
            guard let ms = try Self.number("ms", in: query) else { throw ControlError(message: "delay needs ?ms=N") }
            delayMilliseconds = UInt64(ms)
            respond(connection, json: ["delay_ms": .number(Double(ms))], keepAlive: keepAlive)
        case "/control/hold":
            switch query["enabled"] {
            case nil, "true", "1": holding = true
            case "false", "0": holding = false
            case let other?: throw ControlError(message: "enabled must be true or false, not \(other)")
            }
            respond(connection, json: ["holding": .bool(holding), "held": .number(Double(heldConnections.count))], keepAlive: keepAlive)
        case "/control/release":
            let count = try Self.number("count", in: query)
            let released = release(count: count)
            respond(connection, json: ["released": .number(Double(released)), "held": .number(Double(heldConnections.count))],
                    keepAlive: keepAlive)
        case "/control/wait-held":
            guard let count = try Self.number("count", in: query) else { throw ControlError(message: "wait-held needs ?count=N") }
            let timeout = try Self.number("timeout_ms", in: query) ?? 10_000
            connection.pending = .waitHeld(count: count, deadline: .after(milliseconds: UInt64(timeout)), keepAlive: keepAlive)
        case "/control/fault":
            guard let name = query["kind"] else { throw ControlError(message: "fault needs ?kind=K (\(AgentFaultKind.names) or none)") }
            if let interval = try Self.number("interval_ms", in: query) { slowBodyIntervalMilliseconds = UInt64(interval) }
            if name == "none" {
                fault = nil
            } else {
                guard let kind = AgentFaultKind(rawValue: name) else {
                    throw ControlError(message: "unknown fault kind \(name); one of \(AgentFaultKind.names) or none")
                }
                let count = try Self.number("count", in: query)
                if count == 0 { throw ControlError(message: "count must be positive (omit it for every request)") }
                fault = AgentFault(kind: kind, remaining: count)
            }
            respond(connection, json: ["fault": fault.map { .string($0.description) } ?? .null], keepAlive: keepAlive)
        default:  // "/control/reset"
            statistics.reset()
            respond(connection, json: ["reset": true], keepAlive: keepAlive)
        }
    }

    /// A non-negative decimal query parameter, nil when absent.
    static func number(_ name: String, in query: [String: String]) throws(ControlError) -> Int? {
        guard let text = query[name] else { return nil }
        guard let value = Int(text), value >= 0, value <= 1_000_000_000 else {
            throw ControlError(message: "\(name) must be a number from 0 to 1000000000, not \(text)")
        }
        return value
    }

    /// The path and the query parameters of a request target (no percent-decoding: values are numbers and names).
    static func split(_ target: String) -> (path: String, query: [String: String]) {
        guard let mark = target.firstIndex(of: "?") else { return (target, [:]) }
        var query: [String: String] = [:]
        for pair in target[target.index(after: mark)...].split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            query[String(parts[0])] = parts.count > 1 ? String(parts[1]) : ""
        }
        return (String(target[..<mark]), query)
    }

    // MARK: /info

    /// The `/info` document, shaped like datadog-agent's `infoPayload`
    /// (pkg/trace/api/info.go), and its hash for `Datadog-Agent-State`.
    /// `client_drop_p0s` is false: a tracer must send every trace, so every
    /// span can be counted.
    static func makeInfo(boundAddress: AgentListenAddress, limits: HTTPLimits) -> ([UInt8], String) {
        var port = 0
        var socketPath = ""
        switch boundAddress {
        case .tcp(let address): port = Int(address.port)
        case .unix(let path): socketPath = path
        }
        let document: JSONValue = [
            "version": "7.64.0-forkscope",
            "git_commit": "forkscope",
            "endpoints": .array(infoEndpoints.map { .string($0) }),
            "client_drop_p0s": false,
            "span_meta_structs": false,
            "long_running_spans": false,
            "span_events": false,
            "evp_proxy_allowed_headers": [],
            "config": [
                "default_env": "none",
                "target_tps": 10,
                "max_eps": 200,
                "receiver_port": .number(Double(port)),
                "receiver_socket": .string(socketPath),
                "connection_limit": 0,
                "receiver_timeout": 0,
                "max_request_bytes": .number(Double(limits.maxBodyBytes)),
                "statsd_port": 0,
                "max_memory": 0,
                "max_cpu": 0,
                "analyzed_spans_by_service": [:],
                "obfuscation": ["elastic_search": false, "mongo": false, "sql_exec_plan": false, "sql_exec_plan_normalize": false,
                                "http": ["remove_query_string": false, "remove_path_digits": false],
                                "remove_stack_traces": false],
            ],
            "peer_tags": [],
            "span_kinds_stats_computed": [],
            "obfuscation_version": 1,
        ]
        let body = document.serialized()
        // FNV-1a: the header only has to change when the body does.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in body { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
        let hex = String(hash, radix: 16)
        return (body, String(repeating: "0", count: 16 - hex.count) + hex)
    }
}
