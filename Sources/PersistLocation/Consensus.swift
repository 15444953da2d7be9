import PersistCore

/// A linearizable store of per-key sequences of versions, advanced only by
/// compare-and-set (spec/persist.md §2.3).
///
/// Contract shared by every implementation (checked by the conformance suite):
/// - `compareAndSet` commits iff the key's head seqno equals `expected` (or the key has
///   no versions and `expected` is nil), and the new version is durable when it returns
///   `.committed`. Otherwise it returns `.expectationMismatch` and writes nothing. It is
///   an `invalidArgument` error (determinate) if `new.seqno <= expected`.
/// - Seqnos are limited to `0...Int64.max` by `SeqNo` itself.
/// - Versions are kept until `truncate` removes them; the head is never removed.
public protocol Consensus: Sendable {
    /// The version with the largest seqno, or nil if the key has none.
    func head(_ key: String) async throws(StorageError) -> VersionedData?

    /// Appends `new` iff the key's current head seqno is `expected` (nil: no versions).
    func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError)
        -> CaSResult

    /// Up to `limit` versions with seqno `>= from`, ascending. Empty when the key has no
    /// such versions. `limit` must be positive.
    func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData]

    /// Deletes every version with seqno `< seqno` and returns how many were deleted
    /// (0 when repeated). It is an `invalidArgument` error, and nothing is deleted, if the
    /// key has no versions or `seqno` is greater than the head's seqno.
    func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int

    /// Every key that has at least one version, in ascending byte order. Admin only.
    func listKeys() async throws(StorageError) -> [String]
}

/// A `Consensus` whose writes can also be issued with a completion callback instead of
/// an `await`, for servers that answer from event-loop threads without a Swift task per
/// request. The callback runs exactly once, possibly on another thread, and must not
/// block.
public protocol CallbackConsensus: Consensus {
    func compareAndSet(
        _ key: String, expected: SeqNo?, new: VersionedData,
        completion: @escaping @Sendable (Result<CaSResult, StorageError>) -> Void)

    func truncate(_ key: String, seqno: SeqNo, completion: @escaping @Sendable (Result<Int, StorageError>) -> Void)
}

extension Consensus {
    /// `scan` with no practical limit.
    public func scanAll(_ key: String, from: SeqNo = .minimum) async throws(StorageError) -> [VersionedData] {
        try await scan(key, from: from, limit: Int(Int64.max))
    }
}

/// Argument checks every Consensus implementation applies identically.
public enum ConsensusPreconditions {
    public static func checkCaS(_ key: String, expected: SeqNo?, new: VersionedData) throws(StorageError) {
        if let e = expected, new.seqno <= e {
            throw .determinate(
                .invalidArgument,
                "compare-and-set on \(key): new seqno \(new.seqno) must be greater than expected \(e)")
        }
    }

    public static func checkScanLimit(_ limit: Int) throws(StorageError) {
        guard limit > 0 else {
            throw .determinate(.invalidArgument, "scan limit must be positive, got \(limit)")
        }
    }

    public static func truncateError(_ key: String, seqno: SeqNo, head: SeqNo?) -> StorageError {
        if let head {
            return .determinate(
                .invalidArgument, "cannot truncate \(key) at \(seqno): it is above the head \(head)")
        }
        return .determinate(.invalidArgument, "cannot truncate \(key) at \(seqno): the key has no versions")
    }
}
