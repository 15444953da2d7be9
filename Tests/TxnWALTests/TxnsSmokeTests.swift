import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import TxnWAL

func smokeConfig() -> PersistConfig {
    var c = PersistConfig()
    c.pollInterval = .milliseconds(1)
    c.initialBackoff = .milliseconds(1)
    c.maxBackoff = .milliseconds(20)
    return c
}

@Suite struct TxnsSmokeTests {
    @Test func commitApplyReadAndSubscribe() async throws {
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: smokeConfig())
        let txnsID = ShardID.random()
        let txns = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0)
        let d0 = ShardID.random()
        let d1 = ShardID.random()
        _ = try await txns.register(at: 1, [try await client.openWriter(shard: d0, purpose: "d0")]).get()
        _ = try await txns.register(at: 2, [try await client.openWriter(shard: d1, purpose: "d1")]).get()

        var txn = txns.begin()
        txn.write(d0, key: Array("0".utf8), diff: 1)
        txn.write(d1, key: Array("1".utf8), diff: -1)
        let apply = try await txn.commitAt(txns, 3).get()
        #expect(!apply.isEmpty)
        let tidy = try await apply.apply(txns)
        #expect(tidy.retractions.count == 2)

        var next = txns.begin()
        next.write(d0, key: Array("2".utf8), diff: 1)
        next.tidy(tidy)
        guard case .failure(let closed) = try await next.commitAt(txns, 3) else {
            Issue.record("time 3 is closed")
            return
        }
        #expect(closed.nextUsable == 4)
        let apply4 = try await next.commitAt(txns, 4).get()
        _ = try await apply4.apply(txns)
        #expect(txns.readCache.state.unappliedBatchCount == 1, "the tidy retracted the first commit's batches")

        let reader = try await client.openLeasedReader(shard: d0, purpose: "r")
        try await txns.readCache.updateGt(4)
        let plan = txns.readCache.state.dataSnapshot(d0, asOf: 4)
        let rows = try await DataSnapshot(plan).snapshotAndFetch(client: client, reader: reader)
        #expect(rows.map { String(decoding: $0.key, as: UTF8.self) } == ["0", "2"])

        let sub = try await DataSubscribe.open(client: client, txnsID: txnsID, dataID: d1, asOf: 4)
        try await sub.stepPast(4)
        #expect(sub.output.map { String(decoding: $0.key, as: UTF8.self) } == ["1"])
        #expect(sub.output.first?.diff == -1)
    }
}

@Suite struct DataSubscribeSequenceTests {
    @Test func aSubscriptionIsAnAsyncSequenceThatEndsAtUntil() async throws {
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: smokeConfig())
        let txnsID = ShardID.random()
        let txns = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0)
        let d = ShardID.random()
        _ = try await txns.register(at: 1, [try await client.openWriter(shard: d, purpose: "d")]).get()
        for ts in 2...4 as ClosedRange<Timestamp> {
            var txn = txns.begin()
            txn.write(d, key: Array("k\(ts)".utf8), diff: 1)
            _ = try await txn.commitAt(txns, ts).get().apply(txns)
        }
        let sub = try await DataSubscribe.open(client: client, txnsID: txnsID, dataID: d, asOf: 2, until: 4)
        var keys: [String] = []
        var last: Timestamp = 0
        for try await event in sub {
            switch event {
            case .updates(let u): keys += u.map { String(decoding: $0.key, as: UTF8.self) }
            case .progress(let p): last = p
            }
        }
        #expect(keys.sorted() == ["k2", "k3"], "the snapshot at 2 and the update at 3; nothing at or after until")
        #expect(last == .max, "progress closes at until")
    }
}

@Suite struct TxnsCacheRegistrationUpdatesTests {
    @Test func theCacheHandsOverEveryRegistrationUpdateOnce() async throws {
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: smokeConfig())
        let txnsID = ShardID.random()
        let d0 = ShardID.random()
        let d1 = ShardID.random()
        do {
            // History written before the keeping handle opens.
            let first = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0)
            _ = try await first.register(at: 1, [try await client.openWriter(shard: d0, purpose: "d0")]).get()
            try await first.readCache.expire()
        }
        let txns = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0, keepRegistrationUpdates: true)
        try await txns.readCache.updateGt(1)
        let initial = txns.readCache.takeRegistrationUpdates()
        #expect(initial.map(\.diff) == [1])
        #expect(initial.first?.entry == .register(shard: d0, ts: 1))
        #expect(txns.readCache.takeRegistrationUpdates().isEmpty, "handed over once")

        _ = try await txns.register(at: 2, [try await client.openWriter(shard: d1, purpose: "d1")]).get()
        var txn = txns.begin()
        txn.write(d1, key: Array("k".utf8), diff: 1)
        _ = try await txn.commitAt(txns, 3).get()
        _ = try await txns.forget(at: 4, [d0]).get()
        try await txns.readCache.updateGt(4)
        let later = txns.readCache.takeRegistrationUpdates()
        #expect(later.map(\.entry) == [.register(shard: d1, ts: 2), .register(shard: d0, ts: 4)], "data appends are left out")
        #expect(later.map(\.diff) == [1, -1])

        // A cache opened without keeping them hands over nothing.
        let plain = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0)
        #expect(plain.readCache.takeRegistrationUpdates().isEmpty)
    }
}
