import Dashboard
import Glibc
import Posix

/// The last lines of every `*.log` file in a session directory (each
/// spawned process writes its stdout and stderr to one), re-read only when
/// a file's size changes.
public final class LogTail {
    public let directory: String
    public private(set) var snapshot: LogSnapshot
    private var sizes: [String: Int64] = [:]
    public static let bytesPerFile = 64 * 1024
    public static let linesPerFile = 1000

    public init(directory: String) {
        self.directory = directory
        snapshot = LogSnapshot(files: [], directory: directory)
    }

    /// Re-reads files that changed; returns whether anything did.
    @discardableResult
    public func refresh() -> Bool {
        let names = ((try? FileSystem.contents(ofDirectory: directory)) ?? []).filter { $0.hasSuffix(".log") }.sorted()
        var changed = names != snapshot.files.map(\.name)
        var files: [LogSnapshot.File] = []
        for name in names {
            let path = directory + "/" + name
            guard let status = try? FileSystem.linkStatus(path), status.isRegularFile else { continue }
            if sizes[name] == status.size, let old = snapshot.files.first(where: { $0.name == name }) {
                files.append(old)
                continue
            }
            changed = true
            sizes[name] = status.size
            files.append(LogSnapshot.File(name: name, lines: LogTail.tail(path, size: status.size), size: status.size))
        }
        if changed { snapshot = LogSnapshot(files: files, directory: directory) }
        return changed
    }

    /// The last lines of `path` (at most `bytesPerFile` are read); tabs
    /// become spaces and carriage returns go (the canvas shows any other
    /// control character as `?`).
    public static func tail(_ path: String, size: Int64, lines limit: Int = linesPerFile) -> [String] {
        guard let fd = try? FileDescriptor.open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC) else { return [] }
        defer { try? fd.close() }
        let start = max(0, size - Int64(bytesPerFile))
        var bytes = [UInt8](repeating: 0, count: Int(size - start))
        let n = bytes.withUnsafeMutableBytes { (try? fd.read(fromAbsoluteOffset: start, into: $0)) ?? 0 }
        var text = bytes[..<max(0, n)]
        if start > 0, let newline = text.firstIndex(of: 10) { text = text[(newline + 1)...] }  // skip a partial first line
        var lines = text.split(separator: 10, omittingEmptySubsequences: false).map { line in
            String(decoding: line.filter { $0 != 13 }.map { $0 == 9 ? 32 : $0 }, as: UTF8.self)
        }
        if lines.last == "" { lines.removeLast() }
        return Array(lines.suffix(limit))
    }
}
