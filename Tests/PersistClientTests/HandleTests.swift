import Foundation
import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import PersistClient

/// Write, read and since handles: the contracts of spec/persist.md §4-§5 one by one.
@Suite struct HandleTests {
    func client(clock: ManualPersistClock = ManualPersistClock(), blob: any Blob = MemoryBlob(), consensus: any Consensus = MemoryConsensus())
        -> PersistClient
    {
        PersistClient(blob: blob, consensus: consensus, config: testConfig(), clock: clock)
    }

    @Test func emptyAppendsOnlyMoveTheUpperAndWriteNoBlobs() async throws {
        let blob = MemoryBlob()
        let c = client(blob: blob)
        let shard = ShardID.random()
        let w = try await c.openWriter(shard: shard, purpose: "w")
        for t in 0..<50 as Range<Timestamp> {
            _ = try await w.compareAndAppend([], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
        }
        #expect(w.upper == Antichain(50))
        #expect(try await w.fetchRecentUpper() == Antichain(50))
        #expect(try await blob.list(prefix: "\(shard)/p/").isEmpty, "empty appends write no parts")
        let state = try await c.machine(for: shard, keyCodec: "bytes", valueCodec: "bytes").refresh()
        #expect(state.trace.batches.count == 1, "consecutive empty batches are fused")
        // An append at the same upper is a no-op interval but still fine.
        _ = try await w.compareAndAppend([], expectedUpper: Antichain(50), newUpper: Antichain(50)).get()
        #expect(w.upper == Antichain(50))
    }

    @Test func closingAShardForbidsFurtherWritesButKeepsReads() async throws {
        let c = client()
        let shard = ShardID.random()
        let w = try await c.openWriter(shard: shard, purpose: "w")
        _ = try await w.compareAndAppend([row("x", 0)], expectedUpper: .minimum, newUpper: Antichain(1)).get()
        _ = try await w.compareAndAppend([row("y", 5)], expectedUpper: Antichain(1), newUpper: .empty).get()
        #expect(try await w.fetchRecentUpper() == .empty)
        let late = try await w.compareAndAppend([row("z", 7)], expectedUpper: Antichain(1), newUpper: Antichain(8))
        guard case .failure(let m) = late else {
            Issue.record("a closed shard accepted a write")
            return
        }
        #expect(m.current == .empty)
        let r = try await c.openLeasedReader(shard: shard, purpose: "r")
        #expect(keys(try await r.snapshotAndFetch(asOf: 1_000_000)) == ["x", "y"], "reads at any time beyond since work")
    }

    @Test func updatesOutsideTheBatchBoundsAreRejected() async throws {
        let c = client()
        let w = try await c.openWriter(shard: ShardID.random(), purpose: "w")
        await #expect(throws: InvalidUsage.self) {
            _ = try await w.compareAndAppend([row("late", 5)], expectedUpper: .minimum, newUpper: Antichain(5))
        }
        await #expect(throws: InvalidUsage.self) {
            _ = try await w.compareAndAppend([row("early", 0)], expectedUpper: Antichain(1), newUpper: Antichain(3))
        }
        await #expect(throws: InvalidUsage.self) {
            _ = try await w.compareAndAppend([], expectedUpper: Antichain(3), newUpper: Antichain(1))
        }
        #expect(try await w.fetchRecentUpper() == .minimum, "nothing was written")
    }

    @Test func codecsAreCheckedWhenOpening() async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        _ = try await client(blob: blob, consensus: consensus).openWriter(shard: shard, purpose: "w", keyCodec: "string")
        await #expect(throws: InvalidUsage.self) {
            _ = try await self.client(blob: blob, consensus: consensus).openWriter(shard: shard, purpose: "w", keyCodec: "bytes")
        }
    }

    @Test func transmittableBatchesAreLinkedByAnotherHandleAfterARewrite() async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        let producer = try await client(blob: blob, consensus: consensus).openWriter(shard: shard, purpose: "producer")
        // Written for [0, 3), then retimed to read as of 5 with upper 6.
        let batch = try await producer.batch([row("a", 0), row("b", 2)], lower: .minimum, upper: Antichain(3))
        try batch.rewriteTimestamps(frontier: 5, newUpper: Antichain(6))
        #expect(throws: InvalidUsage.self) { try batch.rewriteTimestamps(frontier: 4, newUpper: Antichain(6)) }
        let bytes = try batch.intoTransmittable()
        #expect(throws: InvalidUsage.self) { try batch.intoTransmittable() }

        let consumer = try await client(blob: blob, consensus: consensus).openWriter(shard: shard, purpose: "consumer")
        _ = try await consumer.compareAndAppend([], expectedUpper: .minimum, newUpper: Antichain(5)).get()
        let linked = try consumer.batchFromTransmittable(bytes)
        _ = try await consumer.compareAndAppendBatch([linked], expectedUpper: Antichain(5), newUpper: Antichain(6)).get()
        let r = try await client(blob: blob, consensus: consensus).openLeasedReader(shard: shard, purpose: "r")
        #expect(try await r.snapshotAndFetch(asOf: 4).isEmpty, "nothing before the rewrite frontier")
        #expect(Set(try await r.snapshotAndFetch(asOf: 5)) == [row("a", 5), row("b", 5)])

        // A handle for another shard refuses it.
        let other = try await client(blob: blob, consensus: consensus).openWriter(shard: ShardID.random(), purpose: "other")
        #expect(throws: InvalidUsage.self) { _ = try other.batchFromTransmittable(bytes) }
    }

    @Test func aBatchMayBeAppendedAtANarrowerInterval() async throws {
        let c = client()
        let shard = ShardID.random()
        let w = try await c.openWriter(shard: shard, purpose: "w")
        let wide = try await w.batch([row("a", 1), row("b", 3), row("c", 5)], lower: .minimum, upper: Antichain(6))
        _ = try await w.compareAndAppend([], expectedUpper: .minimum, newUpper: Antichain(2)).get()
        _ = try await w.compareAndAppendBatch([wide], expectedUpper: Antichain(2), newUpper: Antichain(4)).get()
        let r = try await c.openLeasedReader(shard: shard, purpose: "r")
        #expect(keys(try await r.snapshotAndFetch(asOf: 3)) == ["b"], "updates outside [2, 4) are ignored")
        let notCovering = try await w.batch([row("d", 5)], lower: Antichain(5), upper: Antichain(6))
        await #expect(throws: InvalidUsage.self) {
            _ = try await w.compareAndAppendBatch([notCovering], expectedUpper: Antichain(4), newUpper: Antichain(6))
        }
        #expect(notCovering.hollow != nil, "a rejected batch stays the caller's")
        await notCovering.delete()
    }

    @Test func appendSkipsWhatAnotherWriterAlreadyWrote() async throws {
        let c = client()
        let shard = ShardID.random()
        let a = try await c.openWriter(shard: shard, purpose: "a")
        let b = try await c.openWriter(shard: shard, purpose: "b")
        let data = [row("x", 0), row("y", 1), row("z", 2)]
        _ = try await a.append(Array(data[0..<2]), lower: .minimum, upper: Antichain(2)).get()
        // b replicates the same definite data for [0, 3): only [2, 3) is new.
        _ = try await b.append(data, lower: .minimum, upper: Antichain(3)).get()
        // And a replay of all of it changes nothing.
        _ = try await a.append(data, lower: .minimum, upper: Antichain(3)).get()
        let r = try await c.openLeasedReader(shard: shard, purpose: "r")
        #expect(keys(try await r.snapshotAndFetch(asOf: 2)) == ["x", "y", "z"])
        let gap = try await a.append([row("w", 9)], lower: Antichain(9), upper: Antichain(10))
        guard case .failure = gap else {
            Issue.record("a non-contiguous append must fail")
            return
        }
    }

    @Test func snapshotWaitsForTheUpper() async throws {
        let c = client()
        let shard = ShardID.random()
        let w = try await c.openWriter(shard: shard, purpose: "w")
        let r = try await c.openLeasedReader(shard: shard, purpose: "r")
        let pending = Task { try await r.snapshotAndFetch(asOf: 3) }
        _ = try await w.compareAndAppend([row("a", 1)], expectedUpper: .minimum, newUpper: Antichain(2)).get()
        _ = try await w.compareAndAppend([row("b", 3)], expectedUpper: Antichain(2), newUpper: Antichain(4)).get()
        #expect(keys(try await pending.value) == ["a", "b"], "the snapshot saw everything below the upper it waited for")
    }

    @Test func leasesExpireWithoutHeartbeats() async throws {
        let clock = ManualPersistClock()
        let c = client(clock: clock)
        let shard = ShardID.random()
        let w = try await c.openWriter(shard: shard, purpose: "w")
        let r = try await c.openLeasedReader(shard: shard, purpose: "r")
        #expect(try await r.heartbeatNow())
        clock.advance(byMilliseconds: c.config.readerLeaseMilliseconds + 1)
        // Any committed transition expires the lapsed reader.
        _ = try await w.compareAndAppend([], expectedUpper: .minimum, newUpper: Antichain(1)).get()
        #expect(try await r.heartbeatNow() == false)
        await #expect(throws: ReadError.leaseExpired) { _ = try await r.snapshotAndFetch(asOf: 0) }
        let state = try await c.machine(for: shard, keyCodec: "bytes", valueCodec: "bytes").refresh()
        #expect(state.leasedReaders.isEmpty)
    }

    @Test func readersHoldTheSinceUntilTheyDowngradeOrExpire() async throws {
        let c = client()
        let shard = ShardID.random()
        let w = try await c.openWriter(shard: shard, purpose: "w")
        _ = try await w.compareAndAppend([], expectedUpper: .minimum, newUpper: Antichain(10)).get()
        let r1 = try await c.openLeasedReader(shard: shard, purpose: "r1")
        let r2 = try await c.openLeasedReader(shard: shard, purpose: "r2")
        try await r1.downgradeSince(Antichain(7))
        #expect(try await c.frontiers(of: shard)?.since == .minimum, "r2 still holds 0")
        try await r2.downgradeSince(Antichain(4))
        #expect(try await c.frontiers(of: shard)?.since == Antichain(4), "the meet of the readers")
        try await r2.downgradeSince(Antichain(2))
        #expect(r2.since == Antichain(4), "a since never goes back")
        try await r2.expire()
        try await r1.downgradeSince(Antichain(8))
        #expect(try await c.frontiers(of: shard)?.since == Antichain(8))
    }

    @Test func criticalSinceIsFencedByItsToken() async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        let id = CriticalReaderID.random()
        let first = try await client(blob: blob, consensus: consensus).openCriticalSince(shard: shard, id: id, purpose: "controller")
        #expect(try await first.compareAndDowngradeSince(expected: 0, newOpaque: 1, newSince: Antichain(5)) == .downgraded(since: Antichain(5)))
        // A second process re-attaches under the same id and takes over with token 2.
        let second = try await client(blob: blob, consensus: consensus).openCriticalSince(shard: shard, id: id, purpose: "controller")
        #expect(try await second.compareAndDowngradeSince(expected: 1, newOpaque: 2, newSince: Antichain(6)) == .downgraded(since: Antichain(6)))
        // The zombie first holder is fenced out.
        #expect(try await first.compareAndDowngradeSince(expected: 1, newOpaque: 3, newSince: Antichain(9)) == .opaqueMismatch(actual: 2, since: Antichain(6)))
        let reader = try await client(blob: blob, consensus: consensus).openLeasedReader(shard: shard, purpose: "r", useCriticalSince: true)
        #expect(reader.since == Antichain(6), "a reader can start at the critical since")
    }

    @Test func fileBlobAndLogConsensusEndToEnd() async throws {
        let dir = "/tmp/swift-txn-wal-client-\(UInt64.random(in: 0...UInt64.max))"
        defer { removeTreeForTests(dir) }
        let shard = ShardID.random()
        do {
            let log = try LogConsensus.open(directory: dir + "/consensus")
            let c = client(blob: try FileBlob(root: dir + "/blob"), consensus: log)
            let w = try await c.openWriter(shard: shard, purpose: "w")
            for t in 0..<40 as Range<Timestamp> {
                _ = try await w.compareAndAppend([row("k\(t)", t)], expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
            }
            await c.waitForMaintenance()
            await log.close()
        }
        // A new process: reopen the files and read everything back.
        let log = try LogConsensus.open(directory: dir + "/consensus")
        let c = client(blob: try FileBlob(root: dir + "/blob"), consensus: log)
        let r = try await c.openLeasedReader(shard: shard, purpose: "r")
        #expect(try await r.snapshotAndFetch(asOf: 39).count == 40)
        await log.close()
    }
}

func removeTreeForTests(_ path: String) {
    try? FileManager.default.removeItem(atPath: path)
}
