import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import PersistClient

/// The randomized workload over storage that fails 5-10% of the time, sometimes after
/// performing the operation: nothing acknowledged may be lost or duplicated.
@Suite struct UnreliableShardTests {
    @Test(arguments: [21, 22, 23] as [UInt64])
    func racingWritersOverUnreliableStorageLoseAndDuplicateNothing(seed: UInt64) async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let faults = FaultInjector(seed: seed, rates: .init(happenRate: 0.95, timeoutRate: 0.05))
        let shard = ShardID.random()
        let config = {
            var c = testConfig()
            c.compactionMinInputs = 4
            c.rollupThreshold = 16
            return c
        }()
        let target: Timestamp = 60
        let acked = Shared<[(Timestamp, [Update])]>([])
        print("unreliable workload seed \(seed)")
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<3 {
                group.addTask {
                    let client = PersistClient(
                        blob: UnreliableBlob(blob, faults: faults), consensus: UnreliableConsensus(consensus, faults: faults),
                        config: config)
                    let writer = try await client.openWriter(shard: shard, purpose: "writer \(w)")
                    var rng = SeededGenerator(seed: seed &* 31 &+ UInt64(w))
                    while true {
                        let upper = try await writer.fetchRecentUpper()
                        guard let t = upper.element, t < target else { break }
                        let updates = ShardBehaviourTests.randomUpdates(&rng, at: t, count: Int.random(in: 0...3, using: &rng))
                            .map { u in Update(key: u.key + Array("-\(w)".utf8), value: u.value, time: u.time, diff: u.diff) }
                        if case .success = try await writer.compareAndAppend(updates, expectedUpper: upper, newUpper: Antichain(t + 1)) {
                            acked.value.withLock { $0.append((t, updates)) }
                        }
                    }
                    await client.waitForMaintenance()
                }
            }
            try await group.waitForAll()
        }
        #expect(faults.injectedCount > 0, "faults were injected")
        faults.setRates(.reliable)
        let wins = acked.value.withLock { $0 }
        #expect(wins.map(\.0).sorted() == Array(0..<target), "each time won exactly once")
        let all = wins.flatMap(\.1)
        let checker = PersistClient(blob: blob, consensus: consensus, config: config)
        let reader = try await checker.openLeasedReader(shard: shard, purpose: "check")
        for asOf in stride(from: 0, to: target, by: 7) {
            #expect(try await reader.snapshotAndFetch(asOf: asOf) == ShardBehaviourTests.fold(all, asOf: asOf), "as of \(asOf)")
        }
        #expect(try await reader.snapshotAndFetch(asOf: target - 1) == ShardBehaviourTests.fold(all, asOf: target - 1))
    }
}
