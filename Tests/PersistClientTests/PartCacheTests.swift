import PersistCodec
import PersistCore
import PersistLocation
import Synchronization
import Testing

@testable import PersistClient

/// The memory of parts a client wrote or fetched: which objects it keeps, how it is
/// bounded, that a client reads its own recent parts and parts it read before without
/// asking the blob store, and that a delete racing a fetch leaves nothing behind.
@Suite struct PartCacheTests {
    static let shard = "s00000000-0000-4000-8000-000000000001"

    @Test func keepsOnlySmallPartsAndForgetsTheOldestBeyondCapacity() {
        var c = PartCache(capacityBytes: 100, maxPartBytes: 40)
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
        var c = PartCache(capacityBytes: 1_000, maxPartBytes: 100)
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
        var c = PartCache(capacityBytes: 1 << 20, maxPartBytes: 100)
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

        // Another client over the same store has no memory of them: it reads the blob,
        // once; reading again comes from what it fetched.
        let other = PersistClient(blob: blob, consensus: client.consensus, config: config)
        let otherReader = try await other.openLeasedReader(shard: shard, purpose: "r2")
        #expect(try await otherReader.snapshotAndFetch(asOf: 4).count == 5)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 5)
        #expect(try await otherReader.snapshotAndFetch(asOf: 4).count == 5)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 5, "the second read fetched no part")

        // With the memory turned off, the client reads the blob too.
        config.partCacheBytes = 0
        let plain = PersistClient(blob: blob, consensus: client.consensus, config: config)
        let plainWriter = try await plain.openWriter(shard: shard, purpose: "w2")
        _ = try await plainWriter.compareAndAppend([row("k5", 5)], expectedUpper: Antichain(5), newUpper: Antichain(6)).get()
        let plainReader = try await plain.openLeasedReader(shard: shard, purpose: "r3")
        #expect(try await plainReader.snapshotAndFetch(asOf: 5).count == 6)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 11)
        #expect(try await plainReader.snapshotAndFetch(asOf: 5).count == 6)
        #expect(blob.gets.withLock { $0["p"] ?? 0 } == 17)
    }

    @Test func aFetchOvertakenByADeleteIsNotRemembered() {
        let key = "\(Self.shard)/p/w/x"
        var c = PartCache(capacityBytes: 1 << 20, maxPartBytes: 1 << 10)
        c.fetchBegan(key)
        c.forget(key)  // deleted while the GET was under way
        c.fetchEnded(key, found: [1, 2, 3])
        #expect(c.get(key) == nil)
        #expect(c.fetchesInFlight == 0)

        // Two overlapping fetches: the delete between them spoils both answers; a later
        // fetch, begun after the delete, is remembered again (keys are never reused, so
        // only a fetch racing the delete could see the old bytes).
        c.fetchBegan(key)
        c.fetchBegan(key)
        c.forget(key)
        c.fetchEnded(key, found: [1])
        c.fetchEnded(key, found: [1])
        #expect(c.get(key) == nil)
        c.fetchBegan(key)
        c.fetchEnded(key, found: [9])
        #expect(c.get(key) == [9])

        // A fetch begun while a delete is under way is not remembered either.
        c.deleteBegan(key)
        c.fetchBegan(key)
        c.fetchEnded(key, found: [9])
        c.deleteEnded(key)
        #expect(c.get(key) == nil && c.deletesInFlight == 0)

        // A miss is not remembered; other keys are unaffected by the delete.
        let other = "\(Self.shard)/p/w/y"
        c.fetchBegan(other)
        c.fetchEnded(other, found: nil)
        #expect(c.get(other) == nil && c.fetchesInFlight == 0)
    }

    /// A blob whose GETs (or DELETEs) wait until released, so a delete and a fetch can
    /// overlap either way.
    final class GatedBlob: Blob {
        let inner = MemoryBlob()
        let gate = AsyncGate()
        let gateDeletes: Bool
        init(gateDeletes: Bool = false) { self.gateDeletes = gateDeletes }
        func get(_ key: String) async throws(StorageError) -> [UInt8]? {
            let value = try await inner.get(key)
            if !gateDeletes { await gate.wait() }
            return value
        }
        func set(_ key: String, _ value: [UInt8]) async throws(StorageError) { try await inner.set(key, value) }
        func delete(_ key: String) async throws(StorageError) -> Int? {
            if gateDeletes { await gate.wait() }
            return try await inner.delete(key)
        }
        func list(prefix: String) async throws(StorageError) -> [BlobMetadata] { try await inner.list(prefix: prefix) }
    }

    @Test func aDeleteDuringAFetchLeavesNothingCached() async throws {
        let gated = GatedBlob()
        let key = "\(Self.shard)/p/w/x"
        try await gated.inner.set(key, [7, 7])
        let blob = PartCacheBlob(inner: gated, capacityBytes: 1 << 20, maxPartBytes: 1 << 10)
        let fetch = Task { try await blob.get(key) }
        await gated.gate.waitForWaiter()
        _ = try await blob.delete(key)
        gated.gate.open()
        #expect(try await fetch.value == [7, 7], "the fetch itself answers what it read")
        #expect(blob.cachedCount == 0)
        #expect(try await blob.get(key) == nil, "gone once deleted")
    }

    @Test func aFetchDuringADeleteLeavesNothingCached() async throws {
        let gated = GatedBlob(gateDeletes: true)
        let key = "\(Self.shard)/p/w/x"
        try await gated.inner.set(key, [7, 7])
        let blob = PartCacheBlob(inner: gated, capacityBytes: 1 << 20, maxPartBytes: 1 << 10)
        let delete = Task { try await blob.delete(key) }
        await gated.gate.waitForWaiter()
        // The delete has begun but the store still has the object: the fetch finds it,
        // and must not keep it.
        #expect(try await blob.get(key) == [7, 7])
        gated.gate.open()
        _ = try await delete.value
        #expect(blob.cachedCount == 0)
        #expect(try await blob.get(key) == nil, "gone once deleted")
    }

    @Test func aDeletedPartIsNotServedFromMemory() async throws {
        let inner = MemoryBlob()
        let blob = PartCacheBlob(inner: inner, capacityBytes: 1 << 20, maxPartBytes: 1 << 10)
        let key = "\(Self.shard)/p/w/x"
        try await blob.set(key, [1, 2, 3])
        #expect(blob.cachedCount == 1)
        #expect(try await inner.get(key) == [1, 2, 3], "stored in the blob before it is remembered")
        _ = try await blob.delete(key)
        #expect(try await blob.get(key) == nil)
    }
}

/// A one-shot gate: `wait` suspends until `open`; `waitForWaiter` returns once someone
/// is waiting (or the gate is open).
final class AsyncGate: Sendable {
    private struct State {
        var opened = false
        var waiters: [CheckedContinuation<Void, Never>] = []
        var watchers: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let (passNow, watchers) = state.withLock { s -> (Bool, [CheckedContinuation<Void, Never>]) in
                if s.opened { return (true, []) }
                s.waiters.append(c)
                defer { s.watchers = [] }
                return (false, s.watchers)
            }
            if passNow { c.resume() }
            for w in watchers { w.resume() }
        }
    }

    func waitForWaiter() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let now = state.withLock { s -> Bool in
                if s.opened || !s.waiters.isEmpty { return true }
                s.watchers.append(c)
                return false
            }
            if now { c.resume() }
        }
    }

    func open() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.opened = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }
}
