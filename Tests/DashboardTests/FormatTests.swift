@testable import Dashboard
import XCTest

final class FormatTests: XCTestCase {
    func testCountsGetThousandsSeparators() {
        XCTAssertEqual(Format.count(0), "0")
        XCTAssertEqual(Format.count(999), "999")
        XCTAssertEqual(Format.count(1000), "1,000")
        XCTAssertEqual(Format.count(1_234_567), "1,234,567")
        XCTAssertEqual(Format.count(-12_345), "-12,345")
    }

    func testDurationsPickAUnitAndTruncate() {
        XCTAssertEqual(Format.duration(850_000), "850us")
        XCTAssertEqual(Format.duration(850_000, unicode: true), "850µs")
        XCTAssertEqual(Format.duration(1_250_000), "1.2ms")
        XCTAssertEqual(Format.duration(12_345_678), "12ms")
        XCTAssertEqual(Format.duration(1_257_000_000), "1.25s")
        XCTAssertEqual(Format.duration(12_500_000_000), "12.5s")
        XCTAssertEqual(Format.duration(185_000_000_000), "3m05s")
    }

    func testAxisLabelsHaveTheDecimalsTheirIntervalNeeds() {
        XCTAssertEqual(Format.axisLabel(12_000_000_000, interval: 2_000_000_000), "+12s")
        XCTAssertEqual(Format.axisLabel(1_500_000_000, interval: 500_000_000), "+1.5s")
        XCTAssertEqual(Format.axisLabel(250_000_000, interval: 50_000_000), "+0.25s")
        XCTAssertEqual(Format.axisLabel(1_000_000, interval: 1_000_000), "+0.001s")
    }

    func testBytes() {
        XCTAssertEqual(Format.bytes(900), "900B")
        XCTAssertEqual(Format.bytes(3385), "3.3KB")
        XCTAssertEqual(Format.bytes(200 * 1024), "200KB")
        XCTAssertEqual(Format.bytes(3 * 1024 * 1024 / 2), "1.5MB")
    }
}
