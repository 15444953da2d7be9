import Synchronization

/// Hands out history process ids. A process runs one transaction at a time; after an
/// `info` outcome its id is never used again (the checker cannot know when, or whether,
/// that transaction took effect), so the next transaction gets a fresh one.
public struct ProcessIDs: Hashable, Sendable {
    var free: [Int] = []
    public private(set) var next = 0
    /// Ids retired after an unknown outcome.
    public private(set) var retired = 0

    public init() {}

    /// A free id: the lowest released one, or a new one.
    public mutating func acquire() -> Int {
        if let i = free.indices.min(by: { free[$0] < free[$1] }) { return free.remove(at: i) }
        return fresh()
    }

    /// An id never used before.
    public mutating func fresh() -> Int {
        defer { next += 1 }
        return next
    }

    /// Returns `id` after its transaction ended with `outcome`.
    public mutating func release(_ id: Int, after outcome: TxnOutcome) {
        if outcome == .info {
            retired += 1
        } else {
            free.append(id)
        }
    }
}

/// `ProcessIDs` shared by concurrent clients.
public final class ProcessPool: Sendable {
    let ids = Mutex(ProcessIDs())

    public init() {}

    public func acquire() -> Int { ids.withLock { $0.acquire() } }
    public func fresh() -> Int { ids.withLock { $0.fresh() } }
    public func release(_ id: Int, after outcome: TxnOutcome) { ids.withLock { $0.release(id, after: outcome) } }
    /// Ids handed out so far.
    public var used: Int { ids.withLock { $0.next } }
}
