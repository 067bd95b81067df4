import CForkscope
import ForkscopeC
import Glibc
import Posix
import TestSupport
import XCTest

/// The C ABI as a C host sees it: a C program compiled against the public
/// header and linked to the built libforkscope-c.so calls every function,
/// with good and bad arguments (C/abi_test.c).
final class ABITests: XCTestCase {
    func testCProgramCallsEveryFunctionIncludingBadArguments() throws {
        let scratch = try ScratchSession()
        let program = scratch.root + "/abi_test"
        try CCompiler.compile(RepositoryFile.root + "/Tests/ForkscopeCTests/C/abi_test.c", to: program)
        let agent = try MockAgent.start()
        let slowAgent = try MockAgent.start(["--delay", "1000"])
        let test = try SpawnedProcess(path: program, [scratch.session.path, agent.url, slowAgent.url],
                                      environment: ["PATH=/usr/bin:/bin"])
        let output = try test.readToEnd(within: 60)
        let status = try test.wait(within: 10)
        XCTAssertEqual(status, .exited(0), output)
        XCTAssertTrue(output.contains("checks ") && output.contains(" failures 0"), output)
        XCTAssertFalse(output.contains("FAIL"), output)
    }

    /// Every function the header declares is exported by the library, and
    /// every function the library defines for the ABI is in the header.
    func testHeaderDeclaresExactlyTheExportedFunctions() throws {
        let header = try RepositoryFile.read("Sources/CForkscope/include/forkscope.h")
        let declared = HeaderParser.functionNames(header)
        var defined = Set<String>()
        for file in try FileSystem.contents(ofDirectory: RepositoryFile.root + "/Sources/ForkscopeC") where file.hasSuffix(".swift") {
            let text = try RepositoryFile.read("Sources/ForkscopeC/" + file)
            for part in text.components(separatedBy: "@_cdecl(\"").dropFirst() { defined.insert(String(part.prefix { $0 != "\"" })) }
        }
        // The one function written in C (async-signal-safe).
        defined.insert("forkscope_exporter_cancel_send_signal_safe")
        XCTAssertEqual(declared, defined)
        XCTAssertEqual(declared.count, 23)

        // Read with nm in its own process: a Swift library must not be
        // dlopen'ed and dlclose'd by this one (its runtime keeps pointers
        // into the unmapped image).
        let library = SpawnedProcess.builtExecutable("libforkscope-c.so")
        let nm = try SpawnedProcess(path: "/usr/bin/nm", ["-D", "--defined-only", library])
        let symbols = try nm.readToEnd(within: 30)
        XCTAssertEqual(try nm.wait(within: 10), .exited(0))
        let exported = Set(symbols.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            guard fields.count == 3, fields[1] == "T", fields[2].hasPrefix("forkscope_") else { return nil }
            return String(fields[2])
        })
        XCTAssertEqual(exported, declared, "exported by \(library) vs declared in forkscope.h")
    }

    /// The Swift implementations have exactly the header's C signatures:
    /// each line fails to compile if they differ.
    func testSwiftImplementationsMatchTheHeaderPrototypes() {
        func same<T>(_: T, _: T) {}
        same(CForkscope.forkscope_abi_version, ForkscopeC.forkscopeABIVersion)
        same(CForkscope.forkscope_last_error, ForkscopeC.forkscopeLastError)
        same(CForkscope.forkscope_status_name, ForkscopeC.forkscopeStatusName)
        same(CForkscope.forkscope_event_kind_name, ForkscopeC.forkscopeEventKindName)
        same(CForkscope.forkscope_ring_open, ForkscopeC.forkscopeRingOpen)
        same(CForkscope.forkscope_ring_create, ForkscopeC.forkscopeRingCreate)
        same(CForkscope.forkscope_ring_attached, ForkscopeC.forkscopeRingAttached)
        same(CForkscope.forkscope_intern, ForkscopeC.forkscopeIntern)
        same(CForkscope.forkscope_publish, ForkscopeC.forkscopePublish)
        same(CForkscope.forkscope_publish_typed, ForkscopeC.forkscopePublishTyped)
        same(CForkscope.forkscope_publish_server_hook, ForkscopeC.forkscopePublishServerHook)
        same(CForkscope.forkscope_before_fork, ForkscopeC.forkscopeBeforeFork)
        same(CForkscope.forkscope_after_fork_parent, ForkscopeC.forkscopeAfterForkParent)
        same(CForkscope.forkscope_after_fork_child, ForkscopeC.forkscopeAfterForkChild)
        same(CForkscope.forkscope_fork_generation, ForkscopeC.forkscopeForkGeneration)
        same(CForkscope.forkscope_exporter_create, ForkscopeC.forkscopeExporterCreate)
        same(CForkscope.forkscope_exporter_set_fork_detection, ForkscopeC.forkscopeExporterSetForkDetection)
        same(CForkscope.forkscope_exporter_enqueue, ForkscopeC.forkscopeExporterEnqueue)
        same(CForkscope.forkscope_exporter_flush, ForkscopeC.forkscopeExporterFlush)
        same(CForkscope.forkscope_exporter_counters, ForkscopeC.forkscopeExporterCounters)
        same(CForkscope.forkscope_exporter_cancel_send, ForkscopeC.forkscopeExporterCancelSend)
        same(CForkscope.forkscope_exporter_close, ForkscopeC.forkscopeExporterClose)
    }
}

