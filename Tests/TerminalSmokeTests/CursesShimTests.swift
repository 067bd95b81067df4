// Proves that the CCurses module links against ncursesw and that its shims
// (the macros and globals Swift cannot import) behave, without a real
// terminal: each test opens a curses screen with `newterm` whose output is
// an anonymous temporary file and whose input is /dev/null, so it runs the
// same under CI (no tty, TERM unset or "dumb") as in a developer's shell.
import CCurses
import Glibc
import XCTest

final class CursesShimTests: XCTestCase {
    func testStringDrawnIntoStdscrReadsBackAndReachesTheOutputFile() throws {
        let screen = try OffscreenScreen(terminal: "xterm-256color")
        defer { screen.close() }
        let win = try XCTUnwrap(fks_stdscr(), "fks_stdscr() returned NULL after newterm/set_term")

        XCTAssertEqual(mvwaddstr(win, 2, 3, "forkscope"), OK)

        // Read back through the window's cell buffer, as text …
        var text = [CChar](repeating: 0, count: 16)
        XCTAssertEqual(mvwinnstr(win, 2, 3, &text, 9), 9)
        XCTAssertEqual(nulTerminated(text), "forkscope")
        // … and as cells (character | attributes).
        var cells = [chtype](repeating: 0, count: 10)
        XCTAssertEqual(wmove(win, 2, 3), OK)
        XCTAssertEqual(winchnstr(win, &cells, 9), 9)
        let chars = cells.prefix(9).map { UInt8(truncatingIfNeeded: $0 & fks_a_chartext()) }
        XCTAssertEqual(String(decoding: chars, as: UTF8.self), "forkscope")

        // A refresh must write the text to the FILE* handed to newterm.
        XCTAssertEqual(wrefresh(win), OK)
        let written = try screen.outputWrittenSoFar()
        XCTAssertTrue(written.contains("forkscope"),
                      "wrefresh did not write the drawn text to newterm's output file; got \(written.count) bytes: \(written.debugDescription.prefix(200))")
    }

    func testResizetermSizeIsWhatGetmaxyxReports() throws {
        let screen = try OffscreenScreen(terminal: "xterm-256color")
        defer { screen.close() }
        let win = try XCTUnwrap(fks_stdscr())

        XCTAssertEqual(resizeterm(30, 100), OK)
        var rows: Int32 = -1, cols: Int32 = -1
        fks_getmaxyx(win, &rows, &cols)
        XCTAssertEqual(rows, 30)
        XCTAssertEqual(cols, 100)
        XCTAssertEqual(fks_lines(), 30)
        XCTAssertEqual(fks_cols(), 100)

        // A second size, so the check cannot pass on a stale default.
        XCTAssertEqual(resizeterm(12, 40), OK)
        fks_getmaxyx(win, &rows, &cols)
        XCTAssertEqual(rows, 12)
        XCTAssertEqual(cols, 40)
    }

    func testColorPairOneIsANonZeroAttributeThatSurvivesDrawing() throws {
        let screen = try OffscreenScreen(terminal: "xterm-256color")
        defer { screen.close() }
        let win = try XCTUnwrap(fks_stdscr())

        XCTAssertEqual(fks_has_colors(), 1, "xterm-256color's terminfo entry should declare colours")
        XCTAssertEqual(start_color(), OK)
        XCTAssertGreaterThanOrEqual(fks_colors(), 8)
        XCTAssertEqual(init_pair(1, Int16(COLOR_RED), Int16(COLOR_BLACK)), OK)

        XCTAssertEqual(fks_color_pair(0), 0)
        let pair1 = fks_color_pair(1)
        XCTAssertNotEqual(pair1, 0)
        XCTAssertEqual(fks_pair_number(attr_t(pair1)), 1)

        XCTAssertEqual(wattron(win, pair1), OK)
        XCTAssertEqual(mvwaddstr(win, 0, 0, "x"), OK)
        XCTAssertEqual(wattroff(win, pair1), OK)
        var cell: [chtype] = [0, 0]
        XCTAssertEqual(wmove(win, 0, 0), OK)
        XCTAssertEqual(winchnstr(win, &cell, 1), 1)
        XCTAssertEqual(fks_pair_number(cell[0] & fks_a_color()), 1)
        XCTAssertEqual(cell[0] & fks_a_chartext(), chtype(UInt8(ascii: "x")))
    }

