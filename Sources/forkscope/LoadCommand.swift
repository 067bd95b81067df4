import ArgumentParser
import ForkSafety
import Glibc
import Posix
import TraceTransport
import Wire

/// `forkscope load`: a small HTTP load generator so the demo moves by
/// itself; `burst N` lines on stdin add N requests at once.
struct Load: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Send GET / to a server at a steady rate; read `burst N` lines on stdin.")

    @Option(help: "Server address, 127.0.0.1:PORT.")
    var target: String

    @Option(help: "Requests per second (0: bursts only).")
    var rps = 10

    @Option(help: "Stop after this many requests (0: run until stdin closes or a signal).")
    var count = 0

    func run() throws {
        let endpoint = try AgentEndpoint(parsing: target)
        var connection = AgentConnection(endpoint: endpoint, timeouts: Timeouts(connectMilliseconds: 1000, readMilliseconds: 5000, totalMilliseconds: 10_000))
        let source = try CancellationSource()
        var pending = 0, sent = 0, failed = 0
        var stdinOpen = true
        let interval: UInt64 = rps > 0 ? 1_000_000_000 / UInt64(rps) : 0
        var next = Clock.monotonicNanoseconds()
        var input: [UInt8] = []
        while count == 0 || sent + failed < count {
            let now = Clock.monotonicNanoseconds()
            if interval > 0 && now >= next {
                pending += 1
                next += interval
                if next < now { next = now + interval }
            }
            if pending > 0 {
                pending -= 1
                let token = source.begin()
                var headers = HTTPHeaders()
                headers.add(name: "Host", value: endpoint.host)
                // A new connection per request, so the kernel spreads the
                // load over every worker accepting on the shared socket.
                headers.add(name: "Connection", value: "close")
                switch connection.exchange(HTTPRequest(method: "GET", target: "/", headers: headers), token: token) {
                case .success(let response) where response.head.status == 200: sent += 1
                default: failed += 1
                }
                source.end(token)
                continue
            }
            if !stdinOpen && interval == 0 { break }
            var fds = stdinOpen ? [pollfd(fd: 0, events: Int16(POLLIN), revents: 0)] : []
            let wait = interval > 0 ? Int32(max(0, Int64(next) - Int64(now)) / 1_000_000) : 1000
            _ = try? poll(&fds, timeoutMilliseconds: wait)
            if stdinOpen, let entry = fds.first, entry.revents != 0 {
                var chunk = [UInt8](repeating: 0, count: 1024)
                let n = chunk.withUnsafeMutableBytes { raw in (try? FileDescriptor.standardInput.read(into: raw)) ?? 0 }
                if n <= 0 { stdinOpen = false } else { input += chunk[..<n] }
                while let newline = input.firstIndex(of: 10) {
                    let words = String(decoding: input[..<newline], as: UTF8.self).split(separator: " ")
                    input.removeSubrange(...newline)
                    if words.first == "burst", let n = words.dropFirst().first.flatMap({ Int($0) }) { pending += min(n, 100_000) }
                }
            }
        }
        print("load: \(sent) ok, \(failed) failed")
    }
}