enum HeaderParser {
    /// Names of the functions declared at file level (`type name(...);`).
    static func functionNames(_ header: String) -> Set<String> {
        var names = Set<String>()
        for line in header.split(separator: "\n") {
            guard let first = line.first, first.isLetter, !line.hasPrefix("typedef"), !line.hasPrefix("enum"),
                  let open = line.firstIndex(of: "("), line.hasSuffix(");") else { continue }
            let before = line[..<open]
            let name = before.split(whereSeparator: { $0 == " " || $0 == "*" }).last.map(String.init) ?? ""
            if name.hasPrefix("forkscope_") { names.insert(name) }
        }
        return names
    }
}

/// The C compiler the tests use: `cc` (Debian's gcc), else the toolchain's clang.
enum CCompiler {
    static func compile(_ source: String, to output: String) throws {
        let compiler = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first(where: FileSystem.exists) ?? "/usr/bin/cc"
        let libraryDirectory = String(SpawnedProcess.builtExecutable("x").dropLast(2))
        let cc = try SpawnedProcess(path: compiler, [
            "-std=c11", "-Wall", "-Wextra", "-Werror", "-I", RepositoryFile.root + "/Sources/CForkscope/include",
            source, "-o", output, "-L", libraryDirectory, "-lforkscope-c", "-Wl,-rpath," + libraryDirectory,
        ])
        let errors = try cc.readErrors(within: 60)
        XCTAssertEqual(try cc.wait(within: 60), .exited(0), "\(compiler) failed:\n\(errors)")
    }
}

/// A `forkscope agent` on a free port, killed with the test.
final class MockAgent {
    let process: SpawnedProcess
    let address: String
    var url: String { "http://\(address)" }

    private init(process: SpawnedProcess, address: String) {
        self.process = process
        self.address = address
    }

    static func start(_ arguments: [String] = []) throws -> MockAgent {
        let process = try SpawnedProcess(executable: "forkscope", ["agent", "--listen", "127.0.0.1:0"] + arguments)
        let line = try process.readLine(within: 10)
        guard line.hasPrefix("listening on ") else {
            XCTFail("forkscope agent printed \(line)")
            throw SystemError("agent", .invalidArgument)
        }
        return MockAgent(process: process, address: String(line.dropFirst("listening on ".count)))
    }

    /// `GET /stats`, parsed.
    func stats() throws -> AgentStatsDocument {
        try AgentStatsDocument(HTTPClient.get(address, "/stats"))
    }
}
