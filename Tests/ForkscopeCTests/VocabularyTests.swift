import EventRing
import XCTest

/// The C header's and the Python binding's copies of the event vocabulary
/// are generated from the one Swift list: these tests render what the
/// blocks must say and compare them with the files. To regenerate after
/// appending an event kind:
///
///     FORKSCOPE_REGENERATE=1 swift test --filter VocabularyTests
final class VocabularyTests: XCTestCase {
    func testHeaderVocabularyIsGeneratedFromEventKindAllCases() throws {
        try checkGenerated("Sources/CForkscope/include/forkscope.h", begin: "/* BEGIN GENERATED: vocabulary */",
                           end: "/* END GENERATED: vocabulary */", expected: VocabularyRenderer.cBlock())
    }

    func testPythonVocabularyIsGeneratedFromEventKindAllCases() throws {
        try checkGenerated("bindings/python/forkscope/_vocabulary.py", begin: "# BEGIN GENERATED: vocabulary",
                           end: "# END GENERATED: vocabulary", expected: VocabularyRenderer.pythonBlock())
    }

    private func checkGenerated(_ file: String, begin: String, end: String, expected: String) throws {
        let text = try RepositoryFile.read(file)
        let block = try XCTUnwrap(GeneratedBlock.extract(from: text, begin: begin, end: end), "\(file) has no GENERATED markers")
        if block == expected { return }
        if getenv("FORKSCOPE_REGENERATE") != nil {
            try RepositoryFile.write(file, GeneratedBlock.replace(in: text, begin: begin, end: end, with: expected))
            return
        }
        XCTFail("\(file) is out of date with EventKind.swift; run FORKSCOPE_REGENERATE=1 swift test --filter VocabularyTests. Expected block:\n\(expected)")
    }

    /// Independent of the renderer: every `FORKSCOPE_EVENT_X = N` in the
    /// header is exactly one Swift case with that number and name.
    func testHeaderEventNumbersAndNamesMatchSwift() throws {
        let header = try RepositoryFile.read("Sources/CForkscope/include/forkscope.h")
        var found: [UInt16: String] = [:]
        for line in header.split(separator: "\n") {
            let text = line.trimmingCharacters(in: .whitespaces)
            guard text.hasPrefix("FORKSCOPE_EVENT_"), let eq = text.firstIndex(of: "=") else { continue }
            let name = text[..<eq].trimmingCharacters(in: .whitespaces)
            let number = text[text.index(after: eq)...].prefix { $0 == " " || $0.isNumber }.trimmingCharacters(in: .whitespaces)
            let value = try XCTUnwrap(UInt16(number), "unparsable line: \(text)")
            XCTAssertNil(found[value], "\(value) appears twice in forkscope.h")
            found[value] = name
        }
        XCTAssertEqual(found.count, EventKind.allCases.count)
        for kind in EventKind.allCases {
            XCTAssertEqual(found[kind.rawValue], VocabularyRenderer.cName(kind), "kind \(kind.rawValue) \(kind.name)")
        }
    }
}

/// Renders the generated blocks from the Swift vocabulary.
enum VocabularyRenderer {
    static func cName(_ kind: EventKind) -> String {
        "FORKSCOPE_EVENT_" + kind.name.uppercased().replacingOccurrences(of: ".", with: "_")
    }

    /// `drainThenCancel` → `DRAIN_THEN_CANCEL`.
    static func upperSnake(_ camel: String) -> String {
        var out = ""
        for character in camel {
            if character.isUppercase, !out.isEmpty { out += "_" }
            out += character.uppercased()
        }
        return out
    }

