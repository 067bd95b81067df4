import ArgumentParser
import EventRing
import Glibc
import Posix

/// `forkscope bench host`: the demo server under `wrk`, with the exporter
/// on and off, side by side in one run.
struct HostBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "host",
        abstract: "Requests/s of the demo server under wrk with the exporter on vs off (target overhead ≤ 5 %)."
    )

    @Option(help: "Seconds of load per measurement.")
    var seconds = 5

    @Option(help: "Rounds (on, off alternating); the median of each is reported.")
    var rounds = 3

    @Flag(help: "Run even in a debug build (figures are then meaningless).")
    var allowDebug = false

    func run() throws {
        #if DEBUG
        if !allowDebug {
            Failure.exit("this is a debug build: its figures mean nothing. Run `swift run -c release forkscope bench host` (or pass --allow-debug)", code: 2)
        }
        #endif
        guard FileSystem.exists("/usr/bin/wrk") else { Failure.exit("wrk is not installed (apt-get install wrk)", code: 2) }
        let agent = try BenchAgent()
        defer { agent.stop() }
        var on: [Double] = [], off: [Double] = []
        var delivered: AgentStats?
        for _ in 0..<rounds {
            // Each round's agent starts empty: the spans it remembers (to
            // count duplicates) are this round's, not every earlier round's.
            try agent.control("POST", "/control/reset")
            on.append(try measure(exporter: true, agent: agent))
            delivered = AgentStats.fetch(agent.endpoint.description)
            off.append(try measure(exporter: false, agent: agent))
        }
        let medianOn = on.sorted()[on.count / 2], medianOff = off.sorted()[off.count / 2]
        let overhead = (medianOff - medianOn) / medianOff * 100
        print("forkscope bench host — 2 workers (unicorn profile, preload), wrk -t2 -c32 -d\(seconds)s, median of \(rounds)")
        print(pad("exporter", 20) + pad("requests/s", 14, right: true))
        print(pad("off", 20) + pad(fixed(medianOff, 0), 14, right: true))
        print(pad("on", 20) + pad(fixed(medianOn, 0), 14, right: true))
        print("overhead: \(fixed(overhead, 1)) % (target ≤ 5 %)")
        if let delivered { print("agent, last round with the exporter on: \(delivered)") }
        print("{\"bench\":\"host\",\"rps_exporter_off\":\(Int(medianOff)),\"rps_exporter_on\":\(Int(medianOn)),\"overhead_percent\":\(fixed(overhead, 1))}")
    }

    func measure(exporter: Bool, agent: BenchAgent) throws -> Double {
        let executable = try ProcessControl.currentExecutablePath()
        let out = try FileDescriptor.pipe()
        let server = try Spawn.run(executable, arguments: [
            "forkscope", "serve", "--workers", "2", "--agent-url", agent.endpoint.description, exporter ? "--exporter" : "--no-exporter",
        ], fileActions: [.duplicate(out.write, as: .standardOutput), .nullDevice(as: .standardError)])
        try out.write.close()
        defer {
            try? ProcessControl.send(SIGQUIT, to: server)
            _ = try? ProcessControl.wait(for: server, deadline: .after(milliseconds: 30_000))
            try? out.read.close()
        }
        guard try out.read.poll(for: Int16(POLLIN), deadline: Deadline(seconds: 10)) != 0 else { throw ValidationError("serve did not start") }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = try buffer.withUnsafeMutableBytes { raw in Result { () throws(SystemError) in try out.read.read(into: raw) } }.get()
        let line = String(decoding: buffer[..<n], as: UTF8.self).split(separator: "\n").first ?? ""
        let address = line.dropFirst("listening on ".count)
        let report = try FileDescriptor.pipe()
        let wrk = try Spawn.run("/usr/bin/wrk", arguments: ["wrk", "-t2", "-c32", "-d\(seconds)s", "http://\(address)/"],
                                fileActions: [.duplicate(report.write, as: .standardOutput)])
        try report.write.close()
        let text = String(decoding: try report.read.readAll(limit: 1 << 20), as: UTF8.self)
        try report.read.close()
        _ = try ProcessControl.wait(for: wrk, deadline: .after(milliseconds: UInt64(seconds + 30) * 1000))
        guard let rate = text.split(separator: "\n").first(where: { $0.hasPrefix("Requests/sec:") })?
            .split(separator: " ").last.flatMap({ Double($0) }) else {
            throw ValidationError("could not read wrk's output:\n\(text)")
        }
        return rate
    }
}
