import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import PersistClient

/// The memory of parts a client wrote itself: which objects it keeps, how it is bounded,
/// and that a client reads its own recent parts back without asking the blob store.
@Suite struct OwnPartsCacheTests {
    static let shard = "s00000000-0000-4000-8000-000000000001"

    @Test func keepsOnlySmallPartsAndForgetsTheOldestBeyondCapacity() {
        var c = OwnPartsCache(capacityBytes: 100, maxPartBytes: 40)
        c.stored("\(Self.shard)/p/w1/a", Array(repeating: 1, count: 40))
        c.stored("\(Self.shard)/p/w1/big", Array(repeating: 2, count: 41))
        c.stored("\(Self.shard)/r/rollup", Array(repeating: 3, count: 10))
        #expect(c.get("\(Self.shard)/p/w1/a")?.count == 40)
        #expect(c.get("\(Self.shard)/p/w1/big") == nil, "above the per-part limit")
        #expect(c.get("\(Self.shard)/r/rollup") == nil, "not a part")

        c.stored("\(Self.shard)/p/w1/b", Array(repeating: 4, count: 40))
        c.stored("\(Self.shard)/p/w1/c", Array(repeating: 5, count: 30))
        #expect(c.totalBytes == 70, "the first went to make room")
        #expect(c.get("\(Self.shard)/p/w1/a") == nil)
        #expect(c.get("\(Self.shard)/p/w1/b") == Array(repeating: 4, count: 40))
        c.forget("\(Self.shard)/p/w1/b")
        #expect(c.get("\(Self.shard)/p/w1/b") == nil && c.totalBytes == 30)
    }

    @Test func manyInsertionsStayWithinCapacity() {
        var c = OwnPartsCache(capacityBytes: 1_000, maxPartBytes: 100)
        var rng = SeededGenerator(seed: 3)
        for i in 0..<20_000 {
            c.stored("\(Self.shard)/p/w/\(i)", Array(repeating: 0, count: Int.random(in: 1...100, using: &rng)))
            if i % 7 == 0 { c.forget("\(Self.shard)/p/w/\(i - 3)") }
            #expect(c.totalBytes <= 1_000)
        }
        #expect(c.get("\(Self.shard)/p/w/19999") != nil, "the newest is kept")
    }

    @Test func partsForgottenAsFastAsWrittenDoNotGrowTheQueue() {
        // A coordinator's GC deletes parts about as fast as it writes them, so the cache
        // never fills up and never evicts: forgotten keys must not pile up regardless.
        var c = OwnPartsCache(capacityBytes: 1 << 20, maxPartBytes: 100)
        for i in 0..<50_000 {
            c.stored("\(Self.shard)/p/w/\(i)", [1, 2, 3])
            if i >= 10 { c.forget("\(Self.shard)/p/w/\(i - 10)") }
        }
        #expect(c.count == 10)
        #expect(c.queuedKeys <= 2 * c.count + 1024 + 1, "queue holds \(c.queuedKeys) keys for \(c.count) entries")
        #expect(c.get("\(Self.shard)/p/w/49999") == [1, 2, 3])
    }

    @Test func aListenerReadsTheClientsOwnPartsWithoutBlobGets() async throws {
        let blob = CountingBlob(MemoryBlob())
        var config = testConfig()
        config.compactionEnabled = false
        let client = PersistClient(blob: blob, consensus: MemoryConsensus(), config: config)
        let shard = ShardID.random()
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        let reader = try await client.openLeasedReader(shard: shard, purpose: "r")
        for t in 0..<5 as Range<Timestamp> {
            _ = try await writer.compareAndAppend([row("k\(t)", t)], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
        }
        let rows = try await reader.snapshotAndFetch(asOf: 4)
        #expect(rows.count == 5)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 0, "every part came from memory")

        // Another client over the same store has no memory of them: it reads the blob.
        let other = PersistClient(blob: blob, consensus: client.consensus, config: config)
        let otherReader = try await other.openLeasedReader(shard: shard, purpose: "r2")
        #expect(try await otherReader.snapshotAndFetch(asOf: 4).count == 5)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 5)

        // With the memory turned off, the client reads the blob too.
        config.ownPartsCacheBytes = 0
        let plain = PersistClient(blob: blob, consensus: client.consensus, config: config)
        let plainWriter = try await plain.openWriter(shard: shard, purpose: "w2")
        _ = try await plainWriter.compareAndAppend([row("k5", 5)], expectedUpper: Antichain(5), newUpper: Antichain(6)).get()
        let plainReader = try await plain.openLeasedReader(shard: shard, purpose: "r3")
        #expect(try await plainReader.snapshotAndFetch(asOf: 5).count == 6)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 11)
    }

    @Test func aDeletedPartIsNotServedFromMemory() async throws {
        let inner = MemoryBlob()
        let blob = OwnPartsBlob(inner: inner, capacityBytes: 1 << 20, maxPartBytes: 1 << 10)
        let key = "\(Self.shard)/p/w/x"
        try await blob.set(key, [1, 2, 3])
        #expect(blob.cachedCount == 1)
        #expect(try await inner.get(key) == [1, 2, 3], "stored in the blob before it is remembered")
        _ = try await blob.delete(key)
        #expect(try await blob.get(key) == nil)
    }
}
