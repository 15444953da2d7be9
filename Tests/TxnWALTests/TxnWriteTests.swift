import Foundation
import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import TxnWAL

// The txn_write.rs tests (spec/txn-wal.md §6.3), one Swift test per upstream test, same
// scenario and assertions. Where upstream expects a panic, our code throws a typed error,
// and the test asserts that error.

@Suite struct TxnWriteTests {
    /// Upstream `commit_at`.
    @Test func commitAt() async throws {
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let cache = try await TxnsCache.expectOpen(client, txns.txnsID, initTs: 0)
        let (d0, _) = try await txns.expectRegister(1)
        let (d1, _) = try await txns.expectRegister(2)

        // Several writes, merged into one txn, committed at 3.
        var txn = txns.begin()
        txn.write(d0, key: Array("0".utf8), diff: 1)
        var other = txns.begin()
        other.write(d0, key: Array("1".utf8), diff: 1)
        other.write(d1, key: Array("A".utf8), diff: 1)
        txn.merge(other)
        _ = try await txn.commitAt(txns, 3).get()

        // An empty txn skips a timestamp.
        var empty = txns.begin()
        _ = try await empty.commitAt(txns, 5).get()

        // 4 is now closed: the error names 6, which then works.
        var late = txns.begin()
        late.write(d0, key: Array("2".utf8), diff: 1)
        #expect(try await late.commitAt(txns, 4) == .failure(TimestampClosed(nextUsable: 6)))
        _ = try await late.commitAt(txns, 6).get()

        _ = try await txns.applyLE(6)
        #expect(try await cache.expectSnapshot(client, d0, asOf: 6) == ["0", "1", "2"])
        #expect(try await cache.expectSnapshot(client, d1, asOf: 6) == ["A"])
    }

    /// Upstream `apply_and_tidy`: follows `min_unapplied_ts` (in an independent cache)
    /// through commits, applies and tidies, including late, duplicate and merged tidies.
    @Test func applyAndTidy() async throws {
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let log = txns.newLog()
        let cache = try await TxnsCache.expectOpen(client, txns.txnsID, initTs: 0)
        let (d0, _) = try await txns.expectRegister(1)

        // Commit without applying.
        var txn = txns.beginTest()
        txn.write(d0, "2")
        let apply2 = try await txn.commitAt(txns, 2).get()
        log.recordTxn(2, txn)
        #expect(!apply2.isEmpty)
        try await cache.updateGt(2)
        // The handle applied the registration; this independent cache only learns that
        // by being told.
        cache.markRegisterApplied(2)
        #expect(cache.state.minUnappliedTs() == 2)
        #expect(cache.state.unapplied().count == 1)

        // Applying does not retract, so the batch is still outstanding.
        let tidy2 = try await apply2.apply(txns)
        #expect(cache.state.minUnappliedTs() == 2)

        // Tidying does.
        _ = try await txns.tidyAt(3, tidy2).get()
        try await cache.updateGt(3)
        #expect(cache.state.minUnappliedTs() == 4)
        #expect(cache.state.unapplied().count == 0)

        // A tidy can ride along with (merged) txn writes.
        let tidy4 = try await txns.expectCommitAt(4, d0, ["4"], log)
        try await cache.updateGt(4)
        #expect(cache.state.minUnappliedTs() == 4)
        var txn0 = txns.beginTest()
        txn0.write(d0, "5")
        txn0.tidy(tidy4)
        var txn1 = txns.beginTest()
        txn1.merge(txn0)
        let apply5 = try await txn1.commitAt(txns, 5).get()
        log.recordTxn(5, txn1)
        try await cache.updateGt(5)
        #expect(cache.state.minUnappliedTs() == 5)
        let tidy5 = try await apply5.apply(txns)

        // apply_le(6) also returns batch 5's retraction, still outstanding.
        let tidy6 = try await txns.expectCommitAt(6, d0, ["6"], log)
        _ = try await txns.tidyAt(7, tidy6).get()
        try await cache.updateGt(7)
        #expect(cache.state.minUnappliedTs() == 8)

        // A late, duplicate tidy is a no-op, but still uses up its timestamp.
        _ = try await txns.tidyAt(8, tidy5).get()
        try await cache.updateGt(8)
        #expect(cache.state.minUnappliedTs() == 9)

        // Tidies merge.
        let tidy9 = try await txns.expectCommitAt(9, d0, ["9"], log)
        let tidy10 = try await txns.expectCommitAt(10, d0, ["10"], log)
        var carrier = txns.begin()
        carrier.tidy(tidy9)
        var merged = carrier.takeTidy()
        #expect(carrier.pendingTidy.isEmpty)
        merged.merge(tidy10)
        _ = try await txns.tidyAt(11, merged).get()
        try await cache.updateGt(11)
        #expect(cache.state.minUnappliedTs() == 12)

        // A tidy at a closed time is refused like any commit.
        let tidy12 = try await txns.expectCommitAt(12, d0, ["12"], log)
        let refused = try await txns.tidyAt(12, tidy12)
        #expect(refused.map { _ in true } == .failure(TimestampClosed(nextUsable: 13)))

        try await log.assertSnapshot(d0, asOf: 12)
    }