    func testDumbTerminalOpensWithoutColours() throws {
        let screen = try OffscreenScreen(terminal: "dumb")
        defer { screen.close() }
        let win = try XCTUnwrap(fks_stdscr())

        XCTAssertEqual(fks_has_colors(), 0)
        XCTAssertEqual(mvwaddstr(win, 0, 0, "ok"), OK)
        var text = [CChar](repeating: 0, count: 4)
        XCTAssertEqual(mvwinnstr(win, 0, 0, &text, 2), 2)
        XCTAssertEqual(nulTerminated(text), "ok")
    }
}

/// One curses SCREEN that draws into an anonymous temporary file and reads
/// from /dev/null, made current with `set_term`.
private struct OffscreenScreen {
    let screen: OpaquePointer
    let output: UnsafeMutablePointer<FILE>
    let input: UnsafeMutablePointer<FILE>

    init(terminal name: String) throws {
        try requireTerminfoEntry(name)
        guard let output = tmpfile() else {
            throw CursesTestError("tmpfile() failed: \(String(cString: strerror(errno)))")
        }
        guard let input = fopen("/dev/null", "r") else {
            fclose(output)
            throw CursesTestError("fopen(/dev/null) failed: \(String(cString: strerror(errno)))")
        }
        guard let screen = newterm(name, output, input) else {
            fclose(input)
            fclose(output)
            throw CursesTestError("newterm(\"\(name)\") returned NULL although its terminfo entry exists")
        }
        set_term(screen)
        self.screen = screen
        self.output = output
        self.input = input
    }

    /// Everything curses has written to the output file up to now.
    func outputWrittenSoFar() throws -> String {
        guard fflush(output) == 0 else {
            throw CursesTestError("fflush of newterm's output failed: \(String(cString: strerror(errno)))")
        }
        let fd = fileno(output)
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var offset: off_t = 0
        while true {
            // pread leaves the FILE*'s own position where curses expects it.
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else {
                throw CursesTestError("reading newterm's output back failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk.prefix(n)
            offset += off_t(n)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    func close() {
        endwin()
        delscreen(screen)
        fclose(input)
        fclose(output)
    }
}

/// The text in a buffer `winnstr` filled: up to its NUL terminator.
private func nulTerminated(_ buffer: [CChar]) -> String {
    String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Fails with the package to install when the compiled terminfo entry is
/// missing, instead of a bare NULL from newterm. The directories are the
/// ones ncurses searches, in its order.
private func requireTerminfoEntry(_ name: String) throws {
    let env = ProcessInfo.processInfo.environment
    var dirs: [String] = []
    if let dir = env["TERMINFO"], !dir.isEmpty { dirs.append(dir) }
    if let home = env["HOME"], !home.isEmpty { dirs.append(home + "/.terminfo") }
    if let list = env["TERMINFO_DIRS"] {
        dirs += list.split(separator: ":", omittingEmptySubsequences: true).map(String.init)
    }
    dirs += ["/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo"]
    guard let first = name.first else { throw CursesTestError("empty terminal name") }
    let hexFirst = String(format: "%02x", first.asciiValue ?? 0)
    for dir in dirs {
        for sub in [String(first), hexFirst] where access("\(dir)/\(sub)/\(name)", R_OK) == 0 {
            return
        }
    }
    throw CursesTestError("""
        terminfo entry '\(name)' not found in \(dirs.joined(separator: ", ")). \
        On Debian/Ubuntu it is in the package ncurses-base \
        (apt-get install ncurses-base); or point TERMINFO at a directory holding it.
        """)
}

private struct CursesTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
