import Glibc
import Posix
import Wire

/// A loopback listener the test drives by hand: accept when asked, read
/// what arrives, answer (or not). It shows the client's behaviour in each
/// phase of an exchange — connect, write, read — without a real agent.
final class LoopbackServer {
    let listener: Socket
    let address: SocketAddress
    var accepted: [Socket] = []

    init(backlog: CInt = 16) throws {
        listener = try Socket.open(.ipv4, .stream, flags: [.closeOnExec])
        try listener.setOption(.reuseAddress, true)
        try listener.bind(to: .ipv4(.loopback(port: 0)))
        try listener.listen(backlog: backlog)
        address = try listener.localAddress()
    }

    deinit {
        for socket in accepted { try? socket.close() }
        try? listener.close()
    }

    var url: String { "http://\(address)" }

    /// Accepts one connection (waiting at most `seconds`).
    @discardableResult
    func accept(within seconds: Double = 10) throws -> Socket {
        guard try listener.fileDescriptor.poll(for: Int16(POLLIN), deadline: Deadline(seconds: seconds)) != 0 else {
            throw SystemError("accept", path: "\(address)", .timedOut)
        }
        let socket = try listener.accept()
        accepted.append(socket)
        return socket
    }

    /// Reads one whole HTTP request from `socket`.
    func readRequest(from socket: Socket, within seconds: Double = 10) throws -> HTTPRequest {
        var parser = HTTPRequestParser()
        let deadline = Deadline(seconds: seconds)
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            if let request = try parser.nextRequest() { return request }
            guard try socket.fileDescriptor.poll(for: Int16(POLLIN), deadline: deadline) != 0 else {
                throw SystemError("recv", path: "request", .timedOut)
            }
            let n = try chunk.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try socket.receive(into: raw) } }.get()
            if n == 0 { throw SystemError("recv", path: "request (peer closed)", .connectionReset) }
            parser.feed(chunk[..<n])
        }
    }

    func respond(on socket: Socket, status: Int = 200, body: String = "{\"rate_by_service\":{\"service:,env:\":1}}", close: Bool = false) throws {
        var headers: HTTPHeaders = ["Content-Type": "application/json"]
        if close { headers.add(name: "Connection", value: "close") }
        let response = HTTPResponse(head: HTTPResponseHead(status: status, headers: headers), body: Array(body.utf8))
        try send(response.serialized(), on: socket)
    }

    func send(_ bytes: [UInt8], on socket: Socket) throws {
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try socket.sendAll(raw) } }.get()
    }
}