    /// Upstream `conflicting_writes`: 25 tasks, each with its own handle on one txns
    /// shard, register the same shard and commit to it at contended times.
    ///
    /// Upstream derives each task's jitter from the wall clock; here it comes from a
    /// seeded generator (0-19 ms, as upstream). The sleeps only vary the interleaving: no
    /// assertion depends on timing.
    @Test func conflictingWrites() async throws {
        let numTxns = 25
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let log = txns.newLog()
        let txnsID = txns.txnsID
        let d0 = ShardID.random()
        var rng = SeededGenerator(seed: 0xC0FF_11C7)
        let jitters = (0..<numTxns).map { _ in (Int(rng.next() % 20), Int(rng.next() % 20)) }

        let commitTimes = try await withThrowingTaskGroup(of: Timestamp.self) { group in
            for idx in 0..<numTxns {
                let (jitter, tidyJitter) = jitters[idx]
                group.addTask {
                    let txns = try await TxnsHandle.expectOpenID(client, txnsID)
                    var registerTs: Timestamp = 1
                    let dataWrite = try await writer(client, d0)
                    while case .failure(let closed) = try await txns.register(at: registerTs, [dataWrite]) {
                        registerTs = closed.nextUsable
                    }

                    var txn = txns.beginTest()
                    txn.write(d0, String(format: "%05d", idx))
                    var commitTs = registerTs + 1 + Timestamp(jitter)
                    var apply: TxnApply
                    while true {
                        try await Task.sleep(for: .milliseconds(jitter))
                        switch try await txn.commitAt(txns, commitTs) {
                        case .success(let a): apply = a
                        case .failure(let closed):
                            commitTs = closed.nextUsable
                            continue
                        }
                        break
                    }
                    log.recordTxn(commitTs, txn)

                    try await Task.sleep(for: .milliseconds(jitter))
                    let tidy = try await apply.apply(txns)

                    var tidyTxn = txns.begin()
                    tidyTxn.tidy(tidy)
                    var tidyTs = commitTs + Timestamp(tidyJitter)
                    while true {
                        try await Task.sleep(for: .milliseconds(tidyJitter))
                        switch try await tidyTxn.commitAt(txns, tidyTs) {
                        case .success(let a):
                            #expect(a.isEmpty, "a tidy-only commit applies nothing")
                        case .failure(let closed):
                            tidyTs = closed.nextUsable
                            continue
                        }
                        break
                    }
                    return commitTs
                }
            }
            var out: [Timestamp] = []
            for try await t in group { out.append(t) }
            return out
        }
        let maxCommitTs = try #require(commitTimes.max())

        // A failsafe independent of the log: every task's key is there exactly once.
        let cache = try await TxnsCache.expectOpen(client, txnsID, initTs: 0)
        let expected = (0..<numTxns).map { String(format: "%05d", $0) }
        #expect(try await cache.expectSnapshot(client, d0, asOf: maxCommitTs) == expected)
        try await log.assertSnapshot(d0, asOf: maxCommitTs)
    }

