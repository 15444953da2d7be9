import Metrics

/// swift-metrics instruments of the txn-wal layer. Labels name operations, never shard
/// ids or keys.
///
/// - `txn_wal_operations_total{op, outcome}`: `op` is commit, register, forget,
///   forget_all, apply_le or compact_to; `outcome` is `ok` or `timestamp_closed`.
/// - `txn_wal_operation_duration_seconds{op}`.
/// - `txn_wal_retries_total{op}`: txns-shard compare-and-appends lost to a race.
/// - `txn_wal_committed_batches_total`, `txn_wal_committed_bytes_total` (encoded part
///   bytes of the committed batches).
/// - `txn_wal_unapplied_batches`, `txn_wal_unapplied_registrations` (gauges, from the
///   handle's cache).
public struct TxnsMetrics: Sendable {
    let factory: any MetricsFactory

    public init(factory: any MetricsFactory = MetricsSystem.factory) { self.factory = factory }

    public enum Operation: String, Sendable {
        case commit, register, forget
        case forgetAll = "forget_all"
        case applyLE = "apply_le"
        case compactTo = "compact_to"
    }

    /// Times `body`, counting its outcome (a `Result` failure is `timestamp_closed`).
    func measure<T, E: Error>(_ op: Operation, _ body: () async throws -> Result<T, E>) async throws -> Result<T, E> {
        let start = ContinuousClock.now
        let result = try await body()
        let outcome: String
        switch result {
        case .success: outcome = "ok"
        case .failure: outcome = "timestamp_closed"
        }
        record(op, outcome: outcome, since: start)
        return result
    }

    /// Times `body`, which cannot fail softly.
    func measure<T>(_ op: Operation, _ body: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        let value = try await body()
        record(op, outcome: "ok", since: start)
        return value
    }

    func record(_ op: Operation, outcome: String, since start: ContinuousClock.Instant) {
        let (s, atto) = (ContinuousClock.now - start).components
        Counter(label: "txn_wal_operations_total", dimensions: [("op", op.rawValue), ("outcome", outcome)], factory: factory)
            .increment()
        Metrics.Timer(label: "txn_wal_operation_duration_seconds", dimensions: [("op", op.rawValue)], factory: factory)
            .recordNanoseconds(s * 1_000_000_000 + atto / 1_000_000_000)
    }

    func retried(_ op: Operation) {
        Counter(label: "txn_wal_retries_total", dimensions: [("op", op.rawValue)], factory: factory).increment()
    }

    func committed(batches: Int, bytes: Int) {
        Counter(label: "txn_wal_committed_batches_total", dimensions: [], factory: factory).increment(by: batches)
        Counter(label: "txn_wal_committed_bytes_total", dimensions: [], factory: factory).increment(by: bytes)
    }

    func unapplied(batches: Int, registrations: Int) {
        Gauge(label: "txn_wal_unapplied_batches", dimensions: [], factory: factory).record(batches)
        Gauge(label: "txn_wal_unapplied_registrations", dimensions: [], factory: factory).record(registrations)
    }
}
