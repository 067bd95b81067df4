import ArgumentParser
import EventRing
import Posix

/// Resolves the PATH argument shared by `dump`, `attach`, `export`: a ring
/// file, a session directory, or (when omitted) the newest session's ring.
enum RingLocation {
    static func resolve(_ path: String?) throws -> String {
        if let path {
            if let status = try? FileSystem.linkStatus(path), status.isDirectory {
                return SessionDirectory(path: path).ringPath
            }
            return path
        }
        for session in SessionDirectory.list() where FileSystem.exists(session.ringPath) {
            return session.ringPath
        }
        throw ValidationError("no session found under \(SessionDirectory.root()); start one with `forkscope`, or pass a ring file")
    }
}

/// A user-facing failure: one line on stderr, then the given exit code.
struct Failure: Error, CustomStringConvertible {
    let message: String
    let code: Int32
    var description: String { message }

    static func exit(_ message: String, code: Int32) -> Never {
        try? FileDescriptor.standardError.writeAll("forkscope: \(message)\n")
        Glibc.exit(code)
    }
}

import Glibc
