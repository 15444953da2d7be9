import PersistCodec
import PersistCore
import TxnClient

/// The coordinator calls the workloads make, as a protocol so the workloads can run
/// against `TxnClient` in production and against an in-memory model in tests.
///
/// Every call must end: with an answer, a `CoordinatorError` (the coordinator's typed
/// refusal), a `StorageError` (transport: determinate when the request was never sent),
/// or some other error, which the workloads treat as "may have happened".
public protocol LoadTarget: Sendable {
    /// Creates the data shard `name`, or answers the existing one (idempotent by name).
    func createShard(_ name: String) async throws -> ShardInfo
    /// Registers shards with the txns shard (already registered ones stay so).
    func register(_ shards: [ShardRef], at: Timestamp?) async throws -> Timestamp
    /// Commits the writes atomically at `at`, or at a time the coordinator picks.
    func commit(_ writes: [ShardWrites], at: Timestamp?) async throws -> Timestamp
    /// The shard's consolidated contents with every time forwarded to `asOf` (nil: the
    /// latest committed time), and that time.
    func read(_ shard: ShardRef, asOf: Timestamp?) async throws -> (asOf: Timestamp, rows: [Update])
    /// Every update of the shard at or before `asOf` (nil: the latest committed time) at
    /// its commit time, consolidated per key, value and time; and that time.
    func readHistory(_ shard: ShardRef, asOf: Timestamp?) async throws -> (asOf: Timestamp, rows: [Update])
}

extension TxnClient: LoadTarget {}
