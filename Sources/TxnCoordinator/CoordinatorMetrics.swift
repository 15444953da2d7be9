import Metrics
import PersistCodec

/// swift-metrics instruments of the coordinator. Labels name operations and outcomes,
/// never shards or keys.
///
/// - `txn_coordinator_requests_total{op, outcome}`: `op` is create_shard, list_shards,
///   register, forget, commit, read, subscribe, compact or status; `outcome` is `ok` or
///   a `CoordinatorError.Code` raw value.
/// - `txn_coordinator_request_duration_seconds{op}`: from the call to its answer (for
///   commits: until the txns write is durable).
/// - `txn_coordinator_commit_groups_total`, and `txn_coordinator_commit_group_size`
///   (a histogram of commits per txns write).
/// - `txn_coordinator_timestamp_retries_total`: coordinator-chosen times that turned out
///   closed (another writer was ahead) and were retried.
/// - `txn_coordinator_applies_total{outcome}` and `txn_coordinator_apply_duration_seconds`.
/// - `txn_coordinator_queue_depth` (gauge): jobs waiting for the worker.
struct CoordinatorMetrics: Sendable {
    let factory: any MetricsFactory

    init(factory: any MetricsFactory) { self.factory = factory }

    enum Operation: String, Sendable {
        case createShard = "create_shard"
        case listShards = "list_shards"
        case register, forget, commit, read, subscribe, compact, status
    }

    /// Counts and times one request.
    func request(_ op: Operation, error: CoordinatorError?, since start: ContinuousClock.Instant) {
        let outcome = error?.code.rawValue ?? "ok"
        Counter(label: "txn_coordinator_requests_total", dimensions: [("op", op.rawValue), ("outcome", outcome)], factory: factory)
            .increment()
        Metrics.Timer(label: "txn_coordinator_request_duration_seconds", dimensions: [("op", op.rawValue)], factory: factory)
            .recordNanoseconds(Self.nanoseconds(since: start))
    }

    func commitGroup(size: Int) {
        Counter(label: "txn_coordinator_commit_groups_total", dimensions: [], factory: factory).increment()
        Recorder(label: "txn_coordinator_commit_group_size", dimensions: [], aggregate: true, factory: factory).record(size)
    }

    func timestampRetried() {
        Counter(label: "txn_coordinator_timestamp_retries_total", dimensions: [], factory: factory).increment()
    }

    func applied(ok: Bool, since start: ContinuousClock.Instant) {
        Counter(label: "txn_coordinator_applies_total", dimensions: [("outcome", ok ? "ok" : "error")], factory: factory)
            .increment()
        Metrics.Timer(label: "txn_coordinator_apply_duration_seconds", dimensions: [], factory: factory)
            .recordNanoseconds(Self.nanoseconds(since: start))
    }

    func queueDepth(_ depth: Int) {
        Gauge(label: "txn_coordinator_queue_depth", dimensions: [], factory: factory).record(depth)
    }

    static func nanoseconds(since start: ContinuousClock.Instant) -> Int64 {
        let (s, atto) = (ContinuousClock.now - start).components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
