import TestSupport

/// Fuzzing helpers on the shared seeded generator.
extension SeededGenerator {
    mutating func bytes(count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: 0...255, using: &self) }
    }

    /// `original` with 1 to 4 random edits: a flipped byte, a byte set to
    /// an interesting value, a byte inserted or removed, or a cut.
    mutating func mutate(_ original: [UInt8]) -> [UInt8] {
        var bytes = original
        let interesting: [UInt8] = [0x00, 0x7f, 0x80, 0xff, 0xc0, 0xc1, 0xdc, 0xdd, 0xde, 0xdf, 0xdb, 0xc6, 0xc9, 0x0d, 0x0a, 0x3a, 0x20]
        for _ in 0..<Int.random(in: 1...4, using: &self) {
            if bytes.isEmpty { bytes.append(UInt8.random(in: 0...255, using: &self)); continue }
            let at = Int.random(in: 0..<bytes.count, using: &self)
            switch Int.random(in: 0..<5, using: &self) {
            case 0: bytes[at] ^= UInt8(1) << UInt8.random(in: 0..<8, using: &self)
            case 1: bytes[at] = interesting.randomElement(using: &self)!
            case 2: bytes.insert(UInt8.random(in: 0...255, using: &self), at: at)
            case 3: bytes.remove(at: at)
            default: bytes.removeSubrange(at...)
            }
        }
        return bytes
    }
}

/// Every way to cut `bytes` into two non-empty pieces, plus the whole.
func twoWaySplits(_ bytes: [UInt8]) -> [[[UInt8]]] {
    var result: [[[UInt8]]] = [[bytes]]
    if bytes.count > 1 {
        for cut in 1..<bytes.count { result.append([Array(bytes[..<cut]), Array(bytes[cut...])]) }
    }
    return result
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
}

extension Array where Element == UInt8 {
    init(ascii text: String) { self = Array(text.utf8) }
}
