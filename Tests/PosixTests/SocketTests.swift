import Glibc
import XCTest
@testable import Posix

final class SocketTests: XCTestCase {
    func testUnixListenerAcceptsAndSeesOurOwnCredentials() throws {
        try withTemporaryDirectory { directory in
            let address = try SocketAddress.unix(path: directory + "/control.sock")
            let listener = try Socket.open(.unix)
            defer { try? listener.close() }
            try listener.bind(to: address)
            try listener.listen()
            XCTAssertEqual(try listener.localAddress(), address)

            let client = try Socket.open(.unix)
            defer { try? client.close() }
            XCTAssertEqual(try client.connect(to: address), .connected)
            XCTAssertNotEqual(try listener.fileDescriptor.poll(for: Int16(POLLIN), deadline: .after(milliseconds: testDeadlineMilliseconds)), 0)
            let server = try listener.accept(flags: [.closeOnExec, .nonBlocking])
            defer { try? server.close() }
            XCTAssertTrue(try server.fileDescriptor.isNonBlocking())
            XCTAssertTrue(try server.fileDescriptor.closesOnExec())

            let expected = PeerCredentials(pid: getpid(), uid: getuid(), gid: getgid())
            XCTAssertEqual(try server.peerCredentials(), expected)
            XCTAssertEqual(try client.peerCredentials(), expected)

            try client.sendAll("cancel\n")
            XCTAssertEqual(try readLine(server.fileDescriptor), "cancel")
        }
    }

    func testSocketPairEndsSeeEachOtherAndShutdownGivesEndOfFile() throws {
        let (a, b) = try Socket.pair()
        defer { try? a.close(); try? b.close() }
        XCTAssertEqual(try a.peerCredentials().pid, getpid())
        XCTAssertEqual(try a.localAddress(), .unix(UnixAddress(unchecked: "")))
        try a.sendAll("ping")
        try a.shutdown(.write)
        XCTAssertEqual(try readToEnd(b.fileDescriptor), "ping")
    }

    func testSendToAClosedPeerGivesEPIPEInsteadOfSIGPIPE() throws {
        let (a, b) = try Socket.pair()
        defer { try? a.close() }
        try b.close()
        do {
            try a.sendAll("lost")
            XCTFail("send to a closed peer succeeded")
        } catch {
            XCTAssertEqual(error, SystemError("send", .brokenPipe))
        }
    }

    func testConnectToAMissingUnixPathNamesThePath() throws {
        try withTemporaryDirectory { directory in
            let client = try Socket.open(.unix)
            defer { try? client.close() }
            let path = directory + "/absent.sock"
            let address = try SocketAddress.unix(path: path)
            do throws(SystemError) {
                _ = try client.connect(to: address)
                XCTFail("connected to nothing")
            } catch {
                XCTAssertEqual(error.description, "connect(\(path)): No such file or directory (ENOENT)")
            }
        }
    }

    func testTCPLoopbackOnPortZeroLearnsItsPortAndCarriesData() throws {
        let listener = try Socket.open(.ipv4)
        defer { try? listener.close() }
        try listener.setOption(.reuseAddress, true)
        XCTAssertTrue(try listener.option(.reuseAddress))
        try listener.bind(to: .ipv4(.loopback(port: 0)))
        try listener.listen()
        guard case .ipv4(let bound) = try listener.localAddress() else { return XCTFail("not IPv4") }
        XCTAssertEqual(bound.host, 0x7f00_0001)
        XCTAssertNotEqual(bound.port, 0)

        let client = try Socket.open(.ipv4, flags: [.closeOnExec, .nonBlocking])
        defer { try? client.close() }
        try client.setOption(.noDelay, true)
        XCTAssertTrue(try client.option(.noDelay))
        let outcome = try client.connect(to: .ipv4(bound))
        XCTAssertTrue(outcome == .inProgress || outcome == .connected)
        XCTAssertNotEqual(try client.fileDescriptor.poll(for: Int16(POLLOUT), deadline: .after(milliseconds: testDeadlineMilliseconds)), 0)
        XCTAssertNil(try client.pendingError())

        XCTAssertNotEqual(try listener.fileDescriptor.poll(for: Int16(POLLIN), deadline: .after(milliseconds: testDeadlineMilliseconds)), 0)
        let server = try listener.accept()
        defer { try? server.close() }
        try client.fileDescriptor.setNonBlocking(false)
        try client.sendAll("GET / HTTP/1.1\r\n")
        XCTAssertEqual(try readLine(server.fileDescriptor), "GET / HTTP/1.1\r")
        try server.shutdown(.readWrite)
        XCTAssertEqual(try readToEnd(client.fileDescriptor), "")
    }

