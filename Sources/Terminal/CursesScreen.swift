import CCurses
import Dashboard
import EventRing
import Glibc
import Posix

/// Why the terminal could not be used.
public struct TerminalError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The curses side of the dashboard: puts a `Canvas` on the terminal (only
/// the rows that changed) and turns key codes into `Key`s. Colour when the
/// terminal has it (and `NO_COLOR` is unset), else bold/reverse/underline.
final class CursesScreen {
    private let screen: OpaquePointer
    private let window: UnsafeMutablePointer<WINDOW>
    private let output: UnsafeMutablePointer<FILE>
    private let input: UnsafeMutablePointer<FILE>
    let unicode: Bool
    let colour: Bool
    private var attributes: [Style: (attr_t, Int16)] = [:]
    private var shown: Canvas?

    init(colour wanted: Bool = true) throws(TerminalError) {
        // The locale decides the glyphs: box drawing in UTF-8, else ASCII.
        setlocale(LC_ALL, "")
        unicode = fks_locale_is_utf8() != 0
        guard let output = fdopen(dup(1), "w"), let input = fdopen(dup(0), "r") else {
            throw TerminalError("cannot open the terminal's streams: \(String(cString: strerror(errno)))")
        }
        guard let screen = newterm(nil, output, input) else {
            fclose(output)
            fclose(input)
            let term = Environment.current["TERM"] ?? "(unset)"
            throw TerminalError("curses cannot drive this terminal (TERM=\(term)); set TERM to e.g. xterm-256color, or use --headless")
        }
        self.output = output
        self.input = input
        self.screen = screen
        set_term(screen)
        guard let window = fks_stdscr() else {
            endwin()
            delscreen(screen)
            fclose(output)
            fclose(input)
            throw TerminalError("curses opened no screen")
        }
        self.window = window
        cbreak()
        noecho()
        nonl()
        keypad(window, true)
        nodelay(window, true)
        set_escdelay(25)
        curs_set(0)
        colour = wanted && fks_has_colors() != 0 && Environment.current["NO_COLOR"] == nil
        if colour {
            start_color()
            use_default_colors()
        }
        setUpAttributes()
    }

    func close() {
        endwin()
        delscreen(screen)
        fclose(output)
        fclose(input)
    }

    var size: (width: Int, height: Int) {
        var rows: Int32 = 0, cols: Int32 = 0
        fks_getmaxyx(window, &rows, &cols)
        return (Int(cols), Int(rows))
    }

    /// Forgets what is on screen, so the next `draw` repaints everything.
    func invalidate() {
        shown = nil
        clearok(window, true)
    }

    /// Draws the rows of `canvas` that differ from what is shown.
    func draw(_ canvas: Canvas) {
        let full = shown == nil || shown!.width != canvas.width || shown!.height != canvas.height
        if full { werase(window) }
        for y in 0..<canvas.height {
            if !full, let shown, rowEqual(shown, canvas, y) { continue }
            for run in canvas.runs(row: y) {
                let (attribute, pair) = attributes[run.style] ?? (0, 0)
                wattr_set(window, attribute, pair, nil)
                // At the bottom-right cell curses reports ERR after drawing
                // (the cursor cannot advance): harmless, ignored.
                _ = mvwaddnstr(window, Int32(y), Int32(run.x), run.text, -1)
            }
        }
        wattr_set(window, 0, 0, nil)
        wnoutrefresh(window)
        doupdate()
        shown = canvas
    }

    private func rowEqual(_ a: Canvas, _ b: Canvas, _ y: Int) -> Bool {
        let start = y * a.width
        for x in 0..<a.width where a.cells[start + x] != b.cells[start + x] { return false }
        return true
    }

    /// Every key waiting, decoded (none when nothing was typed).
    func readKeys() -> (keys: [Key], resized: Bool) {
        var keys: [Key] = []
        var resized = false
        for _ in 0..<256 {
            var character: wint_t = 0
            let result = wget_wch(window, &character)
            if result == ERR { break }
            if result == KEY_CODE_YES {
                let code = Int32(character)
                if code == fks_key_resize() { resized = true; continue }
                if let key = CursesScreen.functionKey(code) { keys.append(key) }
            } else if let key = CursesScreen.characterKey(UInt32(character)) {
                keys.append(key)
            }
        }
        return (keys, resized)
    }

    static func functionKey(_ code: Int32) -> Key? {
        switch code {
        case KEY_UP: .up
        case KEY_DOWN: .down
        case KEY_LEFT: .left
        case KEY_RIGHT: .right
        case KEY_PPAGE: .pageUp
        case KEY_NPAGE: .pageDown
        case KEY_HOME: .home
        case KEY_END: .end
        case KEY_ENTER: .enter
        case KEY_BACKSPACE: .backspace
        case (KEY_F0 + 1)...(KEY_F0 + 12): .function(Int(code - KEY_F0))
        default: nil
        }
    }

    static func characterKey(_ value: UInt32) -> Key? {
        switch value {
        case 9: return .tab
        case 10, 13: return .enter
        case 27: return .escape
        case 8, 127: return .backspace
        case 1...26: return .control(Unicode.Scalar(value + 96)!)
        default:
            guard let scalar = Unicode.Scalar(value), value >= 32 else { return nil }
            return .character(scalar)
        }
    }

    private func setUpAttributes() {
        let bold = fks_a_bold(), reverse = fks_a_reverse(), dim = fks_a_dim(), underline = fks_a_underline()
        // Monochrome: meaning by attribute alone (timeline glyphs differ too).
        let mono: [Style: attr_t] = [
            .normal: 0, .dim: dim, .bold: bold, .title: reverse | bold, .header: underline | bold, .selected: reverse,
            .axis: dim, .lifeline: dim, .sendOK: 0, .sendInFlight: bold, .sendCancelled: bold | underline,
            .sendFailed: bold | reverse, .forkMark: bold, .forkFailed: reverse, .rebuild: underline, .quiesce: dim,
            .exited: dim, .error: bold, .warning: bold, .status: reverse, .statusKey: reverse | bold,
            .narration: bold, .match: reverse | underline, .border: dim, .prompt: bold,
        ]
        guard colour else {
            for style in Style.allCases { attributes[style] = (mono[style] ?? 0, 0) }
            return
        }
        let colours: [Style: (Int16, Int16, attr_t)] = [
            .title: (Int16(COLOR_WHITE), Int16(COLOR_BLUE), bold),
            .header: (Int16(COLOR_BLACK), Int16(COLOR_CYAN), 0),
            .selected: (Int16(COLOR_BLACK), Int16(COLOR_CYAN), 0),
            .axis: (Int16(COLOR_CYAN), -1, 0),
            .sendOK: (Int16(COLOR_GREEN), -1, bold),
            .sendInFlight: (Int16(COLOR_CYAN), -1, bold),
            .sendCancelled: (Int16(COLOR_YELLOW), -1, bold),
            .sendFailed: (Int16(COLOR_RED), -1, bold),
            .forkMark: (Int16(COLOR_MAGENTA), -1, bold),
            .forkFailed: (Int16(COLOR_WHITE), Int16(COLOR_RED), bold),
            .rebuild: (Int16(COLOR_BLUE), -1, bold),
            .quiesce: (Int16(COLOR_YELLOW), -1, 0),
            .error: (Int16(COLOR_RED), -1, bold),
            .warning: (Int16(COLOR_YELLOW), -1, bold),
            .status: (Int16(COLOR_BLACK), Int16(COLOR_CYAN), 0),
            .statusKey: (Int16(COLOR_WHITE), Int16(COLOR_BLUE), bold),
            .narration: (Int16(COLOR_YELLOW), -1, bold),
            .match: (Int16(COLOR_BLACK), Int16(COLOR_YELLOW), 0),
            .prompt: (Int16(COLOR_WHITE), Int16(COLOR_BLUE), bold),
        ]
        var pair: Int16 = 1
        for style in Style.allCases {
            if let (fg, bg, extra) = colours[style] {
                init_pair(pair, fg, bg)
                attributes[style] = (extra, pair)
                pair += 1
            } else {
                attributes[style] = (mono[style] ?? 0, 0)
            }
        }
    }
}
