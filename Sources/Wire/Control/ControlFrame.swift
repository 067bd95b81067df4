/// The demo server's control-socket messages: each frame is a 4-byte
/// big-endian payload length, then that many bytes of MessagePack holding
/// one map with string keys (`{"op": "fork", "count": 2}`).
public struct ControlMessage: Equatable, Sendable, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    public var fields: OrderedMap<MessagePackValue>

    public init(_ fields: OrderedMap<MessagePackValue>) { self.fields = fields }

    public init(dictionaryLiteral elements: (String, MessagePackValue)...) {
        fields = OrderedMap(elements)
    }

    public subscript(key: String) -> MessagePackValue? {
        get { fields[key] }
        set { fields[key] = newValue }
    }

    public var description: String { fields.description }
}

/// Why control bytes are not a message.
public enum ControlFrameError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A declared (or, when encoding, actual) payload longer than the maximum.
    /// The stream cannot be resynchronised after this: close it.
    case frameTooLarge(length: Int, limit: Int)
    /// The payload is not one MessagePack value.
    case invalidPayload(MessagePackError)
    /// The payload is MessagePack but not a map.
    case notAMap(MessagePackType)
    /// A map key that is not a string.
    case nonStringKey(MessagePackType)
    /// The stream ended inside a frame.
    case truncatedFrame(bufferedBytes: Int)

    public var description: String {
        switch self {
        case let .frameTooLarge(length, limit): "control frame of \(length) bytes exceeds the \(limit)-byte limit"
        case .invalidPayload(let error): "control frame payload is not valid MessagePack: \(error)"
        case .notAMap(let type): "control frame payload is a \(type), not a map"
        case .nonStringKey(let type): "control frame map has a \(type) key; keys must be strings"
        case .truncatedFrame(let buffered): "control stream ended inside a frame (\(buffered) bytes buffered)"
        }
    }
}

public enum ControlFrame {
    /// The largest payload a frame may carry (64 KiB); the 4-byte length is extra.
    public static let maxPayloadBytes = 64 * 1024
    public static let lengthPrefixBytes = 4
    /// Nesting allowed inside a message's values.
    public static let maxDepth = 16

    /// The frame for `message`: length prefix then the MessagePack map.
    public static func encode(_ message: ControlMessage) throws(ControlFrameError) -> [UInt8] {
        var writer = MessagePackWriter(reservingCapacity: 64)
        writer.writeEncoded([0, 0, 0, 0])
        writer.writeMapHeader(count: message.fields.count)
        for (key, value) in message.fields {
            writer.write(key)
            writer.write(value)
        }
        let length = writer.count - lengthPrefixBytes
        guard length <= maxPayloadBytes else { throw .frameTooLarge(length: length, limit: maxPayloadBytes) }
        var bytes = writer.bytes
        bytes[0] = UInt8(truncatingIfNeeded: length >> 24)
        bytes[1] = UInt8(truncatingIfNeeded: length >> 16)
        bytes[2] = UInt8(truncatingIfNeeded: length >> 8)
        bytes[3] = UInt8(truncatingIfNeeded: length)
        return bytes
    }

    /// Decodes one payload (without its length prefix).
    public static func decodePayload(_ bytes: [UInt8], range: Range<Int>) throws(ControlFrameError) -> ControlMessage {
        var reader = MessagePackReader(bytes, range: range, maxDepth: maxDepth)
        let type: MessagePackType
        do { type = try reader.peekType() } catch { throw .invalidPayload(error) }
        guard type == .map else { throw .notAMap(type) }
        var fields = OrderedMap<MessagePackValue>()
        let count: Int
        do { count = try reader.readMapHeader() } catch { throw .invalidPayload(error) }
        for _ in 0..<count {
            let keyType: MessagePackType
            do { keyType = try reader.peekType() } catch { throw .invalidPayload(error) }
            guard keyType == .string else { throw .nonStringKey(keyType) }
            do {
                let key = try reader.readString()
                fields[key] = try reader.readValue()
            } catch {
                throw .invalidPayload(error)
            }
        }
        do { try reader.expectEnd() } catch { throw .invalidPayload(error) }
        return ControlMessage(fields)
    }
}

/// Splits a control stream fed in arbitrary pieces into messages.
///
///     decoder.feed(bytesJustRead)
///     while let message = try decoder.next() { … }
///
/// A bad payload is reported and skipped (its length was valid, so the next
/// frame is still found); a too-large length is final, as framing is lost.
/// Nothing beyond one maximum frame is ever buffered for a partial message.
public struct ControlFrameDecoder: Sendable {
    var buffer: [UInt8] = []
    var start = 0
    var failure: ControlFrameError?

    public init() {}

    public var bufferedByteCount: Int { buffer.count - start }

    public mutating func feed(_ bytes: some Sequence<UInt8>) {
        buffer.append(contentsOf: bytes)
    }

    /// The next complete message, or nil until more bytes arrive.
    public mutating func next() throws(ControlFrameError) -> ControlMessage? {
        if let failure { throw failure }
        let available = buffer.count - start
        guard available >= ControlFrame.lengthPrefixBytes else { return nil }
        let length = Int(buffer[start]) << 24 | Int(buffer[start + 1]) << 16 | Int(buffer[start + 2]) << 8 | Int(buffer[start + 3])
        guard length <= ControlFrame.maxPayloadBytes else {
            failure = .frameTooLarge(length: length, limit: ControlFrame.maxPayloadBytes)
            throw .frameTooLarge(length: length, limit: ControlFrame.maxPayloadBytes)
        }
        guard available >= ControlFrame.lengthPrefixBytes + length else { return nil }
        let payloadStart = start + ControlFrame.lengthPrefixBytes
        start = payloadStart + length
        defer { compact() }
        return try ControlFrame.decodePayload(buffer, range: payloadStart..<start)
    }

    /// The peer closed: throws `truncatedFrame` if a frame was cut off.
    public func endOfStream() throws(ControlFrameError) {
        if let failure { throw failure }
        if buffer.count > start { throw .truncatedFrame(bufferedBytes: buffer.count - start) }
    }

    mutating func compact() {
        if start == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            start = 0
        } else if start >= 4096 && start * 2 >= buffer.count {
            buffer.removeSubrange(0..<start)
            start = 0
        }
    }
}
