import Metrics
import PersistCore

/// Counts and times the operations of another `Blob` with swift-metrics:
/// `blob_operations_total{op, outcome}`, `blob_operation_duration_seconds{op}`,
/// `blob_read_bytes_total`, `blob_written_bytes_total`. Outcomes are `ok`,
/// `error_determinate` and `error_indeterminate`. Keys never appear in labels.
public struct MetricsBlob: Blob {
    public let inner: any Blob
    private let recorder: OperationRecorder
    private let readBytes: Counter
    private let writtenBytes: Counter

    public init(_ inner: any Blob, factory: any MetricsFactory = MetricsSystem.factory) {
        self.inner = inner
        self.recorder = OperationRecorder(subsystem: "blob", factory: factory)
        self.readBytes = Counter(label: "blob_read_bytes_total", dimensions: [], factory: factory)
        self.writtenBytes = Counter(label: "blob_written_bytes_total", dimensions: [], factory: factory)
    }

    public func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        let value = try await recorder.measure("get") { () async throws(StorageError) in try await inner.get(key) }
        if let value { readBytes.increment(by: value.count) }
        return value
    }

    public func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        try await recorder.measure("set") { () async throws(StorageError) in try await inner.set(key, value) }
        writtenBytes.increment(by: value.count)
    }

    public func delete(_ key: String) async throws(StorageError) -> Int? {
        try await recorder.measure("delete") { () async throws(StorageError) in try await inner.delete(key) }
    }

    public func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        try await recorder.measure("list") { () async throws(StorageError) in try await inner.list(prefix: prefix) }
    }
}

/// Counts and times the operations of another `Consensus` with swift-metrics:
/// `consensus_operations_total{op, outcome}` (outcomes `ok`, `mismatch`,
/// `error_determinate`, `error_indeterminate`), `consensus_operation_duration_seconds{op}`,
/// `consensus_read_bytes_total`, `consensus_written_bytes_total`.
public struct MetricsConsensus: Consensus {
    public let inner: any Consensus
    private let recorder: OperationRecorder
    private let readBytes: Counter
    private let writtenBytes: Counter

    public init(_ inner: any Consensus, factory: any MetricsFactory = MetricsSystem.factory) {
        self.inner = inner
        self.recorder = OperationRecorder(subsystem: "consensus", factory: factory)
        self.readBytes = Counter(label: "consensus_read_bytes_total", dimensions: [], factory: factory)
        self.writtenBytes = Counter(label: "consensus_written_bytes_total", dimensions: [], factory: factory)
    }

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        let v = try await recorder.measure("head") { () async throws(StorageError) in try await inner.head(key) }
        readBytes.increment(by: v?.data.count ?? 0)
        return v
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError)
        -> CaSResult
    {
        let result = try await recorder.measure("cas", classify: { (r: CaSResult) in
            if case .expectationMismatch = r { return "mismatch" }
            return "ok"
        }) { () async throws(StorageError) in
            try await inner.compareAndSet(key, expected: expected, new: new)
        }
        if result == .committed { writtenBytes.increment(by: new.data.count) }
        return result
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        let vs = try await recorder.measure("scan") { () async throws(StorageError) in
            try await inner.scan(key, from: from, limit: limit)
        }
        readBytes.increment(by: vs.reduce(0) { $0 + $1.data.count })
        return vs
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        try await recorder.measure("truncate") { () async throws(StorageError) in
            try await inner.truncate(key, seqno: seqno)
        }
    }

    public func listKeys() async throws(StorageError) -> [String] {
        try await recorder.measure("list_keys") { () async throws(StorageError) in try await inner.listKeys() }
    }
}

/// Shared bookkeeping of the metrics decorators.
struct OperationRecorder: Sendable {
    let subsystem: String
    let factory: any MetricsFactory

    func measure<T: Sendable>(
        _ op: String, classify: (T) -> String = { _ in "ok" },
        _ body: () async throws(StorageError) -> T
    ) async throws(StorageError) -> T {
        let start = ContinuousClock.now
        let outcome: String
        defer {
            let elapsed = ContinuousClock.now - start
            Counter(label: "\(subsystem)_operations_total", dimensions: [("op", op), ("outcome", outcome)], factory: factory)
                .increment()
            Metrics.Timer(label: "\(subsystem)_operation_duration_seconds", dimensions: [("op", op)], factory: factory)
                .recordNanoseconds(LogConsensus.nanoseconds(elapsed))
        }
        do throws(StorageError) {
            let value = try await body()
            outcome = classify(value)
            return value
        } catch {
            outcome = error.isDeterminate ? "error_determinate" : "error_indeterminate"
            throw error
        }
    }
}
