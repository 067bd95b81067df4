import XCTest
@testable import Wire

final class OrderedMapTests: XCTestCase {
    func testInsertionOrderIsKeptAndUpdatesStayInPlace() {
        var map: OrderedMap<Int> = ["b": 1, "a": 2]
        map["c"] = 3
        map["b"] = 10
        XCTAssertEqual(map.keys, ["b", "a", "c"])
        XCTAssertEqual(map.values, [10, 2, 3])
        XCTAssertEqual(map.updateValue(20, forKey: "a"), 2)
        XCTAssertNil(map.updateValue(4, forKey: "d"))
        map["b"] = nil
        XCTAssertEqual(map.map(\.key), ["a", "c", "d"])
        XCTAssertNil(map["b"])
        XCTAssertEqual(OrderedMap([("x", 1), ("y", 2), ("x", 3)]), ["x": 3, "y": 2], "a repeated key keeps its first place and last value")
    }

    func testEqualityIsOrderSensitive() {
        XCTAssertNotEqual(["a": 1, "b": 2] as OrderedMap<Int>, ["b": 2, "a": 1])
        XCTAssertEqual(["a": 1, "b": 2] as OrderedMap<Int>, ["a": 1, "b": 2])
    }

    func testLargeMapsStayCorrectAcrossTheIndexThreshold() {
        var map = OrderedMap<Int>()
        for i in 0..<100 { map["k\(i)"] = i }
        for i in 0..<100 { XCTAssertEqual(map["k\(i)"], i) }
        for i in stride(from: 0, to: 100, by: 2) { map["k\(i)"] = nil }
        XCTAssertEqual(map.count, 50)
        for i in 0..<100 { XCTAssertEqual(map["k\(i)"], i % 2 == 0 ? nil : i) }
        XCTAssertEqual(map.position(of: "k99"), 49)
        while let key = map.keys.first { map[key] = nil }
        XCTAssertTrue(map.isEmpty)
        map["again"] = 1
        XCTAssertEqual(map["again"], 1)
    }
}
