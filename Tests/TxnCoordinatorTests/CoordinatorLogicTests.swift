import PersistCodec
import PersistCore
import Testing

@testable import TxnCoordinator

/// The coordinator's pure parts, without storage: the job queue and its grouping, the
/// request and timestamp rules, the registration history and the subscription channel.
@Suite struct CoordinatorQueueTests {
    typealias Queue = JobQueue<String, Int>

    static func commit(_ name: String, rows: Int = 1, bytes: Int = 10) -> Queue.Item {
        Queue.Item(job: name, groupable: true, rows: rows, bytes: bytes)
    }

    static func other(_ name: String) -> Queue.Item { Queue.Item(job: name, groupable: false, rows: 0, bytes: 0) }

    /// The steps the worker takes until the queue is empty, as strings.
    static func drain(_ q: inout Queue) -> [String] {
        var steps: [String] = []
        while case .run(let step) = q.next(parking: 0) {
            switch step {
            case .single(let j): steps.append(j)
            case .group(let js): steps.append("[" + js.joined(separator: ",") + "]")
            }
        }
        return steps
    }

    @Test func queuedCommitsWithoutTimestampsBecomeOneGroupInArrivalOrder() {
        var q = Queue(groupCommit: true, maxGroupRows: 100, maxGroupBytes: 1000)
        for i in 0..<5 { _ = q.enqueue(Self.commit("c\(i)")) }
        #expect(Self.drain(&q) == ["[c0,c1,c2,c3,c4]"])
    }

    @Test func otherJobsRunAloneAndCommitsBehindThemJoinTheGroup() {
        var q = Queue(groupCommit: true, maxGroupRows: 100, maxGroupBytes: 1000)
        _ = q.enqueue(Self.other("read"))
        _ = q.enqueue(Self.commit("c0"))
        _ = q.enqueue(Self.other("explicit"))
        _ = q.enqueue(Self.commit("c1"))
        #expect(Self.drain(&q) == ["read", "[c0,c1]", "explicit"])
    }

    @Test func groupsStopAtTheLimitsWithoutReordering() {
        var q = Queue(groupCommit: true, maxGroupRows: 10, maxGroupBytes: 1000)
        _ = q.enqueue(Self.commit("a", rows: 6))
        _ = q.enqueue(Self.commit("b", rows: 3))
        _ = q.enqueue(Self.commit("c", rows: 5))  // does not fit: starts the next group
        _ = q.enqueue(Self.commit("d", rows: 1))  // would fit, but must not pass c
        _ = q.enqueue(Self.commit("e", rows: 50))  // over the limit alone: still runs, alone
        #expect(Self.drain(&q) == ["[a,b]", "[c,d]", "[e]"])

        var bytes = Queue(groupCommit: true, maxGroupRows: 100, maxGroupBytes: 25)
        for n in ["a", "b", "c"] { _ = bytes.enqueue(Self.commit(n, bytes: 10)) }
        #expect(Self.drain(&bytes) == ["[a,b]", "[c]"])
    }

    @Test func withoutGroupCommitEveryJobIsItsOwnStep() {
        var q = Queue(groupCommit: false, maxGroupRows: 100, maxGroupBytes: 1000)
        for i in 0..<3 { _ = q.enqueue(Self.commit("c\(i)")) }
        #expect(Self.drain(&q) == ["c0", "c1", "c2"])
    }

    @Test func aParkedWorkerIsWokenWithTheFirstJob() {
        var q = Queue(groupCommit: true, maxGroupRows: 100, maxGroupBytes: 1000)
        guard case .parked = q.next(parking: 7) else {
            Issue.record("an empty queue parks the worker")
            return
        }
        guard case .wake(let waiter, .group(let jobs)) = q.enqueue(Self.commit("c0")) else {
            Issue.record("the parked worker is woken")
            return
        }
        #expect(waiter == 7)
        #expect(jobs == ["c0"])
        guard case .queued = q.enqueue(Self.commit("c1")) else {
            Issue.record("a busy worker is not woken twice")
            return
        }
        #expect(q.depth == 1)
    }

    @Test func closingDrainsWhatIsQueuedThenFinishesAndRejectsNewJobs() {
        var q = Queue(groupCommit: true, maxGroupRows: 100, maxGroupBytes: 1000)
        _ = q.enqueue(Self.other("x"))
        #expect(q.close() == nil, "nobody was parked")
        guard case .rejected(let job) = q.enqueue(Self.other("late")) else {
            Issue.record("a closed queue takes nothing")
            return
        }
        #expect(job == "late")
        #expect(Self.drain(&q) == ["x"])
        guard case .finished = q.next(parking: 1) else {
            Issue.record("drained and closed: finished")
            return
        }

        var idle = Queue(groupCommit: true, maxGroupRows: 100, maxGroupBytes: 1000)
        _ = idle.next(parking: 3)
        #expect(idle.close() == 3, "the parked worker is handed back to be told to stop")
    }
}

