import Metrics
import MetricsTestKit
import PersistCore
import PersistLocation
import Testing

@Suite struct MetricsDecoratorTests {
    @Test func consensusOperationsAreCountedByOutcome() async throws {
        let metrics = TestMetrics()
        let c = MetricsConsensus(MemoryConsensus(), factory: metrics)
        _ = try await c.compareAndSet("k", expected: nil, new: VersionedData(seqno: SeqNo(1), data: [1, 2, 3]))
        _ = try await c.compareAndSet("k", expected: nil, new: VersionedData(seqno: SeqNo(1), data: [1]))
        _ = try? await c.truncate("missing", seqno: SeqNo(1))
        _ = try await c.head("k")
        let ok = try metrics.expectCounter("consensus_operations_total", [("op", "cas"), ("outcome", "ok")])
        let mismatch = try metrics.expectCounter("consensus_operations_total", [("op", "cas"), ("outcome", "mismatch")])
        let failed = try metrics.expectCounter("consensus_operations_total", [("op", "truncate"), ("outcome", "error_determinate")])
        #expect(ok.totalValue == 1)
        #expect(mismatch.totalValue == 1)
        #expect(failed.totalValue == 1)
        #expect(try metrics.expectCounter("consensus_written_bytes_total").totalValue == 3)
        #expect(try metrics.expectCounter("consensus_read_bytes_total").totalValue == 3)
        #expect(try metrics.expectTimer("consensus_operation_duration_seconds", [("op", "cas")]).values.count == 2)
    }

    @Test func blobBytesAreCounted() async throws {
        let metrics = TestMetrics()
        let b = MetricsBlob(MemoryBlob(), factory: metrics)
        try await b.set("a", [1, 2, 3, 4])
        _ = try await b.get("a")
        _ = try await b.get("missing")
        #expect(try metrics.expectCounter("blob_written_bytes_total").totalValue == 4)
        #expect(try metrics.expectCounter("blob_read_bytes_total").totalValue == 4)
        #expect(try metrics.expectCounter("blob_operations_total", [("op", "get"), ("outcome", "ok")]).totalValue == 2)
    }
}
