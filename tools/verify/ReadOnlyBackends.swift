import PersistCore
import PersistLocation

// Library-ready: depends on PersistCore and PersistLocation only.

/// How storage reads are retried before the store counts as unreachable: a few attempts
/// with a doubling delay, so a store that is briefly busy (a server restarting after the
/// crash test's heal) is waited for, and one that is down ends the run quickly.
struct AttemptPolicy: Sendable {
    /// Tries per read, at least 1.
    var attempts: Int
    var initialDelay: Duration = .milliseconds(100)
    var maxDelay: Duration = .seconds(2)

    /// Runs `op` until it succeeds or `attempts` tries have failed; then throws the last
    /// error.
    func run<T: Sendable>(_ op: () async throws(StorageError) -> T) async throws(StorageError) -> T {
        var delay = initialDelay
        var tries = 0
        while true {
            do {
                return try await op()
            } catch {
                tries += 1
                guard tries < attempts else { throw error }
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, maxDelay)
            }
        }
    }
}

/// The error every write through the read-only wrappers gets: the verifier never writes.
private func refusedWrite(_ what: String) -> StorageError {
    .determinate(.invalidArgument, "txn-verify does not write: \(what) refused")
}

/// A `Blob` that only reads, retrying each read as `policy` says. Writes are refused, so
/// a check can never change the store it checks.
struct ReadOnlyBlob: Blob {
    let inner: any Blob
    let policy: AttemptPolicy

    func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        try await policy.run { () async throws(StorageError) in try await inner.get(key) }
    }

    func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        throw refusedWrite("blob set \(key)")
    }

    func delete(_ key: String) async throws(StorageError) -> Int? {
        throw refusedWrite("blob delete \(key)")
    }

    func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        try await policy.run { () async throws(StorageError) in try await inner.list(prefix: prefix) }
    }
}

/// A `Consensus` that only reads, retrying each read as `policy` says. Writes are refused.
struct ReadOnlyConsensus: Consensus {
    let inner: any Consensus
    let policy: AttemptPolicy

    func head(_ key: String) async throws(StorageError) -> VersionedData? {
        try await policy.run { () async throws(StorageError) in try await inner.head(key) }
    }

    func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        throw refusedWrite("compare-and-set on \(key)")
    }

    func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try await policy.run { () async throws(StorageError) in try await inner.scan(key, from: from, limit: limit) }
    }

    func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        throw refusedWrite("truncate of \(key)")
    }

    func listKeys() async throws(StorageError) -> [String] {
        try await policy.run { () async throws(StorageError) in try await inner.listKeys() }
    }
}