@Suite struct CoordinatorRulesTests {
    func shard(_ n: UInt8) throws -> ShardRef { .id(try ShardID(bytes: Array(repeating: n, count: 16))) }

    @Test func commitsNeedRowsAndStayWithinTheLimits() throws {
        let ok = CoordinatorRules.validateCommit(
            [ShardWrites(shard: try shard(1), rows: [RowWrite(key: [1, 2], value: [3])]), ShardWrites(shard: try shard(2), rows: [])],
            maxRows: 10, maxBytes: 100)
        #expect(try ok.get() == CoordinatorRules.CommitSize(rows: 1, bytes: 3))
        for empty in [[], [ShardWrites(shard: try shard(1), rows: [])]] {
            guard case .failure(let e) = CoordinatorRules.validateCommit(empty, maxRows: 10, maxBytes: 100) else {
                Issue.record("an empty commit is refused")
                continue
            }
            #expect(e.code == .badRequest)
        }
        let many = [ShardWrites(shard: try shard(1), rows: Array(repeating: RowWrite(key: [1]), count: 11))]
        #expect((try? CoordinatorRules.validateCommit(many, maxRows: 10, maxBytes: 100).get()) == nil)
        let big = [ShardWrites(shard: try shard(1), rows: [RowWrite(key: Array(repeating: 0, count: 60), value: Array(repeating: 0, count: 41))])]
        guard case .failure(let e) = CoordinatorRules.validateCommit(big, maxRows: 10, maxBytes: 100) else {
            Issue.record("101 bytes is over 100")
            return
        }
        #expect(e.code == .badRequest)
        #expect(e.message.contains("100 bytes"))
    }

    @Test func coordinatorTimesFollowTheClockButNeverGoBack() {
        #expect(CoordinatorRules.pick(nowMilliseconds: 500, txnsUpper: 20) == 500)
        #expect(CoordinatorRules.pick(nowMilliseconds: 500, txnsUpper: 900) == 900, "a clock behind the upper")
        #expect(CoordinatorRules.validateExplicit(nil) == nil)
        #expect(CoordinatorRules.validateExplicit(CoordinatorRules.maxTimestamp) == nil)
        #expect(CoordinatorRules.validateExplicit(.max)?.code == .badRequest)
    }

    @Test func readTimesResolveAgainstUpperSinceAndClock() throws {
        func resolve(_ asOf: Timestamp?) -> Result<CoordinatorRules.ReadTime, CoordinatorError> {
            CoordinatorRules.resolveRead(asOf: asOf, upper: 100, since: 10, nowMilliseconds: 1000)
        }
        #expect(try resolve(nil).get() == .read(99), "latest committed time")
        #expect(try resolve(10).get() == .read(10))
        #expect(try resolve(99).get() == .read(99))
        #expect(try resolve(100).get() == .seal(100), "open but reached by the clock: close it, then read")
        #expect(try resolve(1000).get() == .seal(1000))
        guard case .failure(let below) = resolve(9), case .failure(let future) = resolve(1001) else {
            Issue.record("below the since and beyond the clock are refused")
            return
        }
        #expect(below.code == .badRequest)
        #expect(below.message.contains("compacted"))
        #expect(future.code == .badRequest)
        #expect(future.message.contains("future"))
    }

    @Test func commitsAreSplitByRegistration() throws {
        let (a, b, c) = (try ShardID(bytes: Array(repeating: 1, count: 16)), try ShardID(bytes: Array(repeating: 2, count: 16)),
            try ShardID(bytes: Array(repeating: 3, count: 16)))
        let jobs = [("j0", [a]), ("j1", [a, c]), ("j2", [b]), ("j3", [c, a])]
        let split = CoordinatorRules.partitionByRegistration(jobs, shards: \.1) { $0 != c }
        #expect(split.ok.map(\.0) == ["j0", "j2"])
        #expect(split.rejected.map(\.0.0) == ["j1", "j3"])
        #expect(split.rejected.map(\.1) == [c, c])
    }

    @Test func unappliedCountsDistinctTimesAfterTheAppliedOne() {
        #expect(CoordinatorRules.unappliedCount(times: [3, 3, 5, 7], appliedThrough: 4) == 2)
        #expect(CoordinatorRules.unappliedCount(times: [3, 3, 5], appliedThrough: nil) == 2)
        #expect(CoordinatorRules.unappliedCount(times: [], appliedThrough: 9) == 0)
    }
}

