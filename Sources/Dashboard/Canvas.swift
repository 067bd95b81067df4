/// What a cell means, not how it looks: the curses layer maps each style to
/// a colour pair (or, on a monochrome terminal, to bold/reverse/underline),
/// and a test can check a cell's meaning without a terminal.
public enum Style: UInt8, CaseIterable, Sendable {
    case normal
    case dim
    case bold
    /// The title bar and pane headings.
    case title
    case header
    case selected
    case axis
    case lifeline
    case sendOK
    case sendInFlight
    case sendCancelled
    case sendFailed
    case forkMark
    case forkFailed
    case rebuild
    case quiesce
    case exited
    case error
    case warning
    case status
    case statusKey
    case narration
    case match
    case border
    case prompt
}

/// One character cell: a single-column scalar and its style.
public struct Cell: Equatable, Sendable {
    public var scalar: Unicode.Scalar
    public var style: Style

    public init(_ scalar: Unicode.Scalar, _ style: Style = .normal) {
        self.scalar = scalar
        self.style = style
    }

    public static let blank = Cell(" ")
}

/// A grid of cells: what the dashboard draws into, the same for curses and
/// for tests. Only scalars that take exactly one column are stored (see
/// `displayable`), so a row of `width` cells is `width` columns wide in any
/// terminal; everything else becomes `?`.
public struct Canvas: Equatable, Sendable {
    public let width: Int
    public let height: Int
    /// Whether non-ASCII glyphs may be used (a UTF-8 locale).
    public let unicode: Bool
    public private(set) var cells: [Cell]

    public init(width: Int, height: Int, unicode: Bool) {
        self.width = max(0, width)
        self.height = max(0, height)
        self.unicode = unicode
        cells = Array(repeating: .blank, count: self.width * self.height)
    }

    /// The cell at (x, y); outside the grid reads blank and writes nothing.
    public subscript(x x: Int, y y: Int) -> Cell {
        get { contains(x: x, y: y) ? cells[y * width + x] : .blank }
        set {
            guard x >= 0, y >= 0, x < width, y < height else { return }
            cells[y * width + x] = newValue
        }
    }

    /// Whether the cell at (x, y) is inside the grid.
    @inline(__always) public func contains(x: Int, y: Int) -> Bool { x >= 0 && y >= 0 && x < width && y < height }

    public mutating func put(_ scalar: Unicode.Scalar, x: Int, y: Int, style: Style = .normal) {
        guard contains(x: x, y: y) else { return }
        cells[y * width + x] = Cell(displayable(scalar), style)
    }

    public mutating func setStyle(x: Int, y: Int, width count: Int, style: Style) {
        guard y >= 0, y < height else { return }
        for column in max(0, x)..<min(width, x + max(0, count)) { cells[y * width + column].style = style }
    }

    /// Writes `text` from (x, y), at most `limit` columns (to the right edge
    /// when nil); returns the columns written. Text that does not fit ends
    /// in `…` (`~` in ASCII).
    @discardableResult
    public mutating func text(_ text: String, x: Int, y: Int, limit: Int? = nil, style: Style = .normal) -> Int {
        guard y >= 0, y < height, x < width else { return 0 }
        let room = min(limit ?? (width - x), width - x)
        guard room > 0 else { return 0 }
        var column = 0
        var iterator = text.unicodeScalars.makeIterator()
        var pending = iterator.next()
        while let scalar = pending, column < room {
            pending = iterator.next()
            if column == room - 1, pending != nil {
                put(unicode ? "…" : "~", x: x + column, y: y, style: style)
                return room
            }
            if scalar.properties.generalCategory == .nonspacingMark { continue }
            put(scalar, x: x + column, y: y, style: style)
            column += 1
        }
        return column
    }

    /// Fills a rectangle with one scalar and style.
    public mutating func fill(x: Int, y: Int, width w: Int, height h: Int, _ scalar: Unicode.Scalar = " ", style: Style = .normal) {
        let cell = Cell(displayable(scalar), style)
        for row in max(0, y)..<min(height, y + max(0, h)) {
            for column in max(0, x)..<min(width, x + max(0, w)) { cells[row * width + column] = cell }
        }
    }

    /// A row's characters (trailing blanks kept: every row is `width` long).
    public func row(_ y: Int) -> String {
        var text = String.UnicodeScalarView()
        for x in 0..<width { text.append(cells[y * width + x].scalar) }
        return String(text)
    }

    /// The grid as text, one line per row, trailing blanks removed.
    public var text: String {
        (0..<height).map { y -> String in
            var line = row(y)
            while line.last == " " { line.removeLast() }
            return line
        }.joined(separator: "\n") + "\n"
    }

    /// Consecutive cells of one style in a row, for a renderer that sets
    /// attributes once per run.
    public func runs(row y: Int) -> [(x: Int, text: String, style: Style)] {
        var result: [(Int, String, Style)] = []
        var start = 0
        var scalars = String.UnicodeScalarView()
        for x in 0..<width {
            let cell = cells[y * width + x]
            if x > start, cell.style != cells[y * width + start].style {
                result.append((start, String(scalars), cells[y * width + start].style))
                scalars = String.UnicodeScalarView()
                start = x
            }
            scalars.append(cell.scalar)
        }
        if width > 0 { result.append((start, String(scalars), cells[y * width + start].style)) }
        return result
    }

    /// `scalar` if it takes exactly one column on a terminal in this
    /// canvas's locale, else `?`. Conservative: printable ASCII always;
    /// with Unicode, Latin, Greek, Cyrillic and the line, block, arrow and
    /// shape glyphs the dashboard draws with. Wide (CJK, emoji),
    /// zero-width and control characters never reach the screen, so a
    /// hostile process name cannot shift a row.
    @inline(__always)
    public func displayable(_ scalar: Unicode.Scalar) -> Unicode.Scalar {
        let v = scalar.value
        if v >= 0x20 && v < 0x7F { return scalar }
        guard unicode else { return "?" }
        switch v {
        case 0xA0...0x24F, 0x370...0x3FF, 0x400...0x4FF,
             0x2010...0x2027, 0x2030...0x205E, 0x2190...0x21FF, 0x2200...0x22FF,
             0x2500...0x257F, 0x2580...0x259F, 0x25A0...0x25FF:
            return scalar
        default:
            return "?"
        }
    }
}
