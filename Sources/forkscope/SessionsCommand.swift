import ArgumentParser
import EventRing
import Posix

struct Sessions: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ls",
        abstract: "List sessions, newest first."
    )

    func run() throws {
        let sessions = SessionDirectory.list()
        if sessions.isEmpty {
            print("no sessions under \(SessionDirectory.root())")
            return
        }
        for session in sessions {
            let ring = session.ringPath
            let state: String
            if let reader = try? RingReader(path: ring) {
                state = "ring of \(reader.header.laneCount) lanes × \(reader.header.slotsPerLane) slots, created by pid \(reader.header.creatorPid)"
            } else {
                state = FileSystem.exists(ring) ? "unreadable ring" : "no ring"
            }
            print("\(session.path)  \(state)")
        }
    }
}