@Suite struct CoordinatorRegistrationHistoryTests {
    @Test func registrationsCoverTheirForgetTimeAndNothingAfter() throws {
        let d = try ShardID(bytes: Array(repeating: 4, count: 16))
        let other = try ShardID(bytes: Array(repeating: 5, count: 16))
        var h = RegistrationHistory()
        // Out of order on purpose: the history orders by embedded time.
        h.record(.register(shard: d, ts: 20), diff: -1)
        h.record(.register(shard: d, ts: 10), diff: 1)
        h.record(.register(shard: d, ts: 30), diff: 1)
        h.record(.register(shard: d, ts: 30), diff: 1)  // a repeat changes nothing
        h.record(.append(shard: other, ts: 5, batch: [1]), diff: 1)  // not a registration
        let expected: [(Timestamp, Bool)] = [(9, false), (10, true), (15, true), (20, true), (21, false), (29, false), (30, true), (999, true)]
        for (t, registered) in expected { #expect(h.isRegistered(d, at: t) == registered, "at \(t)") }
        #expect(!h.isRegistered(other, at: 5))
    }
}

@Suite struct CoordinatorSubscriptionChannelTests {
    typealias Channel = SubscriptionChannel<Int, String, String>

    @Test func eventsWaitInOrderAndAParkedConsumerGetsTheNextDirectly() {
        var c = Channel(capacity: 3)
        guard case .accepted = c.offer(1), case .accepted = c.offer(2) else {
            Issue.record("room for two")
            return
        }
        guard case .event(1, nil) = c.poll("consumer"), case .event(2, nil) = c.poll("consumer") else {
            Issue.record("in order")
            return
        }
        guard case .parked = c.poll("consumer") else {
            Issue.record("empty: the consumer waits")
            return
        }
        guard case .deliver("consumer", 3) = c.offer(3) else {
            Issue.record("straight to the waiting consumer")
            return
        }
        #expect(c.buffered == 0)
    }

    @Test func aFullChannelHoldsTheProducerUntilTheConsumerTakesOne() {
        var c = Channel(capacity: 2)
        _ = c.offer(1)
        guard case .full = c.offer(2) else {
            Issue.record("two of two: full")
            return
        }
        let parked = c.waitForRoom("producer")
        #expect(parked)
        guard case .event(1, "producer") = c.poll("consumer") else {
            Issue.record("taking one wakes the producer")
            return
        }
        let parkedAgain = c.waitForRoom("producer")
        #expect(!parkedAgain, "room again: no wait")
    }

    @Test func aFailureComesAfterTheBufferedEventsAndOnlyOnce() {
        var c = Channel(capacity: 4)
        _ = c.offer(1)
        #expect(c.finish(CoordinatorError(.storage, "boom")) == nil, "no one was parked")
        guard case .closed = c.offer(2) else {
            Issue.record("ended: nothing more")
            return
        }
        guard case .event(1, _) = c.poll("c"), case .failed(let e) = c.poll("c"), case .finished = c.poll("c") else {
            Issue.record("event, failure, end")
            return
        }
        #expect(e.code == .storage)
    }

    @Test func finishingWakesAParkedConsumer() {
        var c = Channel(capacity: 4)
        _ = c.poll("c")
        guard case (let consumer, .finished)? = c.finish(nil) else {
            Issue.record("the parked consumer sees the end")
            return
        }
        #expect(consumer == "c")
    }

    @Test func aSecondWaitingConsumerIsRefusedNotTrapped() {
        var c = Channel(capacity: 2)
        guard case .parked = c.poll("first"), case .failed(let e) = c.poll("second") else {
            Issue.record("the second concurrent consumer is refused")
            return
        }
        #expect(e.code == .badRequest)
        guard case .deliver("first", 1) = c.offer(1) else {
            Issue.record("the first consumer still waits for the next event")
            return
        }
    }

    @Test func cancelDropsEventsAndHandsBackBothWaiters() {
        var c = Channel(capacity: 1)
        _ = c.offer(1)
        let parked = c.waitForRoom("p")
        #expect(parked)
        let (consumer, producer) = c.cancel()
        #expect(consumer == nil)
        #expect(producer == "p")
        guard case .finished = c.poll("c"), case .closed = c.offer(2) else {
            Issue.record("cancelled: empty and closed")
            return
        }
        #expect(c.finish(nil) == nil)
    }
}
