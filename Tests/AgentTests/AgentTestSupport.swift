import Glibc
import Posix
import TestSupport
import Wire
import XCTest

/// Why a test client call failed; `errno` is set when a system call failed.
struct ClientError: Error, CustomStringConvertible {
    let description: String
    var errno: Errno?
}

/// A small blocking HTTP/1.1 client for tests, on Posix sockets and Wire's
/// parser and writer. Every wait has a deadline (the socket is
/// non-blocking and each wait is a `poll`), so a hung agent fails the test
/// instead of hanging it.
final class TestClient {
    let socket: Socket
    var parser = HTTPResponseParser()
    private var closed = false

    init(_ address: SocketAddress, within seconds: Double = 5) throws {
        socket = try Socket.open(address.family, .stream, flags: [.closeOnExec, .nonBlocking])
        do {
            if try socket.connect(to: address) == .inProgress {
                guard try socket.fileDescriptor.poll(for: Int16(POLLOUT), deadline: Deadline(seconds: seconds)) != 0 else {
                    throw ClientError(description: "connect to \(address) timed out", errno: .timedOut)
                }
                if let error = try socket.pendingError() { throw ClientError(description: "connect to \(address): \(error)", errno: error) }
            }
        } catch {
            try? socket.close()
            throw error
        }
    }

    convenience init(port: UInt16, within seconds: Double = 5) throws {
        try self.init(.ipv4(.loopback(port: port)), within: seconds)
    }

    deinit { close() }

    func close() {
        guard !closed else { return }
        closed = true
        try? socket.close()
    }

    /// Sends every byte, waiting for room at most `seconds`.
    func send(_ bytes: [UInt8], within seconds: Double = 5) throws {
        let deadline = Deadline(seconds: seconds)
        var done = 0
        while done < bytes.count {
            let result = bytes.withUnsafeBytes { raw in
                Result { () throws(SystemError) in try socket.send(UnsafeRawBufferPointer(rebasing: raw[done...])) }
            }
            switch result {
            case .success(let n): done += n
            case .failure(let error) where error.errno == .wouldBlock:
                guard try socket.fileDescriptor.poll(for: Int16(POLLOUT), deadline: deadline) != 0 else {
                    throw ClientError(description: "send timed out after \(done) of \(bytes.count) bytes", errno: .timedOut)
                }
            case .failure(let error):
                throw ClientError(description: "send: \(error)", errno: error.errno)
            }
        }
    }

    func send(_ request: HTTPRequest) throws {
        try send(try request.serialized())
    }

    /// Reads what is there, waiting at most until `deadline`: nil at end
    /// of file, [] when the deadline passed first.
    func receive(until deadline: Deadline) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let result = buffer.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try socket.receive(into: raw) } }
            switch result {
            case .success(0): return nil
            case .success(let n): return Array(buffer[0..<n])
            case .failure(let error) where error.errno == .wouldBlock:
                if try socket.fileDescriptor.poll(for: Int16(POLLIN), deadline: deadline) == 0 { return [] }
            case .failure(let error):
                throw ClientError(description: "recv: \(error)", errno: error.errno)
            }
        }
    }

    /// The next final response (1xx skipped), within `seconds`.
    func readResponse(to method: String = "GET", within seconds: Double = 5) throws -> HTTPResponse {
        let deadline = Deadline(seconds: seconds)
        while true {
            while let response = try parser.nextResponse(to: method) {
                if !response.head.isInformational { return response }
            }
            guard let bytes = try receive(until: deadline) else {
                if let response = try parser.endOfStream() { return response }
                throw ClientError(description: "the agent closed the connection before a response", errno: nil)
            }
            if bytes.isEmpty { throw ClientError(description: "no response within \(seconds) s", errno: .timedOut) }
            parser.feed(bytes)
        }
    }

    /// Everything until the agent closes (or resets) the connection.
    func readUntilClosed(within seconds: Double = 5) -> (bytes: [UInt8], error: ClientError?) {
        let deadline = Deadline(seconds: seconds)
        var all: [UInt8] = []
        while true {
            do {
                guard let bytes = try receive(until: deadline) else { return (all, nil) }
                if bytes.isEmpty { return (all, ClientError(description: "still open after \(seconds) s", errno: .timedOut)) }
                all += bytes
            } catch let error as ClientError {
                return (all, error)
            } catch {
                return (all, ClientError(description: "\(error)", errno: nil))
            }
        }
    }

    func exchange(_ request: HTTPRequest, within seconds: Double = 5) throws -> HTTPResponse {
        try send(request)
        return try readResponse(to: request.method, within: seconds)
    }
}

/// A `forkscope agent` process for one test, on a free loopback port.
final class AgentProcess {
    let process: SpawnedProcess
    let port: UInt16
    let address: String