    func testNonBlockingConnectToAClosedPortReportsRefused() throws {
        // A port that was free a moment ago: bind port 0, note it, close.
        let probe = try Socket.open(.ipv4)
        try probe.bind(to: .ipv4(.loopback(port: 0)))
        let address = try probe.localAddress()
        try probe.close()

        let client = try Socket.open(.ipv4, flags: [.closeOnExec, .nonBlocking])
        defer { try? client.close() }
        do {
            if try client.connect(to: address) == .inProgress {
                XCTAssertNotEqual(try client.fileDescriptor.poll(for: Int16(POLLOUT), deadline: .after(milliseconds: testDeadlineMilliseconds)), 0)
                XCTAssertEqual(try client.pendingError(), .connectionRefused)
            } else {
                XCTFail("connected to a closed port")
            }
        } catch {
            XCTAssertEqual(error, SystemError("connect", path: address.description, .connectionRefused))
        }
    }

    func testAcceptOnAnIdleNonBlockingListenerWouldBlock() throws {
        let listener = try Socket.open(.ipv4, flags: [.closeOnExec, .nonBlocking])
        defer { try? listener.close() }
        try listener.bind(to: .ipv4(.loopback(port: 0)))
        try listener.listen()
        do {
            _ = try listener.accept()
            XCTFail("accepted a connection nobody made")
        } catch {
            XCTAssertEqual(error, SystemError("accept4", .wouldBlock))
        }
    }
}

final class SocketAddressTests: XCTestCase {
    func testIPv4ParsingAcceptsHostPortAndRejectsTheRest() {
        let good: [(String, IPv4Address)] = [
            ("127.0.0.1:8126", .loopback(port: 8126)),
            ("localhost:80", .loopback(port: 80)),
            ("0.0.0.0:0", .any(port: 0)),
            ("10.1.255.7:65535", IPv4Address(host: 0x0a01_ff07, port: 65535)),
        ]
        for (text, expected) in good {
            XCTAssertEqual(try IPv4Address(parsing: text), expected, text)
            if !text.hasPrefix("localhost") { XCTAssertEqual(expected.description, text) }
        }
        let bad = ["", "127.0.0.1", ":80", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.256:1", "1.2.3:4",
                   "1.2.3.4.5:6", "a.b.c.d:1", "127.0.0.1:-1", "127.0.0.1: 80", "example.com:80", "1..2.3:4"]
        for text in bad {
            XCTAssertThrowsError(try IPv4Address(parsing: text), text) { error in
                XCTAssertEqual(error as? SocketAddressError, .invalidIPv4(text))
            }
        }
        XCTAssertEqual(
            SocketAddressError.invalidIPv4("x").description,
            "invalid IPv4 socket address \"x\": expected host:port, such as 127.0.0.1:8126 or localhost:8126"
        )
    }

    func testUnixPathLongerThanSunPathIsRejectedWithAClearMessage() throws {
        let fits = "/" + String(repeating: "a", count: UnixAddress.maximumPathBytes - 1)
        XCTAssertEqual(try UnixAddress(path: fits).path, fits)
        let long = fits + "b"
        do {
            _ = try UnixAddress(path: long)
            XCTFail("a 108-byte path was accepted")
        } catch {
            XCTAssertEqual(error, .unixPathTooLong(path: long, bytes: 108))
            XCTAssertEqual(
                error.description,
                "Unix socket path is 108 bytes, but the kernel allows at most 107 (sun_path holds 108 bytes "
                    + "with the terminating NUL): \(long); use a shorter directory"
            )
        }
        XCTAssertThrowsError(try UnixAddress(path: ""))
        XCTAssertThrowsError(try UnixAddress(path: "/a\u{0}b"))
    }

    func testLongestUnixPathBindsAndReadsBack() throws {
        try withTemporaryDirectory { directory in
            let path = directory + "/" + String(repeating: "s", count: UnixAddress.maximumPathBytes - directory.utf8.count - 1)
            let address = try SocketAddress.unix(path: path)
            let listener = try Socket.open(.unix)
            defer { try? listener.close() }
            try listener.bind(to: address)
            XCTAssertEqual(try listener.localAddress(), address)
        }
    }
}

final class EventFDTests: XCTestCase {
    func testSignalWakesPollAndDrainResetsTheCounter() throws {
        let event = try EventFD.create()
        defer { try? event.close() }
        XCTAssertTrue(try event.fileDescriptor.closesOnExec())
        XCTAssertTrue(try event.fileDescriptor.isNonBlocking())
        XCTAssertEqual(try event.fileDescriptor.poll(for: Int16(POLLIN), deadline: .after(nanoseconds: 0)), 0)
        XCTAssertEqual(try event.drain(), 0)

        try event.signal()
        try event.signal()
        XCTAssertEqual(try event.fileDescriptor.poll(for: Int16(POLLIN), deadline: .after(milliseconds: testDeadlineMilliseconds)), Int16(POLLIN))
        XCTAssertEqual(try event.drain(), 2)
        XCTAssertEqual(try event.drain(), 0)
        XCTAssertEqual(try event.fileDescriptor.poll(for: Int16(POLLIN), deadline: .after(nanoseconds: 0)), 0)
    }

    func testSemaphoreCounterHandsOutOneAtATime() throws {
        let event = try EventFD.create(initialValue: 2, flags: [.closeOnExec, .nonBlocking, .semaphore])
        defer { try? event.close() }
        XCTAssertEqual(try event.drain(), 1)
        XCTAssertEqual(try event.drain(), 1)
        XCTAssertEqual(try event.drain(), 0)
    }
}
