import XCTest
@testable import Terminal
import Dashboard

final class KeyDecodingTests: XCTestCase {
    func testControlCharactersDecodeToNamedKeys() {
        XCTAssertEqual(CursesScreen.characterKey(9), .tab)
        XCTAssertEqual(CursesScreen.characterKey(13), .enter)
        XCTAssertEqual(CursesScreen.characterKey(27), .escape)
        XCTAssertEqual(CursesScreen.characterKey(127), .backspace)
        XCTAssertEqual(CursesScreen.characterKey(12), .control("l"))
        XCTAssertEqual(CursesScreen.characterKey(0x71), .character("q"))
        XCTAssertEqual(CursesScreen.characterKey(0xE9), .character("é"))
    }
}
