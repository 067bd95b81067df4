import Posix
import XCTest

/// The fork-safety rules of DESIGN.md, checked on the module's source text:
/// code that runs in a process that forks uses only POSIX threads and
/// syscalls — after Dispatch, Swift concurrency or NIO ran in a parent,
/// work in a forked child never runs or shutdown hangs.
final class SourceRulesTests: XCTestCase {
    /// The package root: this file is Tests/ForkSafetyTests/SourceRulesTests.swift.
    private static let packageRoot: String = {
        var path = "\(#filePath)"
        for _ in 0..<3 { path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)]) }
        return path
    }()

    private func forkSafetySources() throws -> [(name: String, text: String)] {
        let directory = SourceRulesTests.packageRoot + "/Sources/ForkSafety"
        let names = try FileSystem.contents(ofDirectory: directory).filter { $0.hasSuffix(".swift") }.sorted()
        XCTAssertFalse(names.isEmpty, "no sources under \(directory)")
        return try names.map { ($0, String(decoding: try FileSystem.readFile(directory + "/" + $0), as: UTF8.self)) }
    }

    /// The text of a Swift source with comments and string literals
    /// blanked out, so a rule matches code, not prose about the rule.
    static func codeOnly(_ source: String) -> String {
        var out = ""
        var chars = Array(source.unicodeScalars)[...]
        var blockDepth = 0
        var inLineComment = false, inString = false
        while let c = chars.first {
            let next = chars.dropFirst().first
            chars = chars.dropFirst()
            if inLineComment {
                if c == "\n" { inLineComment = false; out.unicodeScalars.append(c) }
            } else if blockDepth > 0 {
                if c == "*" && next == "/" { blockDepth -= 1; chars = chars.dropFirst() }
                else if c == "/" && next == "*" { blockDepth += 1; chars = chars.dropFirst() }
                else if c == "\n" { out.unicodeScalars.append(c) }
            } else if inString {
                if c == "\\" { chars = chars.dropFirst() } else if c == "\"" { inString = false; out.append("\"\"") }
            } else if c == "/" && next == "/" {
                inLineComment = true
            } else if c == "/" && next == "*" {
                blockDepth = 1
                chars = chars.dropFirst()
            } else if c == "\"" {
                inString = true
            } else {
                out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// Whole words of `code` (identifiers and keywords).
    static func words(_ code: String) -> [Substring] {
        code.split { !($0.isLetter || $0.isNumber || $0 == "_") }
    }

    func testForkSafetyImportsNoFoundationDispatchNIOOrSynchronization() throws {
        let forbidden = ["Foundation", "Dispatch", "Synchronization", "_Concurrency"]
        for (name, text) in try forkSafetySources() {
            for line in SourceRulesTests.codeOnly(text).split(separator: "\n") {
                let words = SourceRulesTests.words(String(line))
                guard let index = words.firstIndex(of: "import"), index + 1 < words.count else { continue }
                let module = words[(index + 1)...].first { !["class", "struct", "enum", "func", "var", "let", "typealias", "protocol"].contains($0) } ?? ""
                XCTAssertFalse(forbidden.contains(String(module)) || module.hasPrefix("NIO"), "\(name): \(line)")
            }
        }
    }

    func testForkSafetyHasNoSwiftConcurrency() throws {
        for (name, text) in try forkSafetySources() {
            let code = SourceRulesTests.codeOnly(text)
            for (number, line) in code.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
                let words = SourceRulesTests.words(String(line))
                for word in ["async", "await", "actor", "Task", "TaskGroup", "DispatchQueue", "Mutex"] where words.contains(Substring(word)) {
                    XCTFail("\(name):\(number + 1) uses \(word): \(line)")
                }
                XCTAssertFalse(line.contains("Task {") || line.contains("Task.detached"), "\(name):\(number + 1): \(line)")
            }
        }
    }

    func testTheRuleCheckerSeesCodeNotComments() {
        let sample = """
        import Glibc // not Foundation
        /* import Foundation */ let text = "await Task { }"
        func run() async { await work() }
        """
        let code = SourceRulesTests.codeOnly(sample)
        XCTAssertFalse(code.contains("Foundation"))
        XCTAssertFalse(code.contains("Task"))
        XCTAssertTrue(SourceRulesTests.words(code).contains("async"))
        XCTAssertTrue(SourceRulesTests.words(code).contains("await"))
    }
}
