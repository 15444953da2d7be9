import PersistCodec
import PersistCore
import Testing

@testable import PersistLocation

/// The group-commit state machine of LogConsensus, without any I/O: waiters are integers
/// and the test plays the writer.
@Suite struct LogConsensusMachineTests {
    typealias Machine = LogConsensusMachine<Int>

    func fresh() -> Machine {
        Machine(
            durable: ConsensusTable(), watermarks: [:], deadOnDisk: [:],
            segments: [1: LogSegmentInfo(totalBytes: 20, liveBytes: 0, liveRecords: 0)], activeSegment: 1,
            compactionLiveRatio: 0.5)
    }

    func v(_ s: Int, _ byte: UInt8 = 0) -> VersionedData { VersionedData(seqno: SeqNo(s), data: [byte]) }
    func rec(_ key: String, _ version: VersionedData) -> [UInt8] {
        ConsensusLogRecord.version(key: Array(key.utf8), version).encoded()
    }

    func queuedWake(_ d: Machine.Decision) -> Bool? {
        if case .queued(let wake) = d { return wake }
        return nil
    }

    func writeOps(_ step: Machine.WriterStep) -> [Machine.Op]? {
        if case .write(let ops) = step { return ops }
        return nil
    }

    @Test func requestsArrivingDuringASyncShareTheNextBatch() throws {
        var m = fresh()
        let k = ByteKey("k")
        #expect(queuedWake(m.compareAndSet(k, expected: nil, new: v(1), record: rec("k", v(1)), waiter: 1)) == true)
        let first = try #require(writeOps(m.nextWriterStep()))
        #expect(first.count == 1)
        // While batch 1 syncs: a chained CaS on the same key and CaS on other keys queue,
        // and none of them wakes the (busy) writer again.
        #expect(queuedWake(m.compareAndSet(k, expected: SeqNo(1), new: v(2), record: rec("k", v(2)), waiter: 2)) == false)
        for i in 3...6 {
            let key = ByteKey("other-\(i)")
            #expect(queuedWake(m.compareAndSet(key, expected: nil, new: v(1), record: rec(key.string, v(1)), waiter: i)) == false)
        }
        // Readers do not see unsynced versions.
        #expect(try m.read { $0.head(k) }.get() == nil)
        let (replies1, _) = m.batchDurable(first, segment: 1)
        #expect(replies1.map(\.0) == [1])
        #expect(try m.read { $0.head(k) }.get() == v(1))
        let second = try #require(writeOps(m.nextWriterStep()))
        #expect(second.count == 5, "everything queued during the sync is one group")
        let (replies2, _) = m.batchDurable(second, segment: 1)
        #expect(replies2.map(\.0) == [2, 3, 4, 5, 6])
        #expect(replies2.allSatisfy { (try? $0.1.get()) == .cas(.committed) })
        #expect(try m.read { $0.head(k) }.get() == v(2))
        guard case .idle = m.nextWriterStep() else {
            Issue.record("writer should go idle")
            return
        }
        #expect(m.stats.batches == 2)
        #expect(m.stats.recordsWritten == 6)
    }

    @Test func mismatchAgainstAPendingVersionWaitsForItsBatch() throws {
        var m = fresh()
        let k = ByteKey("k")
        _ = m.compareAndSet(k, expected: nil, new: v(1, 1), record: rec("k", v(1, 1)), waiter: 1)
        // A competing first write sees the pending v1 and must not be answered before
        // v1 is durable, or it would reveal a version that might still be lost.
        let d = m.compareAndSet(k, expected: nil, new: v(1, 2), record: rec("k", v(1, 2)), waiter: 2)
        #expect(queuedWake(d) == false)
        let ops = try #require(writeOps(m.nextWriterStep()))
        let (replies, _) = m.batchDurable(ops, segment: 1)
        #expect(replies.count == 2)
        #expect(replies[1].0 == 2)
        #expect(try replies[1].1.get() == .cas(.expectationMismatch(current: v(1, 1))))
    }

    @Test func mismatchAgainstDurableStateIsAnsweredAtOnce() throws {
        var m = fresh()
        let k = ByteKey("k")
        _ = m.compareAndSet(k, expected: nil, new: v(1), record: rec("k", v(1)), waiter: 1)
        let ops = try #require(writeOps(m.nextWriterStep()))
        _ = m.batchDurable(ops, segment: 1)
        guard case .reply(let r) = m.compareAndSet(k, expected: SeqNo(5), new: v(6), record: [], waiter: 2) else {
            Issue.record("expected an immediate reply")
            return
        }
        #expect(try r.get() == .cas(.expectationMismatch(current: v(1))))
    }