    /// Upstream `tidy_race`: two handles tidy the same batch; the second tidy must be
    /// filtered, never a double retraction.
    @Test func tidyRace() async throws {
        let client = newTestClient()
        let txns0 = try await TxnsHandle.expectOpen(client)
        let log = txns0.newLog()

        let (d0, _) = try await txns0.expectRegister(1)
        let tidy0 = try await txns0.expectCommitAt(2, d0, ["d0"], log)

        let txns1 = try await TxnsHandle.expectOpenID(client, txns0.txnsID)
        let (d1, _) = try await txns1.expectRegister(3)
        // txns1's apply of 4 also covers d0's batch at 2, still outstanding.
        let tidy1 = try await txns1.expectCommitAt(4, d1, ["d1"], log)

        _ = try await txns1.tidyAt(5, tidy1).get()
        _ = try await txns0.tidyAt(6, tidy0).get()

        // A double retraction would break a fresh cache's reading of the txns shard.
        let cache = try await TxnsCache.expectOpen(client, txns0.txnsID, initTs: 0)
        try await cache.updateGt(6)
        #expect(cache.state.validate() == nil)

        try await log.assertSnapshot(d0, asOf: 6)
        try await log.assertSnapshot(d1, asOf: 6)
    }

    /// Upstream `commit_unregistered_table`: committing to a shard that is not registered
    /// (never, or no longer) is a usage error. Upstream panics in a spawned task; ours
    /// throws `TxnsUsageError.notRegistered`.
    @Test func commitUnregisteredTable() async throws {
        let client = newTestClient()
        let txnsID = ShardID.random()

        // Never registered.
        let never = ShardID.random()
        let first = Task {
            let txns = try await TxnsHandle.expectOpenID(client, txnsID)
            var txn = txns.begin()
            txn.write(never, key: Array("foo".utf8), diff: 1)
            _ = try await txn.commitAt(txns, 1)
        }
        await #expect(throws: TxnsUsageError.notRegistered(never, at: 1)) { try await first.value }

        // Registered and then forgotten.
        let txns = try await TxnsHandle.expectOpenID(client, txnsID)
        let (d0, _) = try await txns.expectRegister(2)
        _ = try await txns.forget(at: 3, [d0]).get()
        let second = Task {
            let txns = try await TxnsHandle.expectOpenID(client, txnsID)
            var txn = txns.begin()
            txn.write(d0, key: Array("foo".utf8), diff: 1)
            _ = try await txn.commitAt(txns, 4)
        }
        await #expect(throws: TxnsUsageError.notRegistered(d0, at: 4)) { try await second.value }
    }

    /// Upstream `commit_retry`: a txn refused at a closed time keeps its writes, takes
    /// more, and commits them all at the next time.
    @Test func commitRetry() async throws {
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let (d0, _) = try await txns.expectRegister(1)
        let (d1, _) = try await txns.expectRegister(2)

        var txn = txns.begin()
        txn.write(d0, key: Array("0".utf8), diff: 1)
        // Meanwhile another txn takes 3.
        var other = txns.begin()
        other.write(d1, key: Array("42".utf8), diff: 1)
        _ = try await other.commitAt(txns, 3).get()

        #expect(try await txn.commitAt(txns, 3) == .failure(TimestampClosed(nextUsable: 4)))

        // The txn is still usable, with its earlier write.
        txn.write(d0, key: Array("1".utf8), diff: 1)
        _ = try await txn.commitAt(txns, 4).get()
        _ = try await txns.applyLE(4)
        #expect(try await txns.readCache.expectSnapshot(client, d0, asOf: 4) == ["0", "1"])
    }
}
