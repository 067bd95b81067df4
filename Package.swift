// swift-tools-version:6.0
import PackageDescription

// Dependency direction (see docs/ARCHITECTURE in ../shared/DESIGN.md):
// CPosix ← Posix ← EventRing ← … ← forkscope. Modules on the fork path import
// no Foundation, Dispatch or Swift concurrency.
let package = Package(
    name: "forkscope",
    products: [
        .executable(name: "forkscope", targets: ["forkscope"]),
        // libforkscope-c.so: the C ABI (Sources/CForkscope/include/forkscope.h).
        // Not "forkscope": SwiftPM drops a product named like the executable.
        .library(name: "forkscope-c", type: .dynamic, targets: ["ForkscopeC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .target(name: "CPosix"),
        .target(name: "Posix", dependencies: ["CPosix"]),
        .systemLibrary(
            name: "CCurses",
            providers: [.apt(["libncurses-dev"])]
        ),
        .target(name: "EventRing", dependencies: ["Posix", "CPosix"]),
        .target(name: "Wire", dependencies: ["Posix"]),
        .target(name: "ForkSafety", dependencies: ["EventRing", "Posix", "CPosix"]),
        .target(name: "TraceTransport", dependencies: ["ForkSafety", "Wire", "EventRing", "Posix", "CPosix"]),
        .target(name: "Agent", dependencies: ["Wire", "Posix", "EventRing", "CPosix"]),
        .target(name: "DemoServer", dependencies: ["TraceTransport", "ForkSafety", "Wire", "EventRing", "Posix", "CPosix"]),
        .target(name: "Dashboard", dependencies: ["EventRing", "Posix"]),
        .target(name: "CForkscope", dependencies: ["CPosix"]),
        .target(name: "ForkscopeC", dependencies: ["CForkscope", "TraceTransport", "ForkSafety", "Wire", "EventRing", "Posix", "CPosix"]),
        .target(name: "Terminal", dependencies: ["Dashboard", "EventRing", "CCurses", "Posix", "CPosix"]),
        // Guided scenarios: spawn agent + demo server, drive them, check the folded model.
        .target(name: "Scenarios", dependencies: ["DemoServer", "Dashboard", "EventRing", "Posix", "TraceTransport", "Wire", "ForkSafety"]),
        .executableTarget(
            name: "forkscope",
            dependencies: [
                "Agent", "EventRing", "Wire", "ForkSafety", "DemoServer", "TraceTransport", "Posix", "Dashboard", "Terminal", "CPosix", "Scenarios",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Spawned by tests: real processes that publish, stall and die on cue,
        // so no test forks the XCTest process itself.
        .executableTarget(name: "forkscope-testhost", dependencies: ["EventRing", "ForkSafety", "TraceTransport", "Wire", "Posix", "CPosix"], path: "Sources/ForkscopeTestHost"),
        .testTarget(name: "PosixTests", dependencies: ["Posix", "CPosix"]),
        .target(name: "TestSupport", dependencies: ["EventRing", "Wire", "Posix"], path: "Tests/TestSupport"),
        .testTarget(name: "EventRingTests", dependencies: ["EventRing", "Posix", "CPosix", "TestSupport"]),
        .testTarget(name: "ForkscopeCLITests", dependencies: ["EventRing", "Posix", "TestSupport"]),
        .testTarget(name: "TerminalSmokeTests", dependencies: ["CCurses"]),
        .testTarget(name: "ForkSafetyTests", dependencies: ["ForkSafety", "EventRing", "Posix", "CPosix", "TestSupport"]),
        // Real forked processes publishing scripted events, for the dashboard's tests.
        .executableTarget(name: "dashboard-fixture-host", dependencies: ["EventRing", "Posix", "Terminal"], path: "Tests/DashboardTests/FixtureHost"),
        .testTarget(name: "DashboardTests", dependencies: ["Dashboard", "EventRing", "Posix", "TestSupport"], exclude: ["FixtureHost", "References"]),
        .testTarget(name: "TerminalTests", dependencies: ["Terminal", "Dashboard", "EventRing", "TraceTransport", "Posix", "TestSupport"]),
        .testTarget(name: "TraceTransportTests", dependencies: ["TraceTransport", "ForkSafety", "Wire", "EventRing", "Posix", "CPosix", "TestSupport"]),
        .testTarget(name: "DemoServerTests", dependencies: ["DemoServer", "TraceTransport", "ForkSafety", "Wire", "EventRing", "Posix", "TestSupport"]),
        // Real Ruby servers (Debian ruby, puma, unicorn) embedding the Ruby binding (bindings/ruby).
        .testTarget(name: "RubyHostTests", dependencies: ["EventRing", "Wire", "Posix", "TestSupport"]),
        .testTarget(name: "WireTests", dependencies: ["Wire", "Posix", "TestSupport"]),
        .testTarget(
            name: "ForkscopeCTests", dependencies: ["ForkscopeC", "CForkscope", "EventRing", "Wire", "Posix", "CPosix", "TestSupport"],
            exclude: ["C"]
        ),
        .testTarget(name: "ScenarioTests", dependencies: ["Scenarios", "Dashboard", "EventRing", "Posix", "TestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "ExportTests", dependencies: ["Dashboard", "EventRing", "Posix", "TestSupport"]),
        .testTarget(name: "AgentTests", dependencies: ["Agent", "Wire", "Posix", "EventRing", "TestSupport"]),
    ],
    swiftLanguageModes: [.v6]
)
