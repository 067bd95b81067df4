import EventRing

/// The most recent events, oldest first, in a fixed-capacity circular
/// buffer: a live session can run for hours, the log pane and `e` export
/// show what is still held, and `dropped` says how much is no longer.
public struct EventLog: Sendable, Equatable, RandomAccessCollection {
    private var storage: [Event] = []
    private var head = 0
    public let capacity: Int
    /// Events pushed out of the buffer by newer ones.
    public private(set) var dropped = 0

    public init(capacity: Int) {
        precondition(capacity > 0)
        self.capacity = capacity
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { storage.count }

    public subscript(position: Int) -> Event {
        storage.count < capacity ? storage[position] : storage[(head + position) % capacity]
    }

    mutating func append(_ event: Event) {
        if storage.count < capacity {
            storage.append(event)
        } else {
            storage[head] = event
            head = (head + 1) % capacity
            dropped += 1
        }
    }
}
