import ArgumentParser
import Dashboard
import EventRing
import Posix
import Terminal

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List sessions, newest first, with their processes and whether they are live.",
        discussion: "A session is stale when none of its processes is alive and it is older than a day; --clean removes stale sessions."
    )

    @Flag(help: "Remove stale sessions (no live process, older than a day).")
    var clean = false

    @Flag(name: .shortAndLong, help: "List only the sessions, not their processes.")
    var quiet = false

    func run() throws {
        if clean {
            for path in SessionCatalog.removeStale() { print("removed \(path)") }
        }
        let sessions = SessionCatalog.list()
        if sessions.isEmpty {
            print("no sessions under \(SessionDirectory.root())")
            return
        }
        let now = Clock.realtimeNanoseconds() / 1_000_000
        for info in sessions {
            let state: String
            switch info.ring {
            case .missing: state = "no ring"
            case .unreadable(let why): state = "unreadable ring: \(why)"
            case .readable:
                let header = (try? RingReader(path: info.session.ringPath, mode: .live).header)
                state = header.map { "ring of \($0.laneCount) lanes × \($0.slotsPerLane) slots, created by pid \($0.creatorPid)" } ?? "ring"
            }
            var age = ""
            if let created = info.createdMilliseconds, now >= created { age = ", " + Format.duration((now - created) * 1_000_000) + " old" }
            let liveness = info.isLive ? "live" : info.isStale(olderThan: SessionCatalog.staleAfterSeconds) ? "stale" : "ended"
            print("\(info.session.path)  \(liveness)  \(state)\(age)")
            guard !quiet, let model = info.model else { continue }
            for row in model.tree() {
                let p = model.processes[row.index]
                let indent = String(repeating: "  ", count: min(row.depth, 6))
                let alive = info.alive.contains(p.key) ? "alive" : "-"
                print("    \(indent)\(Format.pad(String(p.key.pid), 8))\(Format.pad(p.role.name, 8))\(Format.pad(p.state.label, 10))\(Format.pad(alive, 6))\(p.displayName)")
            }
        }
    }
}