    static func valueTables() -> [(type: String, prefix: String, title: String, cases: [(case: String, name: String, value: UInt64)])] {
        func cases<T: CaseIterable & RawRepresentable>(_: T.Type, _ name: (T) -> String) -> [(String, String, UInt64)] where T.RawValue == UInt64 {
            T.allCases.map { (String(describing: $0), name($0), $0.rawValue) }
        }
        return [
            ("forkscope_fork_stage", "FORKSCOPE_FORK_STAGE_", "Fork stages (argument type stage).", cases(ForkStage.self, \.name)),
            ("forkscope_fork_policy", "FORKSCOPE_FORK_POLICY_", "What a fork does with a send in flight (policy).", cases(ForkPolicy.self, \.name)),
            ("forkscope_process_role", "FORKSCOPE_ROLE_", "Process roles (role).", cases(ProcessRole.self, \.name)),
            ("forkscope_cancel_reason", "FORKSCOPE_CANCEL_", "Why a send was cancelled (cancelReason).", cases(CancelReason.self, \.name)),
            ("forkscope_drop_reason", "FORKSCOPE_DROP_", "Why spans were dropped (dropReason).", cases(DropReason.self, \.name)),
            ("forkscope_outcome", "FORKSCOPE_OUTCOME_", "Outcomes (outcome).", cases(Outcome.self, \.name)),
        ].map { (type: $0.0, prefix: $0.1, title: $0.2, cases: $0.3.map { (case: $0.0, name: $0.1, value: $0.2) }) }
    }

    static func cBlock() -> String {
        var lines = ["/** Event kinds (stable numbers; arguments a0..a3 as listed; (string) = a string-table offset). */",
                     "enum forkscope_event_kind {"]
        let kinds = EventKind.allCases
        for (index, kind) in kinds.enumerated() {
            let arguments = kind.arguments.map { "\($0.name)(\($0.type))" }.joined(separator: " ")
            let comma = index == kinds.count - 1 ? "" : ","
            lines.append("    \(cName(kind)) = \(kind.rawValue)\(comma) /* \(kind.name): \(arguments) */")
        }
        lines.append("};")
        for table in valueTables() {
            lines.append("/** \(table.title) */")
            lines.append("enum \(table.type) {")
            for (index, entry) in table.cases.enumerated() {
                let comma = index == table.cases.count - 1 ? "" : ","
                lines.append("    \(table.prefix)\(upperSnake(entry.case)) = \(entry.value)\(comma) /* \(entry.name) */")
            }
            lines.append("};")
        }
        return lines.joined(separator: "\n")
    }

    static func pythonBlock() -> String {
        var lines = ["EVENT_KINDS = {"]
        for kind in EventKind.allCases { lines.append("    \"\(kind.name)\": \(kind.rawValue),") }
        lines.append("}")
        lines.append("# The arguments a0..a3 of each kind: (name, type); \"string\" = interned.")
        lines.append("EVENT_ARGUMENTS = {")
        for kind in EventKind.allCases {
            let arguments = kind.arguments.map { "(\"\($0.name)\", \"\($0.type)\")" }
            lines.append("    \"\(kind.name)\": (\(arguments.joined(separator: ", "))\(arguments.count == 1 ? "," : "")),")
        }
        lines.append("}")
        for table in valueTables() {
            let variable = table.type.replacingOccurrences(of: "forkscope_", with: "").uppercased()
            lines.append("\(variable) = {")
            for entry in table.cases { lines.append("    \"\(entry.name)\": \(entry.value),") }
            lines.append("}")
        }
        return lines.joined(separator: "\n")
    }
}

enum GeneratedBlock {
    /// The lines strictly between the `begin` and `end` marker lines.
    static func extract(from text: String, begin: String, end: String) -> String? {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.firstIndex(of: begin), let last = lines.firstIndex(of: end), first < last else { return nil }
        return lines[(first + 1)..<last].joined(separator: "\n")
    }

    static func replace(in text: String, begin: String, end: String, with block: String) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard let first = lines.firstIndex(of: begin), let last = lines.firstIndex(of: end), first < last else { return text }
        lines.replaceSubrange((first + 1)..<last, with: block.split(separator: "\n", omittingEmptySubsequences: false).map(String.init))
        return lines.joined(separator: "\n")
    }
}

/// Files of this repository, found from this source file's path.
enum RepositoryFile {
    static var root: String {
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path
    }

    static func read(_ relative: String) throws -> String {
        let path = root + "/" + relative
        guard let file = fopen(path, "r") else { throw CocoaError(.fileReadNoSuchFile, userInfo: [NSFilePathErrorKey: path]) }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&buffer, 1, buffer.count, file)
            if n == 0 { break }
            bytes += buffer[..<n]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    static func write(_ relative: String, _ text: String) throws {
        let path = root + "/" + relative
        guard let file = fopen(path, "w") else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
        defer { fclose(file) }
        let bytes = Array(text.utf8)
        guard fwrite(bytes, 1, bytes.count, file) == bytes.count else { throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path]) }
    }
}
