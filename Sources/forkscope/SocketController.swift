import Dashboard
import DemoServer
import ForkSafety
import Glibc
import Posix
import Synchronization
import Wire

/// The dashboard's control keys carried to the demo server's control
/// socket. One connection, reopened when it breaks; commands run one at a
/// time on the dashboard's controller worker thread.
final class SocketController: Controller {
    let path: String
    private let client = Mutex<ControlClient?>(nil)

    init(path: String) { self.path = path }

    func perform(_ command: ControlCommand) -> ControlResult {
        let request: ControlRequest
        switch command {
        case .fork(let target):
            // Fork from the master (a worker's key forks a sibling through it).
            guard let master = masterKey() else { return .failed("no master on \(path)") }
            request = target == master ? .fork(pid: master.pid, start: master.start) : .fork(pid: master.pid, start: master.start)
        case .unsafeFork: request = .forkUnsafe
        case .cancelSend(let target): request = .cancel(pid: target.pid, start: target.start)
        case .kill(let target, let signal): request = .kill(pid: target.pid, start: target.start, signal: signal)
        case .burst(let requests): request = .burst(requests)
        case .agentDelay(let ms): request = .agentDelay(milliseconds: ms)
        case .forkPolicy(let setting):
            guard let policy = SendPolicy(parsing: setting.text) else { return .failed("bad policy \(setting.text)") }
            request = .policy(policy)
        }
        switch send(request) {
        case .success(let reply):
            let detail = reply.fields.filter { $0.key != "ok" }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            return .done("\(command): \(detail.isEmpty ? "done" : detail)")
        case .failure(let error):
            return .failed("\(command): \(error)")
        }
    }

    private func masterKey() -> ProcessKey? {
        guard case .success(let reply) = send(.processes) else { return nil }
        for entry in reply["processes"]?.arrayValue ?? [] where entry["role"]?.stringValue == "master" {
            return ProcessKey(pid: Int32(entry["pid"]?.int64Value ?? 0), start: UInt64(entry["start"]?.int64Value ?? 0))
        }
        return nil
    }

    private func send(_ request: ControlRequest) -> Result<ControlMessage, ControlError> {
        client.withLock { client in
            for attempt in 0..<2 {
                if client == nil {
                    do { client = try ControlClient(path: path) } catch {
                        return .failure(.failed("cannot reach \(path): \(error)"))
                    }
                }
                let result = client!.send(request, within: 35)
                if case .failure(.failed(let why)) = result, attempt == 0, why.contains("closed") {
                    client = nil  // the server hung up: reconnect once
                    continue
                }
                return result
            }
            return .failure(.failed("unreachable"))
        }
    }
}
