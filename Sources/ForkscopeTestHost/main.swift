// forkscope-testhost: real processes for the ring's tests, so no test forks
// the XCTest process. Each mode does one thing and reports on stdout.
//
//   publish RING COUNT      wait for a byte on stdin, publish COUNT marks, print "done"
//   stall RING              publish one event that stops (SIGSTOP) after its odd stamp
//   hold RING               publish one event, print "held", keep the lane until stdin closes
//   signals RING COUNT      publish COUNT marks while SIGALRM handlers publish on the same lane
//   fork-raw RING           publish, fork() without hooks, child publishes; print child pid
//   seed-fork RING URL POLICY  the first seed's delaying-agent fork (see SeedForkScenario)
//   fork-… RING [ARG]       the fork scenarios of ForkSafetyTests (ForkScenarios.swift)
import CPosix
import EventRing
import Glibc
import Posix

let arguments = CommandLine.arguments
guard arguments.count >= 3 else {
    try? FileDescriptor.standardError.writeAll("usage: forkscope-testhost MODE RING [COUNT]\n")
    exit(64)
}
let mode = arguments[1], path = arguments[2]
let count = arguments.count > 3 ? Int(arguments[3]) ?? 0 : 0

let ring: Ring
do { ring = try Ring.open(at: path) } catch {
    try? FileDescriptor.standardError.writeAll("forkscope-testhost: \(error)\n")
    exit(2)
}
let writer = ring.writer
let pid = UInt64(UInt32(bitPattern: getpid()))

func say(_ text: String) { try? FileDescriptor.standardOutput.writeAll(text + "\n") }
func waitForStdin() -> Bool {
    var byte: UInt8 = 0
    return (try? withUnsafeMutableBytes(of: &byte) { try FileDescriptor.standardInput.read(into: $0) }) == 1
}

switch mode {
case "publish":
    _ = waitForStdin()
    var dropped = 0
    for i in 0..<count where writer.publish(.mark, UInt64(i), pid) != nil { dropped += 1 }
    say("done \(dropped)")
case "stall":
    fks_set_debug_stall_pid(Int32(pid))
    writer.publish(.mark, 1, pid)
    say("resumed")
case "hold":
    let outcome = writer.publish(.mark, 1, pid)
    say(outcome == nil ? "held" : "dropped \(outcome!)")
    while waitForStdin() {}
case "signals":
    let published = SignalPublisher.run(writer: writer, count: count)
    say("main \(count) handler \(published)")
case "fork-raw":
    writer.publish(.mark, 1, pid)
    let child = fork()
    if child == 0 {
        let own = UInt64(UInt32(bitPattern: getpid()))
        writer.publish(.mark, 2, own)
        _exit(0)
    }
    let status = try? ProcessControl.wait(for: child)
    say("child \(child) \(status.map { "\($0.status)" } ?? "lost")")
case "seed-fork":
    guard arguments.count > 4 else { exit(64) }
    exit(SeedForkScenario.run(ring: path, agentURL: arguments[3], policy: arguments[4]))
case _ where mode.hasPrefix("fork-"):
    ForkScenarios.run(mode, writer: writer, arguments: Array(arguments.dropFirst(3)))
default:
    try? FileDescriptor.standardError.writeAll("forkscope-testhost: unknown mode \(mode)\n")
    exit(64)
}
exit(0)
