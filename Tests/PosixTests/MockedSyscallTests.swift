import Glibc
import XCTest
@testable import Posix

/// Each retrying wrapper, as a table row: real descriptors are prepared
/// outside the mock, then the driver forces errnos in front of the real call.
final class MockedSyscallTests: XCTestCase {
    /// One interruptible call: `prepare` builds real resources and returns the
    /// operation (taking `retryOnInterrupt`) and a cleanup.
    struct Row {
        let call: String
        let prepare: () throws -> (operation: (Bool) throws(SystemError) -> Void, cleanup: () -> Void)
    }

    var rows: [Row] {
        [
            Row(call: "read") {
                let (r, w) = try FileDescriptor.pipe()
                try w.writeAll("x")
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    var byte: UInt8 = 0
                    let count = try withUnsafeMutableBytes(of: &byte) { raw in
                        Result { () throws(SystemError) in try r.read(into: raw, retryOnInterrupt: retry) }
                    }.get()
                    XCTAssertEqual(count, 1)
                    XCTAssertEqual(byte, UInt8(ascii: "x"))
                }, { try? r.close(); try? w.close() })
            },
            Row(call: "write") {
                let (r, w) = try FileDescriptor.pipe()
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    let byte: UInt8 = 1
                    let count = try withUnsafeBytes(of: byte) { raw in
                        Result { () throws(SystemError) in try w.write(raw, retryOnInterrupt: retry) }
                    }.get()
                    XCTAssertEqual(count, 1)
                }, { try? r.close(); try? w.close() })
            },
            Row(call: "open") {
                ({ (retry: Bool) throws(SystemError) -> Void in
                    let fd = try FileDescriptor.open("/dev/null", O_RDONLY | O_CLOEXEC, retryOnInterrupt: retry)
                    try fd.close()
                }, {})
            },
            Row(call: "poll") {
                let (r, w) = try FileDescriptor.pipe()
                try w.writeAll("x")
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    var fds = [pollfd(fd: r.rawValue, events: Int16(POLLIN), revents: 0)]
                    let ready = try poll(&fds, timeoutMilliseconds: 0, retryOnInterrupt: retry)
                    XCTAssertEqual(ready, 1)
                }, { try? r.close(); try? w.close() })
            },
            Row(call: "waitpid") {
                let pid = try spawnShell("exit 3")
                // Wait for the exit without reaping, so the mocked waitpid finds a zombie.
                let exited = try ProcessControl.openDescriptor(for: pid)
                defer { try? exited.close() }
                XCTAssertNotEqual(try exited.poll(for: Int16(POLLIN), deadline: .after(milliseconds: testDeadlineMilliseconds)), 0)
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    let result = try ProcessControl.wait(for: pid, options: WNOHANG, retryOnInterrupt: retry)
                    XCTAssertEqual(result?.pid, pid)
                    XCTAssertEqual(result?.status, .exited(3))
                }, { _ = try? ProcessControl.wait(for: pid, deadline: .after(milliseconds: testDeadlineMilliseconds)) })
            },
            Row(call: "connect") {
                let directory = try FileSystem.makeTemporaryDirectory(prefix: "fks-test-")
                let address = try SocketAddress.unix(path: directory + "/s")
                let listener = try Socket.open(.unix)
                try listener.bind(to: address)
                try listener.listen()
                let client = try Socket.open(.unix)
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    let outcome = try client.connect(to: address, retryOnInterrupt: retry)
                    XCTAssertEqual(outcome, .connected)
                }, { try? client.close(); try? listener.close(); try? FileSystem.removeTree(directory) })
            },
            Row(call: "accept4") {
                let directory = try FileSystem.makeTemporaryDirectory(prefix: "fks-test-")
                let address = try SocketAddress.unix(path: directory + "/s")
                let listener = try Socket.open(.unix)
                try listener.bind(to: address)
                try listener.listen()
                let client = try Socket.open(.unix)
                XCTAssertEqual(try client.connect(to: address), .connected)
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    let accepted = try listener.accept(retryOnInterrupt: retry)
                    try accepted.close()
                }, { try? client.close(); try? listener.close(); try? FileSystem.removeTree(directory) })
            },
            Row(call: "send") {
                let (a, b) = try Socket.pair()
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    let byte: UInt8 = 1
                    let sent = try withUnsafeBytes(of: byte) { raw in
                        Result { () throws(SystemError) in try a.send(raw, retryOnInterrupt: retry) }
                    }.get()
                    XCTAssertEqual(sent, 1)
                }, { try? a.close(); try? b.close() })
            },
            Row(call: "recv") {
                let (a, b) = try Socket.pair()
                try a.sendAll("x")
                return ({ (retry: Bool) throws(SystemError) -> Void in
                    var byte: UInt8 = 0
                    let received = try withUnsafeMutableBytes(of: &byte) { raw in
                        Result { () throws(SystemError) in try b.receive(into: raw, retryOnInterrupt: retry) }
                    }.get()
                    XCTAssertEqual(received, 1)
                }, { try? a.close(); try? b.close() })
            },
        ]
    }

    func testThreeForcedEINTRsGiveFourCallsAndSucceed() throws {
        for row in rows {
            let (operation, cleanup) = try row.prepare()
            defer { cleanup() }
            let driver = MockingDriver()
            driver.forcedErrnos = Array(repeating: (row.call, Errno.interrupted), count: 3)
            do {
                try driver.withMocking { () throws(SystemError) in try operation(true) }
            } catch {
                XCTFail("\(row.call): \(error)")
            }
            XCTAssertEqual(driver.trace.filter { $0 == row.call }.count, 4, row.call)
            XCTAssertTrue(driver.forcedErrnos.isEmpty, row.call)
        }
    }

    func testEINTRWithoutRetryGivesInterruptedAfterOneCall() throws {
        for row in rows {
            let (operation, cleanup) = try row.prepare()
            defer { cleanup() }
            let driver = MockingDriver()
            driver.forcedErrnos = [(row.call, .interrupted)]
            do {
                try driver.withMocking { () throws(SystemError) in try operation(false) }
                XCTFail("\(row.call): expected EINTR")
            } catch {
                XCTAssertEqual(error.errno, .interrupted, row.call)
                XCTAssertTrue(error.call.hasPrefix(row.call), "\(row.call): \(error)")
            }
            XCTAssertEqual(driver.trace.filter { $0 == row.call }.count, 1, row.call)
        }
    }

    func testCloseIsCalledExactlyOnceEvenOnEINTR() throws {
        let (r, w) = try FileDescriptor.pipe()
        defer { try? w.close() }
        let driver = MockingDriver()
        driver.forcedErrnos = [("close", .interrupted)]
        do {
            try driver.withMocking { () throws(SystemError) in try r.close() }
            XCTFail("expected EINTR")
        } catch {
            XCTAssertEqual(error, SystemError("close", .interrupted))
        }
        XCTAssertEqual(driver.trace, ["close"])
        try r.close() // the forced failure never reached the kernel
    }

    func testHugePageAdviceIsAdviceOnly() throws {
        // A kernel without THP (or without MADV_POPULATE_WRITE) refuses the
        // advice; the memory is still mapped, zeroed and writable.
        let driver = MockingDriver()
        driver.forcedErrnos = [("madvise", .invalidArgument), ("madvise", .invalidArgument)]
        let region = try driver.withMocking { () throws(SystemError) in
            try MappedRegion.anonymous(length: 4 << 20, shared: false, populate: true, hugePages: true)
        }
        defer { try? region.unmap() }
        XCTAssertEqual(driver.trace, ["mmap", "madvise", "madvise"])
        let bytes = UnsafeMutableRawBufferPointer(start: region.base, count: region.length)
        XCTAssertTrue(bytes.allSatisfy { $0 == 0 })
        bytes[bytes.count - 1] = 7
        XCTAssertEqual(bytes[bytes.count - 1], 7)
    }

    func testInterruptedConnectThatTheKernelFinishedReportsConnected() throws {
        let (a, b) = try Socket.pair()
        defer { try? a.close(); try? b.close() }
        let address = try SocketAddress.unix(path: "/unused")
        for (forced, expected) in [
            ([Errno.interrupted, .alreadyConnected], ConnectOutcome.connected),
            ([Errno.interrupted, .alreadyInProgress], ConnectOutcome.inProgress),
            ([Errno.inProgress], ConnectOutcome.inProgress),
        ] {
            let driver = MockingDriver()
            driver.forcedErrnos = forced.map { ("connect", $0) }
            // The last forced errno is the answer: no real connect is made.
            let outcome = try driver.withMocking { () throws(SystemError) in try a.connect(to: address) }
            XCTAssertEqual(outcome, expected, "\(forced)")
            XCTAssertEqual(driver.trace, Array(repeating: "connect", count: forced.count))
        }
    }

    func testAlreadyConnectedWithoutAnInterruptIsAnError() throws {
        let (a, b) = try Socket.pair()
        defer { try? a.close(); try? b.close() }
        let driver = MockingDriver()
        driver.forcedErrnos = [("connect", .alreadyConnected)]
        let address = try SocketAddress.unix(path: "/run/x.sock")
        do throws(SystemError) {
            _ = try driver.withMocking { () throws(SystemError) in try a.connect(to: address) }
            XCTFail("expected EISCONN")
        } catch {
            XCTAssertEqual(error, SystemError("connect", path: "/run/x.sock", .alreadyConnected))
        }
    }

    func testEventFDTreatsEAGAINAsNothingToDrainAndAsAlreadySignalled() throws {
        let event = try EventFD.create()
        defer { try? event.close() }
        let driver = MockingDriver()
        driver.forcedErrnos = [("write", .wouldBlock), ("read", .wouldBlock)]
        let drained = try driver.withMocking { () throws(SystemError) in
            try event.signal()
            return try event.drain()
        }
        XCTAssertEqual(drained, 0)
        XCTAssertEqual(driver.trace, ["write", "read"])
    }

    func testCallsThatReturnAnErrorNumberReportIt() throws {
        let driver = MockingDriver()
        driver.forcedErrnos = [("posix_spawn", .noMemory), ("pthread_sigmask", .invalidArgument)]
        try driver.withMocking { () throws(SystemError) in
            do throws(SystemError) {
                _ = try Spawn(path: "/bin/true").run()
                XCTFail("expected ENOMEM")
            } catch {
                XCTAssertEqual(error, SystemError("posix_spawn", path: "/bin/true", .noMemory))
            }
            do throws(SystemError) {
                _ = try Signals.block([SIGUSR1])
                XCTFail("expected EINVAL")
            } catch {
                XCTAssertEqual(error.description, "pthread_sigmask: Invalid argument (EINVAL)")
            }
        }
        XCTAssertEqual(driver.trace, ["posix_spawn", "pthread_sigmask"])
    }

    /// Each failure names the call and, where there is one, the path or address.
    func testErrorDescriptionsNameTheCallAndThePath() throws {
        struct Case {
            let forced: (call: String, errno: Errno)
            let expected: String
            let run: () throws(SystemError) -> Void
        }
        let (a, b) = try Socket.pair()
        defer { try? a.close(); try? b.close() }
        let region = try MappedRegion.anonymous(length: 8192, shared: false)
        defer { try? region.unmap() }
        let cases: [Case] = [
            Case(forced: ("mprotect", .noMemory), expected: "mprotect: Cannot allocate memory (ENOMEM)") { () throws(SystemError) in
                try region.guardLowest(4096)
            },
            Case(forced: ("bind", .addressInUse), expected: "bind(127.0.0.1:8126): Address already in use (EADDRINUSE)") { () throws(SystemError) in
                try a.bind(to: .ipv4(.loopback(port: 8126)))
            },
            Case(forced: ("mkdtemp", .permissionDenied), expected: "mkdtemp(/nope/fks-XXXXXX): Permission denied (EACCES)") { () throws(SystemError) in
                _ = try FileSystem.makeTemporaryDirectory(in: "/nope", prefix: "fks-")
            },
            Case(forced: ("fcntl", .badFileDescriptor), expected: "fcntl(F_GETFL): Bad file descriptor (EBADF)") { () throws(SystemError) in
                _ = try a.fileDescriptor.isNonBlocking()
            },
            Case(forced: ("read", .badFileDescriptor), expected: "read(eventfd): Bad file descriptor (EBADF)") { () throws(SystemError) in
                _ = try EventFD(rawValue: a.rawValue).drain()
            },
            Case(forced: ("opendir", .permissionDenied), expected: "opendir(/proc): Permission denied (EACCES)") { () throws(SystemError) in
                _ = try ProcessControl.children(of: 1)
            },
            Case(forced: ("getsockopt", .notPermitted), expected: "getsockopt(SO_PEERCRED): Operation not permitted (EPERM)") { () throws(SystemError) in
                _ = try a.peerCredentials()
            },
            Case(forced: ("sigaction", .invalidArgument), expected: "sigaction(9): Invalid argument (EINVAL)") { () throws(SystemError) in
                try Signals.ignore(SIGKILL)
            },
        ]
        for item in cases {
            let driver = MockingDriver()
            driver.forcedErrnos = [item.forced]
            do {
                try driver.withMocking { () throws(SystemError) in try item.run() }
                XCTFail("expected \(item.expected)")
            } catch {
                XCTAssertEqual(error.description, item.expected)
            }
        }
    }
}
