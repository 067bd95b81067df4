/// Where each part of the dashboard goes for a terminal size. Pure
/// arithmetic shared by the renderer and the input handler (which needs to
/// know how many process rows are visible to keep the selection on screen).
public struct DashboardLayout: Equatable, Sendable {
    public static let minimumWidth = 40
    public static let minimumHeight = 10

    public let width: Int
    public let height: Int
    public let tooSmall: Bool
    public let titleRow = 0
    public let headerRow = 1
    /// Rows holding one process each.
    public let processRows: Range<Int>
    /// Width of the table left of the timeline (tree, pid, name, state…).
    public let tableWidth: Int
    public let nameWidth: Int
    public let stateWidth: Int
    public let generationWidth: Int
    public let sendWidth: Int
    /// First column of the timeline, and how many columns it has.
    public let timelineX: Int
    public let timelineWidth: Int
    /// The row with the lower panes' titles (nil: no panes at this size).
    public let paneTitleRow: Int?
    public let paneRows: Range<Int>
    /// Width of the details pane on the left; 0 when only one pane fits
    /// (then `Tab` cycles details, events and log output).
    public let detailsWidth: Int
    public let narrationRow: Int?
    public let statusRow: Int

    /// The layout of `view` over `model` (the process count decides how
    /// much room the lower panes get).
    public init(width: Int, height: Int, view: ViewState, model: DashboardModel) {
        self.init(width: width, height: height, narration: view.narration != nil, processCount: view.rows(model).count)
    }

    /// `processCount`: rows the process tree needs; the lower panes take the
    /// room it leaves (at least a third of the height).
    public init(width: Int, height: Int, narration: Bool, processCount: Int? = nil) {
        self.width = width
        self.height = height
        tooSmall = width < DashboardLayout.minimumWidth || height < DashboardLayout.minimumHeight
        statusRow = max(0, height - 1)
        narrationRow = narration && !tooSmall ? height - 2 : nil
        let bottom = narrationRow ?? statusRow  // first row below the panes

        // Table columns shrink with the width; the timeline gets the rest.
        if width >= 100 {
            (nameWidth, stateWidth, generationWidth, sendWidth) = (28, 10, 4, 7)
        } else if width >= 70 {
            (nameWidth, stateWidth, generationWidth, sendWidth) = (22, 9, 3, 6)
        } else {
            (nameWidth, stateWidth, generationWidth, sendWidth) = (15, 8, 0, 0)
        }
        tableWidth = nameWidth + 1 + stateWidth + (generationWidth > 0 ? generationWidth + 1 : 0) + (sendWidth > 0 ? sendWidth + 1 : 0)
        timelineX = tableWidth + 1
        timelineWidth = max(0, width - timelineX)

        // Lower panes: a third of the height, when there is room for them.
        let available = bottom - 2
        if tooSmall || height < 16 {
            paneTitleRow = nil
            paneRows = bottom..<bottom
            processRows = 2..<max(2, bottom)
        } else {
            var panes = max(4, min(14, height / 3))
            if let processCount { panes = max(panes, available - processCount - 2) }
            let title = bottom - panes - 1
            paneTitleRow = title
            paneRows = (title + 1)..<bottom
            processRows = 2..<max(2, min(title, 2 + available))
        }
        detailsWidth = width >= 90 ? min(48, width * 2 / 5) : 0
    }
}
