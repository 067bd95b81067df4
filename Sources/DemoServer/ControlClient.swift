import Glibc
import Posix
import Wire

/// The operator's side of the control socket (the TUI, tests, scripts).
public final class ControlClient {
    public let path: String
    private let socket: Socket
    private var decoder = ControlFrameDecoder()

    public init(path: String) throws(SystemError) {
        self.path = path
        socket = try Socket.open(.unix, .stream, flags: [.closeOnExec])
        let address: SocketAddress
        do { address = try .unix(path: path) } catch { throw SystemError("connect", path: path, .nameTooLong) }
        do { _ = try socket.connect(to: address) } catch {
            try? socket.close()
            throw error
        }
    }

    deinit { try? socket.close() }

    /// Sends one request and waits (at most `seconds`) for its reply.
    public func send(_ request: ControlRequest, within seconds: Double = 35) -> Result<ControlMessage, ControlError> {
        send(request.message, within: seconds)
    }

    /// Sends any message (tests send malformed ones on purpose).
    public func send(_ message: ControlMessage, within seconds: Double = 35) -> Result<ControlMessage, ControlError> {
        do {
            let frame = try ControlFrame.encode(message)
            try sendRaw(frame)
            return try receive(within: seconds)
        } catch let error as ControlError {
            return .failure(error)
        } catch {
            return .failure(.failed("\(error)"))
        }
    }

    public func sendRaw(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in Result { () throws(SystemError) in try socket.sendAll(raw) } }.get()
    }

    /// Reads one reply; `ok: false` replies become `.failure`.
    public func receive(within seconds: Double = 35) throws -> Result<ControlMessage, ControlError> {
        let deadline = Deadline(seconds: seconds)
        var chunk = [UInt8](repeating: 0, count: 8192)
        while true {
            if let message = try decoder.next() {
                if message["ok"]?.boolValue == true { return .success(message) }
                return .failure(.failed(message["error"]?.stringValue ?? "no error text"))
            }
            guard try socket.fileDescriptor.poll(for: Int16(POLLIN), deadline: deadline) != 0 else {
                return .failure(.failed("no reply from \(path) within \(seconds) s"))
            }
            let n = try chunk.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try socket.receive(into: raw) } }.get()
            if n == 0 { return .failure(.failed("the server closed the control connection")) }
            decoder.feed(chunk[..<n])
        }
    }
}
