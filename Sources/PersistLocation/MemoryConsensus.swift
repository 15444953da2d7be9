import PersistCore
import Synchronization

/// An in-memory `Consensus`: the reference semantics, for tests and the in-memory
/// embedded mode. Nothing survives the process.
public final class MemoryConsensus: Consensus {
    private let table = Mutex(ConsensusTable())

    public init() {}

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        table.withLock { $0.head(ByteKey(key)) }
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError)
        -> CaSResult
    {
        try ConsensusPreconditions.checkCaS(key, expected: expected, new: new)
        let k = ByteKey(key)
        return table.withLock { t in
            let current = t.head(k)
            guard current?.seqno == expected else { return .expectationMismatch(current: current) }
            t.append(k, new)
            return .committed
        }
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try ConsensusPreconditions.checkScanLimit(limit)
        return table.withLock { $0.scan(ByteKey(key), from: from, limit: limit) }
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        let k = ByteKey(key)
        let result: Result<Int, StorageError> = table.withLock { t in
            t.checkTruncate(k, seqno: seqno).map { _ in t.truncate(k, below: seqno).count }
        }
        return try result.get()
    }

    public func listKeys() async throws(StorageError) -> [String] {
        table.withLock { $0.listKeys() }
    }
}
