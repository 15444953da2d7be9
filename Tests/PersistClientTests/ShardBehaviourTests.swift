import PersistCodec
import PersistCore
import PersistLocation
import Synchronization
import Testing

@testable import PersistClient

/// The behaviour checks of issue 3 §6, end to end through the handles.
@Suite struct ShardBehaviourTests {
    /// The fold of acknowledged updates as of `asOf`: times advanced to `asOf`, consolidated.
    static func fold(_ acked: [Update], asOf: Timestamp) -> [Update] {
        var out = acked.filter { $0.time <= asOf }.map { u in
            Update(key: u.key, value: u.value, time: asOf, diff: u.diff)
        }
        Consolidation.consolidate(&out)
        return out
    }

    static func randomUpdates(_ rng: inout SeededGenerator, at t: Timestamp, count: Int) -> [Update] {
        (0..<count).map { _ in
            Update(
                key: Array("k\(Int.random(in: 0..<20, using: &rng))".utf8), value: Array("v\(Int.random(in: 0..<3, using: &rng))".utf8),
                time: t, diff: Int64.random(in: -1...2, using: &rng))
        }
    }

    @Test func racingWritersEachUpperWonOnceAndEveryAckReadBack() async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        let target: Timestamp = 120
        let acked = Shared<[Timestamp: String]>([:])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<6 {
                group.addTask {
                    // Separate clients: no shared cached state, real CaS races.
                    let client = PersistClient(blob: blob, consensus: consensus, config: testConfig())
                    let writer = try await client.openWriter(shard: shard, purpose: "racer \(w)")
                    var n = 0
                    while true {
                        let upper = try await writer.fetchRecentUpper()
                        guard let t = upper.element, t < target else { return }
                        let key = "w\(w)-\(n)"
                        n += 1
                        switch try await writer.compareAndAppend([row(key, t)], expectedUpper: upper, newUpper: Antichain(t + 1)) {
                        case .success:
                            let fresh = acked.value.withLock { $0.updateValue(key, forKey: t) == nil }
                            #expect(fresh, "upper \(t) won twice")
                        case .failure(let m):
                            #expect(m.current != upper)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let won = acked.value.withLock { $0 }
        #expect(won.count == Int(target), "every upper won exactly once")
        let reader = try await PersistClient(blob: blob, consensus: consensus, config: testConfig())
            .openLeasedReader(shard: shard, purpose: "check")
        let all = try await reader.snapshotAndFetch(asOf: target - 1)
        #expect(keys(all).sorted() == won.values.sorted(), "every acknowledged update read back exactly once")
    }

    @Test(arguments: [11, 12] as [UInt64])
    func snapshotIsTheFoldOfAcknowledgedWritesAtEveryAsOf(seed: UInt64) async throws {
        var rng = SeededGenerator(seed: seed)
        var config = testConfig()
        config.compactionMinInputs = 4
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: config)
        let shard = ShardID.random()
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        let reader = try await client.openLeasedReader(shard: shard, purpose: "r")
        var acked: [Update] = []
        var upper: Timestamp = 0
        for _ in 0..<80 {
            let width = Timestamp.random(in: 1...3, using: &rng)
            var batch: [Update] = []
            if Bool.random(using: &rng) {
                for t in upper..<upper + width { batch += Self.randomUpdates(&rng, at: t, count: Int.random(in: 1...4, using: &rng)) }
            }
            _ = try await writer.compareAndAppend(batch, expectedUpper: Antichain(upper), newUpper: Antichain(upper + width)).get()
            acked += batch
            upper += width
        }
        await client.waitForMaintenance()
        for asOf in 0..<upper {
            #expect(try await reader.snapshotAndFetch(asOf: asOf) == Self.fold(acked, asOf: asOf), "as of \(asOf)")
        }
        // Move the since: compaction may now advance times, and reads at or beyond the
        // since must not notice.
        let since: Timestamp = upper / 2
        try await reader.downgradeSince(Antichain(since))
        for _ in 0..<40 {
            let batch = Self.randomUpdates(&rng, at: upper, count: 3)
            _ = try await writer.compareAndAppend(batch, expectedUpper: Antichain(upper), newUpper: Antichain(upper + 1)).get()
            acked += batch
            upper += 1
        }
        await client.waitForMaintenance()
        #expect(try await client.frontiers(of: shard)?.since == Antichain(since))
        for asOf in since..<upper {
            #expect(try await reader.snapshotAndFetch(asOf: asOf) == Self.fold(acked, asOf: asOf), "as of \(asOf) after since \(since)")
        }
        await #expect(throws: ReadError.self) { try await reader.snapshotAndFetch(asOf: since - 1) }
    }

    @Test func listenYieldsExactlyTheDifferenceBetweenSnapshots() async throws {
        var rng = SeededGenerator(seed: 5)
        var config = testConfig()
        config.compactionMinInputs = 3
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: config)
        let shard = ShardID.random()
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        let reader = try await client.openLeasedReader(shard: shard, purpose: "r")
        var acked: [Update] = []
        for t in 0..<10 as Range<Timestamp> {
            let batch = Self.randomUpdates(&rng, at: t, count: 3)
            _ = try await writer.compareAndAppend(batch, expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
            acked += batch
        }
        let asOf: Timestamp = 4
        let (snapshot, listen) = try await reader.subscribe(asOf: asOf)
        #expect(snapshot == Self.fold(acked, asOf: asOf))
        // More writes while listening, including across compactions. They are drawn up
        // front so the expected contents at every progress step are known.
        var extraRNG = SeededGenerator(seed: 6)
        let extra: [[Update]] = (10..<30 as Range<Timestamp>).map { Self.randomUpdates(&extraRNG, at: $0, count: 2) }
        let all = acked + extra.flatMap { $0 }
        let more = Task {
            for (i, batch) in extra.enumerated() {
                let t = Timestamp(10 + i)
                _ = try await writer.compareAndAppend(batch, expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
            }
        }
        var seen: [Update] = []
        var progress: Timestamp = asOf
        var it = listen.makeAsyncIterator()
        while progress < 30 {
            switch try await it.next() {
            case .updates(let u)?:
                for x in u {
                    #expect(x.time > asOf && x.time >= progress, "update at \(x.time) before progress \(progress)")
                }
                seen += u
            case .progress(let p)?:
                let next = try #require(p.element)
                #expect(next > progress, "progress moves forward")
                progress = next
                // At every step, snapshot(asOf) plus what was listened to is the
                // snapshot as of just before the new progress.
                var combined = snapshot + seen
                for i in combined.indices { combined[i].time = progress - 1 }
                Consolidation.consolidate(&combined)
                #expect(combined == Self.fold(all, asOf: progress - 1), "at progress \(progress)")
            case nil:
                Issue.record("listen ended early")
                return
            }
        }
        try await more.value
        var listened = seen
        Consolidation.consolidate(&listened)
        var expected = all.filter { $0.time > asOf }
        Consolidation.consolidate(&expected)
        #expect(listened == expected, "listen yields exactly the updates after as_of, each once")
    }

    @Test func openingReadsOneRollupAndAtMost128Diffs() async throws {
        let consensus = CountingConsensus(MemoryConsensus())
        let blob = CountingBlob(MemoryBlob())
        let shard = ShardID.random()
        var config = testConfig()
        config.compactionEnabled = false
        let client = PersistClient(blob: blob, consensus: consensus, config: config)
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        // 10,000 versions: empty appends, the cheapest transition.
        for t in 0..<10_000 as Range<Timestamp> {
            _ = try await writer.compareAndAppend([], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
        }
        await client.waitForMaintenance()
        let head = try #require(try await consensus.head(shard.description))
        #expect(head.seqno.rawValue > 10_000)
        consensus.reset()
        blob.gets.withLock { $0 = [:] }
        let fresh = PersistClient(blob: blob, consensus: consensus, config: config)
        let reader = try await fresh.openLeasedReader(shard: shard, purpose: "r")
        _ = reader
        let rollupGets = blob.gets.withLock { $0["r"] ?? 0 }
        let counts = consensus.counts.withLock { $0 }
        #expect(rollupGets == 1, "one rollup read")
        // The head, then the diffs after the rollup (the registration CaS adds no reads).
        #expect(counts.versionsRead <= 1 + 128, "read \(counts.versionsRead) versions")
        #expect(counts.heads + counts.scans <= 3)
    }

    @Test func tenThousandAppendsStayLogarithmicAndGCLeavesNoGarbage() async throws {
        let blob = MemoryBlob()
        let shard = ShardID.random()
        var config = testConfig()
        config.compactionMinInputs = 8
        let client = PersistClient(blob: blob, consensus: MemoryConsensus(), config: config)
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        let n = 10_000
        for t in 0..<Timestamp(n) {
            _ = try await writer.compareAndAppend([row("k\(t % 100)", t)], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
        }
        await client.waitForMaintenance()
        let state = try await client.machine(for: shard, keyCodec: "bytes", valueCodec: "bytes").refresh()
        let bound = 8 * (Int.bitWidth - n.leadingZeroBitCount + 2)
        #expect(state.trace.batches.count <= bound, "\(state.trace.batches.count) batches for \(n) appends")
        try await client.maintain(shard: shard)
        let after = try await client.machine(for: shard, keyCodec: "bytes", valueCodec: "bytes").refresh()
        let referenced = Set(after.trace.batches.flatMap { $0.parts.map { "\(shard)/\($0.key)" } })
        let stored = Set(try await blob.list(prefix: "\(shard)/p/").map(\.key))
        #expect(stored == referenced, "\(stored.subtracting(referenced).count) unreferenced parts remain")
        let rollups = Set(try await blob.list(prefix: "\(shard)/r/").map(\.key))
        #expect(rollups == Set(after.rollups.values.map { "\(shard)/\($0.key)" }), "only live rollups remain")
        let reader = try await client.openLeasedReader(shard: shard, purpose: "check")
        let all = try await reader.snapshotAndFetch(asOf: Timestamp(n - 1))
        #expect(all.reduce(0) { $0 + $1.diff } == Int64(n))
    }

    @Test func aReadersSeqnoHoldsBackGC() async throws {
        let blob = MemoryBlob()
        let shard = ShardID.random()
        var config = testConfig()
        config.compactionMinInputs = 2
        config.rollupThreshold = 8
        let client = PersistClient(blob: blob, consensus: MemoryConsensus(), config: config)
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        for t in 0..<4 as Range<Timestamp> {
            _ = try await writer.compareAndAppend([row("a\(t)", t)], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
        }
        let reader = try await client.openLeasedReader(shard: shard, purpose: "holder")
        let parts = try await reader.snapshot(asOf: 3)
        #expect(!parts.isEmpty)
        // Lots of appends, compactions and GC while the reader holds its parts.
        for t in 4..<200 as Range<Timestamp> {
            _ = try await writer.compareAndAppend([row("b\(t)", t)], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
        }
        await client.waitForMaintenance()
        try await client.maintain(shard: shard)
        for p in parts {
            #expect(try await blob.get("\(shard)/\(p.part.key)") != nil, "a part the reader holds was deleted")
            _ = try await reader.fetch(p)
        }
        // Once released, the same parts become garbage.
        reader.release(parts[0].seqno)
        try await reader.downgradeSince(Antichain(150))
        _ = try await writer.compareAndAppend([], expectedUpper: Antichain(200), newUpper: Antichain(201)).get()
        await client.waitForMaintenance()
        try await client.maintain(shard: shard)
        var gone = 0
        for p in parts where try await blob.get("\(shard)/\(p.part.key)") == nil { gone += 1 }
        #expect(gone > 0, "released parts are collected")
    }

    @Test func leakedBatchesAreCollected() async throws {
        let blob = MemoryBlob()
        let shard = ShardID.random()
        let clock = ManualPersistClock()
        let client = PersistClient(blob: blob, consensus: MemoryConsensus(), config: testConfig(), clock: clock)
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        _ = try await writer.compareAndAppend([row("kept", 0)], expectedUpper: .minimum, newUpper: Antichain(1)).get()
        // A writer that crashed after uploading: the batch is never linked.
        let orphan = try await writer.batch([row("lost", 1)], lower: Antichain(1), upper: Antichain(2))
        let orphanKeys = try #require(orphan.hollow).parts.map { "\(shard)/\($0.key)" }
        #expect(try await client.collectLeakedBlobs(shard: shard, graceMilliseconds: 60_000).isEmpty, "first sighting only")
        clock.advance(byMilliseconds: 60_001)
        let deleted = try await client.collectLeakedBlobs(shard: shard, graceMilliseconds: 60_000)
        #expect(Set(deleted) == Set(orphanKeys))
        let reader = try await client.openLeasedReader(shard: shard, purpose: "r")
        #expect(keys(try await reader.snapshotAndFetch(asOf: 0)) == ["kept"], "linked data untouched")
    }
}


/// A mutex that can be captured by concurrent tasks.
final class Shared<T: Sendable>: Sendable {
    let value: Mutex<T>
    init(_ v: T) { value = Mutex(v) }
}