    init(_ arguments: [String] = [], listen: String = "127.0.0.1:0", environment: [String]? = nil,
         file: StaticString = #filePath, line: UInt = #line) throws {
        process = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", listen] + arguments, environment: environment)
        let first = try process.readLine(within: 10, file: file, line: line)
        guard first.hasPrefix("listening on ") else {
            process.kill()
            XCTFail("unexpected first line from forkscope agent: \(first)", file: file, line: line)
            throw ClientError(description: "no listening line", errno: nil)
        }
        address = String(first.dropFirst("listening on ".count))
        port = address.hasPrefix("unix:") ? 0 : UInt16(address[address.index(after: address.lastIndex(of: ":")!)...]) ?? 0
    }

    deinit { process.kill() }

    func client() throws -> TestClient {
        if address.hasPrefix("unix:") { return try TestClient(.unix(path: String(address.dropFirst(5)))) }
        return try TestClient(port: port)
    }

    /// One request on a fresh connection.
    func request(_ method: String, _ target: String, headers: HTTPHeaders = [:], body: [UInt8] = [], within seconds: Double = 5) throws -> HTTPResponse {
        let connection = try client()
        defer { connection.close() }
        return try connection.exchange(HTTPRequest(method: method, target: target, headers: headers, body: body), within: seconds)
    }

    /// A control request that must succeed; its JSON reply.
    @discardableResult
    func control(_ target: String, method: String = "POST", file: StaticString = #filePath, line: UInt = #line) throws -> JSONValue {
        let response = try request(method, target)
        XCTAssertEqual(response.status, 200, "\(target): \(String(decoding: response.body, as: UTF8.self))", file: file, line: line)
        return try JSONValue(parsing: response.body)
    }

    func stats(file: StaticString = #filePath, line: UInt = #line) throws -> AgentStats {
        AgentStats(try control("/stats", method: "GET", file: file, line: line))
    }

    /// Sends a payload of `traces` on a fresh connection and returns the reply.
    func sendTraces(_ traces: [[Span]], version: TraceAPIVersion = .v04, method: String = "PUT", within seconds: Double = 5) throws -> HTTPResponse {
        try request(method, version.path, headers: tracerHeaders(traces), body: version.encode(traces), within: seconds)
    }

    /// SIGTERM, then the exit status.
    func terminate() throws -> WaitStatus {
        try ProcessControl.send(SIGTERM, to: process.pid)
        return try process.wait(within: 10)
    }
}

/// `/stats`, read.
struct AgentStats {
    let json: JSONValue

    init(_ json: JSONValue) { self.json = json }

    subscript(_ key: String) -> Int { Int(json[key]?.numberValue ?? -1) }

    func process(_ pid: Int32) -> (spans: Int, unique: Int, duplicates: Int)? {
        guard let tally = json["per_process"]?[String(pid)] else { return nil }
        return (Int(tally["spans"]?.numberValue ?? -1), Int(tally["unique"]?.numberValue ?? -1), Int(tally["duplicates"]?.numberValue ?? -1))
    }

    func endpoint(_ route: String) -> Int { Int(json["endpoints"]?[route]?.numberValue ?? 0) }

    func status(_ code: Int) -> Int { Int(json["statuses"]?[String(code)]?.numberValue ?? 0) }

    func fault(_ kind: String) -> (requests: Int, spans: Int, counted: Bool)? {
        guard let tally = json["faults_applied"]?[kind] else { return nil }
        return (Int(tally["requests"]?.numberValue ?? -1), Int(tally["spans"]?.numberValue ?? -1), tally["counted"]?.boolValue ?? false)
    }
}

func tracerHeaders(_ traces: [[Span]]) -> HTTPHeaders {
    TracePayload.requestHeaders(traceCount: traces.count, tracer: TracerIdentity(language: "swift", languageVersion: "6", tracerVersion: "test"))
}

/// `count` traces of `perTrace` spans, ids from `firstID`; the root of each
/// carries `process_id` (as real tracers do) when `pid` is given.
func makeTraces(count: Int, perTrace: Int, firstID: UInt64, pid: Int32? = 4242) -> [[Span]] {
    var id = firstID
    return (0..<count).map { index in
        let traceID = firstID &* 1000 &+ UInt64(index)
        var rootID: UInt64 = 0
        return (0..<perTrace).map { position in
            defer { id += 1 }
            var span = Span(traceID: traceID, spanID: id, parentID: position == 0 ? 0 : rootID, name: "op.\(position)",
                            resource: "GET /r/\(index)", service: "agent-tests", type: "web",
                            start: 1_700_000_000_000_000_000 + Int64(id), duration: 1000, meta: ["k": "v\(id)"])
            if position == 0 {
                rootID = id
                if let pid { span.metrics["process_id"] = Double(pid) }
                span.metrics["_sampling_priority_v1"] = 1
            }
            return span
        }
    }
}

/// Waits up to `seconds` for `condition`, re-checking every 10 ms.
func eventually(within seconds: Double = 5, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Deadline(seconds: seconds)
    while true {
        if try condition() { return true }
        if deadline.hasPassed { return false }
        var none: [pollfd] = []
        _ = try? poll(&none, timeoutMilliseconds: 10)
    }
}
