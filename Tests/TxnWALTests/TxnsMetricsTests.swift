import MetricsTestKit
import PersistClient
import PersistCore
import PersistLocation
import Testing

@testable import TxnWAL

@Suite struct TxnsMetricsTests {
    @Test func operationsRetriesAndCommittedBatchesAreCounted() async throws {
        let metrics = TestMetrics()
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: smokeConfig())
        let txnsID = ShardID.random()
        let txns = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0, metrics: TxnsMetrics(factory: metrics))
        let d = ShardID.random()
        _ = try await txns.register(at: 1, [try await client.openWriter(shard: d, purpose: "d")]).get()
        // A second handle moves the txns upper, so the first one's next commit races.
        let other = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0)
        _ = try await other.register(at: 5, []).get()
        var txn = txns.begin()
        txn.write(d, key: Array("k".utf8), diff: 1)
        guard case .failure = try await txn.commitAt(txns, 3) else {
            Issue.record("time 3 is closed")
            return
        }
        _ = try await txn.commitAt(txns, 6).get()
        _ = try await txns.applyLE(6)

        let ok = try metrics.expectCounter("txn_wal_operations_total", [("op", "commit"), ("outcome", "ok")])
        let closed = try metrics.expectCounter("txn_wal_operations_total", [("op", "commit"), ("outcome", "timestamp_closed")])
        #expect(ok.totalValue == 1)
        #expect(closed.totalValue == 1)
        #expect(try metrics.expectCounter("txn_wal_operations_total", [("op", "register"), ("outcome", "ok")]).totalValue == 1)
        #expect(try metrics.expectCounter("txn_wal_committed_batches_total").totalValue == 1)
        #expect(try metrics.expectCounter("txn_wal_committed_bytes_total").totalValue > 0)
        #expect(try metrics.expectTimer("txn_wal_operation_duration_seconds", [("op", "apply_le")]).values.count >= 2)
        #expect(try metrics.expectGauge("txn_wal_unapplied_batches").lastValue == 1, "applied but not yet tidied")
    }
}
