import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import PersistClient

func row(_ key: String, _ t: Timestamp, _ d: Int64 = 1) -> Update {
    Update(key: Array(key.utf8), value: [], time: t, diff: d)
}

func keys(_ updates: [Update]) -> [String] {
    updates.flatMap { u in Array(repeating: String(decoding: u.key, as: UTF8.self), count: Int(max(0, u.diff))) }
}

func testConfig() -> PersistConfig {
    var c = PersistConfig()
    c.blobTargetSizeBytes = 1024
    c.pollInterval = .milliseconds(1)
    c.initialBackoff = .milliseconds(1)
    c.maxBackoff = .milliseconds(20)
    return c
}

@Suite struct ShardBasicsTests {
    @Test func appendSnapshotAndListen() async throws {
        let client = PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: testConfig(), clock: ManualPersistClock())
        let shard = ShardID.random()
        let writer = try await client.openWriter(shard: shard, purpose: "test")
        #expect(writer.upper == .minimum)
        #expect(try await writer.compareAndAppend([row("a", 0), row("b", 1)], expectedUpper: .minimum, newUpper: Antichain(2)).get() == ())
        let mismatch = try await writer.compareAndAppend([row("c", 2)], expectedUpper: .minimum, newUpper: Antichain(3))
        guard case .failure(let m) = mismatch else {
            Issue.record("appending at a stale upper must fail")
            return
        }
        #expect(m == UpperMismatch(expected: .minimum, current: Antichain(2)))

        let reader = try await client.openLeasedReader(shard: shard, purpose: "test")
        #expect(keys(try await reader.snapshotAndFetch(asOf: 0)) == ["a"])
        #expect(keys(try await reader.snapshotAndFetch(asOf: 1)) == ["a", "b"])

        _ = try await writer.compareAndAppend([row("c", 2), row("a", 3, -1)], expectedUpper: Antichain(2), newUpper: Antichain(4))
        var listen = try await reader.listen(asOf: 1).makeAsyncIterator()
        var seen: [Update] = []
        while case .updates(let u)? = try await listen.next() {
            seen += u
            guard case .progress(let p)? = try await listen.next() else { break }
            if p == Antichain(4) { break }
        }
        #expect(Set(seen) == [row("c", 2), row("a", 3, -1)])
    }

    @Test func secondClientSeesTheSameShard() async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        let one = PersistClient(blob: blob, consensus: consensus, config: testConfig())
        let w = try await one.openWriter(shard: shard, purpose: "one")
        for i in 0..<300 {
            _ = try await w.compareAndAppend([row("k\(i)", Timestamp(i))], expectedUpper: Antichain(Timestamp(i)), newUpper: Antichain(Timestamp(i + 1))).get()
        }
        await one.waitForMaintenance()
        let two = PersistClient(blob: blob, consensus: consensus, config: testConfig())
        let r = try await two.openLeasedReader(shard: shard, purpose: "two")
        #expect(try await r.snapshotAndFetch(asOf: 299).count == 300)
    }
}
