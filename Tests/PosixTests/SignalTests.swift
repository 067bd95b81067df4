import CPosix
import Glibc
import XCTest
@testable import Posix

/// The eventfd the test handler writes: a handler cannot capture context.
nonisolated(unsafe) private var handlerEvent = EventFD(rawValue: -1)

private func countingHandler(_ signal: CInt) {
    try? handlerEvent.signal()
}

final class SignalTests: XCTestCase {
    override func setUpWithError() throws {
        handlerEvent = try EventFD.create()
    }

    override func tearDownWithError() throws {
        try Signals.restoreDefault(SIGUSR1)
        try handlerEvent.close()
    }

    func testInstalledHandlerRunsOnRaise() throws {
        try Signals.install(countingHandler, for: SIGUSR1, flags: [.restart])
        try Signals.raise(SIGUSR1)
        // raise returns after the handler ran on this thread.
        XCTAssertEqual(try handlerEvent.drain(), 1)
    }

    func testBlockedSignalWaitsUntilUnblocked() throws {
        try Signals.install(countingHandler, for: SIGUSR1)
        let before = try Signals.block([SIGUSR1])
        defer { _ = try? Signals.setMask(before) }
        XCTAssertFalse(before.contains(SIGUSR1))
        XCTAssertTrue(try Signals.currentMask().contains(SIGUSR1))

        try Signals.raise(SIGUSR1)
        XCTAssertEqual(try handlerEvent.drain(), 0, "delivered while blocked")
        let during = try Signals.unblock([SIGUSR1])
        XCTAssertTrue(during.contains(SIGUSR1))
        // A pending signal is delivered before unblocking returns.
        XCTAssertEqual(try handlerEvent.drain(), 1)
        XCTAssertFalse(try Signals.currentMask().contains(SIGUSR1))
    }

    func testIgnoredSignalDoesNothing() throws {
        try Signals.ignore(SIGUSR1)
        try Signals.raise(SIGUSR1) // the default action would end the test process
        try Signals.install(countingHandler, for: SIGUSR1)
        XCTAssertEqual(try handlerEvent.drain(), 0)
    }

    func testSignalSetHoldsWhatWasInserted() {
        var set: SignalSet = [SIGUSR1, SIGTERM]
        XCTAssertEqual(set.signals, [SIGUSR1, SIGTERM])
        set.remove(SIGUSR1)
        set.insert(SIGCHLD)
        XCTAssertEqual(set.signals, [SIGTERM, SIGCHLD])
        XCTAssertEqual(set, SignalSet([SIGCHLD, SIGTERM]))
        XCTAssertTrue(SignalSet.all.contains(SIGKILL))
        XCTAssertTrue(SignalSet().signals.isEmpty)
    }
}
