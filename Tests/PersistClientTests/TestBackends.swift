import PersistCore
import PersistLocation
import Synchronization

/// A Consensus that counts calls and versions returned, to check how much opening a
/// shard reads.
final class CountingConsensus: Consensus {
    let inner: any Consensus
    struct Counts {
        var heads = 0
        var scans = 0
        var versionsRead = 0
        var cas = 0
    }
    let counts = Mutex(Counts())

    init(_ inner: any Consensus) { self.inner = inner }

    func reset() { counts.withLock { $0 = Counts() } }

    func head(_ key: String) async throws(StorageError) -> VersionedData? {
        let v = try await inner.head(key)
        counts.withLock {
            $0.heads += 1
            $0.versionsRead += v == nil ? 0 : 1
        }
        return v
    }

    func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        counts.withLock { $0.cas += 1 }
        return try await inner.compareAndSet(key, expected: expected, new: new)
    }

    func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        let vs = try await inner.scan(key, from: from, limit: limit)
        counts.withLock {
            $0.scans += 1
            $0.versionsRead += vs.count
        }
        return vs
    }

    func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int { try await inner.truncate(key, seqno: seqno) }
    func listKeys() async throws(StorageError) -> [String] { try await inner.listKeys() }
}

/// A Blob that counts gets by key prefix component (`r` rollups, `p` parts).
final class CountingBlob: Blob {
    let inner: any Blob
    let gets = Mutex<[String: Int]>([:])

    init(_ inner: any Blob) { self.inner = inner }

    func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        let kind = key.split(separator: "/").dropFirst().first.map(String.init) ?? "?"
        gets.withLock { $0[kind, default: 0] += 1 }
        return try await inner.get(key)
    }

    func set(_ key: String, _ value: [UInt8]) async throws(StorageError) { try await inner.set(key, value) }
    func delete(_ key: String) async throws(StorageError) -> Int? { try await inner.delete(key) }
    func list(prefix: String) async throws(StorageError) -> [BlobMetadata] { try await inner.list(prefix: prefix) }
}
