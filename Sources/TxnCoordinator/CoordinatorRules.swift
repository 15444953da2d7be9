import PersistCodec
import PersistCore

/// The coordinator's decisions that need no I/O: request validation, timestamp choice
/// and read-time resolution. Time and frontiers come in as arguments.
enum CoordinatorRules {
    /// The largest timestamp a client may name. The txns shard's upper becomes `t + 1`
    /// after an operation at `t`, and a little headroom keeps every `+ 1` in range.
    static let maxTimestamp: Timestamp = .max - 2

    /// The size of a commit, for the limits and for group sizing.
    struct CommitSize: Hashable, Sendable {
        var rows: Int
        var bytes: Int
    }

    /// Checks a commit's shape: at least one row, and at most `maxRows` rows and
    /// `maxBytes` key and value bytes in total.
    static func validateCommit(_ writes: [ShardWrites], maxRows: Int, maxBytes: Int) -> Result<CommitSize, CoordinatorError> {
        var size = CommitSize(rows: 0, bytes: 0)
        for w in writes {
            size.rows += w.rows.count
            for row in w.rows { size.bytes += row.key.count + row.value.count }
            if size.rows > maxRows {
                return .failure(CoordinatorError(.badRequest, "the commit has more than \(maxRows) rows"))
            }
            if size.bytes > maxBytes {
                return .failure(CoordinatorError(.badRequest, "the commit has more than \(maxBytes) bytes of keys and values"))
            }
        }
        if size.rows == 0 { return .failure(CoordinatorError(.badRequest, "the commit writes no rows")) }
        return .success(size)
    }

    /// Refuses client timestamps too close to the end of time.
    static func validateExplicit(_ at: Timestamp?) -> CoordinatorError? {
        guard let at, at > maxTimestamp else { return nil }
        return CoordinatorError(.badRequest, "timestamp \(at) is beyond the largest usable one, \(maxTimestamp)")
    }

    /// The timestamp for an operation the client did not time: the wall clock in
    /// milliseconds, or the txns upper when that is ahead (so timestamps never go back,
    /// also across restarts and clock steps).
    static func pick(nowMilliseconds: UInt64, txnsUpper: Timestamp) -> Timestamp {
        max(nowMilliseconds, txnsUpper)
    }

    /// How a read or subscription at a requested time proceeds.
    enum ReadTime: Hashable, Sendable {
        /// Read at this time, which is already closed in the txns shard.
        case read(Timestamp)
        /// The time is still open: close it first (an empty commit at it), then read.
        case seal(Timestamp)
    }

    /// Resolves a read's `asOf` against the txns shard's `upper` and `since`: nil means the
    /// latest committed time, `upper - 1`. A time at or beyond the upper may be read only
    /// if the wall clock has reached it (reading it closes it); a time below the since
    /// has been compacted away.
    static func resolveRead(asOf: Timestamp?, upper: Timestamp, since: Timestamp, nowMilliseconds: UInt64)
        -> Result<ReadTime, CoordinatorError>
    {
        precondition(upper > 0, "an opened txns shard has an upper beyond 0")
        guard let asOf else { return .success(.read(upper - 1)) }
        if asOf < since {
            return .failure(CoordinatorError(.badRequest, "cannot read as of \(asOf): compacted up to \(since)"))
        }
        if asOf < upper { return .success(.read(asOf)) }
        if asOf <= nowMilliseconds, asOf <= maxTimestamp { return .success(.seal(asOf)) }
        return .failure(
            CoordinatorError(
                .badRequest,
                "cannot read as of \(asOf): it is in the future (latest committed time \(upper - 1), clock \(nowMilliseconds))"))
    }

    /// Splits commits into those whose shards are all registered and those that write a
    /// shard that is not (with the first such shard).
    static func partitionByRegistration<Job>(
        _ jobs: [Job], shards: (Job) -> [ShardID], isRegistered: (ShardID) -> Bool
    ) -> (ok: [Job], rejected: [(Job, ShardID)]) {
        var ok: [Job] = []
        var rejected: [(Job, ShardID)] = []
        for job in jobs {
            if let missing = shards(job).first(where: { !isRegistered($0) }) {
                rejected.append((job, missing))
            } else {
                ok.append(job)
            }
        }
        return (ok, rejected)
    }

    /// The number of distinct times among outstanding work that is later than what this
    /// coordinator has applied.
    static func unappliedCount(times: [Timestamp], appliedThrough: Timestamp?) -> Int {
        Set(times.filter { t in appliedThrough.map { t > $0 } ?? true }).count
    }
}