    @Test func truncationIsCheckedAgainstTheNewestHeadAndCountsAtApply() throws {
        var m = fresh()
        let k = ByteKey("k")
        for i in 1...3 {
            _ = m.compareAndSet(k, expected: i == 1 ? nil : SeqNo(i - 1), new: v(i), record: rec("k", v(i)), waiter: i)
        }
        guard case .reply(let tooHigh) = m.truncate(k, below: SeqNo(4), record: [], waiter: 9) else {
            Issue.record("truncating above the newest head fails at once")
            return
        }
        #expect(throws: StorageError.self) { try tooHigh.get() }
        let rec3 = ConsensusLogRecord.truncation(key: Array("k".utf8), below: SeqNo(3)).encoded()
        #expect(queuedWake(m.truncate(k, below: SeqNo(3), record: rec3, waiter: 10)) == false)
        let ops = try #require(writeOps(m.nextWriterStep()))
        let (replies, _) = m.batchDurable(ops, segment: 1)
        #expect(try replies.last?.1.get() == .truncated(2))
        #expect(m.watermarks[k] == SeqNo(3))
        #expect(m.deadOnDisk[k] == 2)
        #expect(try m.read { $0.scan(k, from: .minimum, limit: 10) }.get() == [v(3)])
    }

    @Test func aFailedSyncFailsTheBatchIndeterminatelyAndTheQueueDeterminately() throws {
        var m = fresh()
        _ = m.compareAndSet(ByteKey("a"), expected: nil, new: v(1), record: rec("a", v(1)), waiter: 1)
        let ops = try #require(writeOps(m.nextWriterStep()))
        _ = m.compareAndSet(ByteKey("b"), expected: nil, new: v(1), record: rec("b", v(1)), waiter: 2)
        let failures = m.batchFailed(ops, error: .indeterminate(.io, "fdatasync: EIO"))
        #expect(failures.map(\.0) == [1, 2])
        #expect(failures[0].1.determinacy == .indeterminate, "the written batch may or may not be durable")
        #expect(failures[1].1.determinacy == .determinate, "the queued request was never written")
        guard case .reply(let later) = m.compareAndSet(ByteKey("c"), expected: nil, new: v(1), record: [], waiter: 3) else {
            Issue.record("a failed log answers at once")
            return
        }
        #expect { try later.get() } throws: { ($0 as? StorageError)?.code == .failed }
        #expect(throws: StorageError.self) { try m.read { $0.keyCount }.get() }
    }

    @Test func compactionCopiesLiveVersionsCarriesNeededWatermarksAndDropsTheSegment() throws {
        var m = fresh()
        let a = ByteKey("a")
        let b = ByteKey("b")
        // Segment 1: a@1..3 and b@1.
        for i in 1...3 { _ = m.compareAndSet(a, expected: i == 1 ? nil : SeqNo(i - 1), new: v(i), record: rec("a", v(i)), waiter: i) }
        _ = m.compareAndSet(b, expected: nil, new: v(1), record: rec("b", v(1)), waiter: 4)
        let batch = try #require(writeOps(m.nextWriterStep()))
        _ = m.batchDurable(batch, segment: 1)
        // Roll to segment 2 and truncate a below 3 there.
        m.segmentRolled(to: 2, headerBytes: 20)
        let truncRecord = ConsensusLogRecord.truncation(key: a.utf8, below: SeqNo(3)).encoded()
        _ = m.truncate(a, below: SeqNo(3), record: truncRecord, waiter: 5)
        _ = m.batchDurable(try #require(writeOps(m.nextWriterStep())), segment: 2)
        // Segment 1 now holds a@3 and b@1 live, a@1 and a@2 dead: below half live?
        let info1 = try #require(m.segments[1])
        #expect(info1.liveRecords == 2)
        _ = m.planCompaction(
            segment: 1,
            records: [
                .version(key: a.utf8, v(1)), .version(key: a.utf8, v(2)), .version(key: a.utf8, v(3)),
                .version(key: b.utf8, v(1)),
            ])
        #expect(m.deadOnDisk[a] == nil, "the dead copies of a lived only in segment 1")
        let plan = try #require(writeOps(m.nextWriterStep()))
        let relocations = plan.filter { if case .relocate = $0 { return true } else { return false } }
        #expect(relocations.count == 2)
        let (_, drops) = m.batchDurable(plan, segment: 2)
        #expect(drops == [1])
        m.segmentDropped(1)
        #expect(m.durable.segment(of: a, SeqNo(3)) == 2)
        #expect(m.durable.segment(of: b, SeqNo(1)) == 2)
        #expect(m.segments[1] == nil)
        #expect(m.segments[2]?.liveRecords == 2)
    }
}
