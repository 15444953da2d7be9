import PersistCore
import PersistLocation
import Synchronization

/// Counts the blob and consensus calls a benchmark makes and the time spent in them, so
/// a run can say where its time goes. Calls that overlap each add their own duration,
/// so a tally's seconds may exceed the wall time that passed.
final class StorageTally: Sendable {
    enum Operation: String, CaseIterable, Codable, Sendable {
        case blobGet, blobSet, blobDelete, blobList
        case consensusHead, consensusCaS, consensusScan, consensusTruncate, consensusListKeys
    }

    struct Figures: Codable, Sendable {
        var calls = 0
        var seconds = 0.0
    }

    /// The figures of every operation at one moment; subtract two to get an interval's.
    struct Snapshot: Sendable {
        var figures: [Operation: Figures] = [:]

        subscript(_ operation: Operation) -> Figures { figures[operation] ?? Figures() }

        func minus(_ earlier: Snapshot) -> Snapshot {
            var out = Snapshot()
            for operation in Operation.allCases {
                let now = self[operation]
                let then = earlier[operation]
                out.figures[operation] = Figures(calls: now.calls - then.calls, seconds: now.seconds - then.seconds)
            }
            return out
        }
    }

    private let state = Mutex(Snapshot())
    private let clock = ContinuousClock()

    func snapshot() -> Snapshot { state.withLock { $0 } }

    /// Runs `body` and adds one call of `operation` and its duration (also when it throws).
    func measure<T>(
        _ operation: Operation, _ body: () async throws(StorageError) -> T
    ) async throws(StorageError) -> T {
        let start = clock.now
        defer {
            let seconds = (clock.now - start).seconds
            state.withLock { s in
                var f = s[operation]
                f.calls += 1
                f.seconds += seconds
                s.figures[operation] = f
            }
        }
        return try await body()
    }
}

/// A `Blob` that forwards every call to `inner` and records it in a `StorageTally`.
struct TalliedBlob: Blob {
    let inner: any Blob
    let tally: StorageTally

    func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        try await tally.measure(.blobGet) { () async throws(StorageError) in try await inner.get(key) }
    }

    func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        try await tally.measure(.blobSet) { () async throws(StorageError) in try await inner.set(key, value) }
    }

    func delete(_ key: String) async throws(StorageError) -> Int? {
        try await tally.measure(.blobDelete) { () async throws(StorageError) in try await inner.delete(key) }
    }

    func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        try await tally.measure(.blobList) { () async throws(StorageError) in try await inner.list(prefix: prefix) }
    }
}

/// A `Consensus` that forwards every call to `inner` and records it in a `StorageTally`.
struct TalliedConsensus: Consensus {
    let inner: any Consensus
    let tally: StorageTally

    func head(_ key: String) async throws(StorageError) -> VersionedData? {
        try await tally.measure(.consensusHead) { () async throws(StorageError) in try await inner.head(key) }
    }

    func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        try await tally.measure(.consensusCaS) { () async throws(StorageError) in
            try await inner.compareAndSet(key, expected: expected, new: new)
        }
    }

    func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try await tally.measure(.consensusScan) { () async throws(StorageError) in
            try await inner.scan(key, from: from, limit: limit)
        }
    }

    func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        try await tally.measure(.consensusTruncate) { () async throws(StorageError) in
            try await inner.truncate(key, seqno: seqno)
        }
    }

    func listKeys() async throws(StorageError) -> [String] {
        try await tally.measure(.consensusListKeys) { () async throws(StorageError) in try await inner.listKeys() }
    }
}
