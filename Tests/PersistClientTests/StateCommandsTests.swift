import PersistCodec
import PersistCore
import Testing

@testable import PersistClient

/// Builders shared by the state command, trace and state diff tests.
enum StateFixtures {
    static let shard = try! ShardID(parsing: "s0f1e2d3c-4b5a-4968-8776-655443322110")
    static let version = "0.1.0"

    /// A freshly initialized shard (seqno 1, with its own rollup), empty trace.
    static func initialState() -> ShardState {
        ShardState(
            shardID: shard, seqno: SeqNo(1), walltimeMs: 1_000, hostname: "host", applierVersion: version,
            keyCodec: "bytes", valueCodec: "unit", rollups: [SeqNo(1): HollowRollup(key: "r/1/init", encodedSizeBytes: 100)])
    }

    /// The state a command runs against: a copy with the next seqno and a later walltime.
    static func next(_ s: ShardState) -> ShardState {
        var n = s
        n.seqno = s.seqno.next!
        n.walltimeMs = s.walltimeMs + 1
        return n
    }

    static func antichain(_ t: UInt64?) -> Antichain { Antichain(element: t) }

    /// A batch over `[lower, upper)` with `rows` updates in one part (none when empty).
    /// The part key names the bounds, so equal arguments give equal batches.
    static func batch(_ lower: UInt64?, _ upper: UInt64?, rows: UInt64 = 1, since: Antichain = .minimum, tag: String = "") -> HollowBatch {
        let desc = BatchDescription(lower: antichain(lower), upper: antichain(upper), since: since)
        let parts = rows == 0 ? [] : [HollowBatchPart(key: "p/\(desc.lower)-\(desc.upper)\(tag)", encodedSizeBytes: rows * 10, rowCount: rows)]
        return HollowBatch(desc: desc, rowCount: rows, parts: parts)
    }

    /// The merged output for `request`: its description, the summed rows, one part.
    static func mergeOutput(_ request: MergeRequest, tag: String = "merged") -> HollowBatch {
        let rows = request.inputs.reduce(UInt64(0)) { $0 + $1.rowCount }
        return HollowBatch(
            desc: request.desc, rowCount: rows,
            parts: [HollowBatchPart(key: "p/\(tag)/\(request.desc.lower)-\(request.desc.upper)", encodedSizeBytes: rows, rowCount: rows)])
    }

    static func ids<K>(_ n: Int, seed: UInt64) -> [TaggedID<K>] {
        var g = SeededGenerator(seed: seed)
        return (0..<n).map { _ in TaggedID<K>(using: &g) }
    }
}

extension Work {
    /// The result if the command commits a new state.
    var committed: Result? {
        if case .commit(let r) = self { return r }
        return nil
    }

    /// The result if the command ends without writing a state.
    var noOpResult: Result? {
        if case .noOp(let r) = self { return r }
        return nil
    }
}

/// The pure state transitions of spec/persist.md §3-§6: each is run on the *next* state,
/// and either commits it or ends as a no-op.
@Suite struct StateCommandsTests {
    typealias F = StateFixtures
    static let writers: [WriterID] = F.ids(3, seed: 10)
    static let tokens: [IdempotencyToken] = F.ids(8, seed: 11)
    static let readers: [LeasedReaderID] = F.ids(4, seed: 12)
    static let criticals: [CriticalReaderID] = F.ids(3, seed: 13)

    /// Runs an append on the next state; returns the outcome and the state it left.
    static func append(
        _ s: ShardState, _ batch: HollowBatch, writer: Int = 0, token: Int, nowMs: UInt64 = 2_000
    ) -> (Work<AppendOutcome>, ShardState) {
        var n = F.next(s)
        let w = n.compareAndAppend(
            batch, writer: writers[writer], token: tokens[token], nowMs: nowMs, leaseMs: 60_000, purpose: "w\(writer)", mergeFanout: 4)
        return (w, n)
    }

    /// A state whose trace runs to `upper` through one batch written by writer 0 (token 0).
    static func stateAt(_ upper: UInt64) -> ShardState {
        let (w, s) = append(F.initialState(), F.batch(0, upper), token: 0)
        precondition(w.committed != nil)
        return s
    }

    // MARK: compare_and_append (spec §4.3, state side)

    @Test func boundsBeyondEachOtherAreInvalidAndWriteNothing() {
        let s = Self.stateAt(5)
        for (lower, upper) in [(UInt64?(7), UInt64?(5)), (nil, 5)] {
            let (w, after) = Self.append(s, F.batch(lower, upper, rows: 0), token: 1)
            #expect(w.noOpResult == .invalid(.invalidBounds(lower: F.antichain(lower), upper: F.antichain(upper))))
            #expect(after == F.next(s), "an invalid append leaves the state alone")
        }
    }

    @Test func dataForAnEmptyIntervalIsInvalid() {
        let s = Self.stateAt(5)
        let (w, after) = Self.append(s, F.batch(5, 5, rows: 3), token: 1)
        #expect(w.noOpResult == .invalid(.invalidEmptyTimeInterval(lower: Antichain(5), upper: Antichain(5))))
        #expect(after == F.next(s))
    }

    @Test func theSameTokenAgainIsAlreadyCommitted() {
        let s = Self.stateAt(5)
        // Token 0 is writer 0's most recent write: a retry of it, at the old or any other
        // bounds, reports the earlier commit instead of an upper mismatch.
        for batch in [F.batch(0, 5), F.batch(5, 9)] {
            let (w, after) = Self.append(s, batch, token: 0)
            #expect(w.noOpResult == .alreadyCommitted)
            #expect(after == F.next(s))
        }
        // The token belongs to writer 0 only.
        let (other, _) = Self.append(s, F.batch(0, 5), writer: 1, token: 0)
        #expect(other.noOpResult == .upperMismatch(shardUpper: Antichain(5), writerUpper: .minimum))
    }

    @Test func upperMismatchReportsTheShardUpperAndTheWritersLastUpper() {
        var s = Self.stateAt(5)  // writer 0 wrote [0, 5)
        // Writer 1 never wrote: its upper is the minimum.
        let (w1, a1) = Self.append(s, F.batch(0, 3), writer: 1, token: 1)
        #expect(w1.noOpResult == .upperMismatch(shardUpper: Antichain(5), writerUpper: .minimum))
        #expect(a1.writers[Self.writers[1]] == nil, "a failed append does not register the writer")
        // Writer 1 appends [5, 8); writer 0's next attempt at 5 is stale.
        let (w2, a2) = Self.append(s, F.batch(5, 8), writer: 1, token: 2)
        #expect(w2.committed != nil)
        s = a2
        let (w3, _) = Self.append(s, F.batch(5, 9), writer: 0, token: 3)
        #expect(w3.noOpResult == .upperMismatch(shardUpper: Antichain(8), writerUpper: Antichain(5)))
        // Ahead of the shard is a mismatch too.
        let (w4, _) = Self.append(s, F.batch(9, 12), writer: 1, token: 4)
        #expect(w4.noOpResult == .upperMismatch(shardUpper: Antichain(8), writerUpper: Antichain(8)))
    }

    @Test func aSuccessfulAppendPushesTheBatchAndRecordsTokenAndUpper() throws {
        let s0 = F.initialState()
        let b1 = F.batch(0, 4, rows: 2)
        let (w1, s1) = Self.append(s0, b1, token: 0, nowMs: 5_000)
        #expect(w1.committed == .appended(mergeRequests: []))
        #expect(s1.trace.batches == [b1])
        #expect(s1.upper == Antichain(4))
        let ws = try #require(s1.writers[Self.writers[0]])
        #expect(ws.mostRecentWriteToken == Self.tokens[0])
        #expect(ws.mostRecentWriteUpper == Antichain(4))
        #expect(ws.lastHeartbeatMs == 5_000 && ws.leaseDurationMs == 60_000 && ws.purpose == "w0")

        // A later append with an earlier clock keeps the newer heartbeat.
        let b2 = F.batch(4, 10, rows: 1)
        let (w2, s2) = Self.append(s1, b2, token: 1, nowMs: 3_000)
        #expect(w2.committed != nil)
        #expect(s2.trace.batches == [b1, b2])
        #expect(s2.upper == Antichain(10))
        let ws2 = try #require(s2.writers[Self.writers[0]])
        #expect(ws2.mostRecentWriteToken == Self.tokens[1] && ws2.mostRecentWriteUpper == Antichain(10))
        #expect(ws2.lastHeartbeatMs == 5_000)
        #expect(s2.since == .minimum, "appends do not move the since")
    }

    @Test func anAppendReturnsTheTracesMergeRequests() {
        var s = F.initialState()
        var outcomes: [AppendOutcome] = []
        for i in 0..<4 {
            let (w, n) = Self.append(s, F.batch(UInt64(i), UInt64(i + 1)), token: i)
            outcomes.append(w.committed!)
            s = n
        }
        #expect(outcomes.prefix(3).allSatisfy { $0 == .appended(mergeRequests: []) })
        guard case .appended(let requests) = outcomes[3] else {
            Issue.record("the fourth append commits")
            return
        }
        #expect(requests == s.trace.mergeRequests(fanout: 4))
        #expect(requests.count == 1 && requests.first?.inputs == s.trace.batches)
    }

    @Test func anEmptyIntervalAppendWithoutPartsCommitsButLeavesTheTrace() throws {
        let s = Self.stateAt(5)
        let (w, after) = Self.append(s, F.batch(5, 5, rows: 0), writer: 1, token: 1, nowMs: 9_000)
        #expect(w.committed == .appended(mergeRequests: []))
        #expect(after.trace == s.trace)
        let ws = try #require(after.writers[Self.writers[1]])
        #expect(ws.mostRecentWriteToken == Self.tokens[1] && ws.mostRecentWriteUpper == Antichain(5))
        // It is still checked against the shard upper.
        let (stale, _) = Self.append(s, F.batch(3, 3, rows: 0), writer: 1, token: 2)
        #expect(stale.noOpResult == .upperMismatch(shardUpper: Antichain(5), writerUpper: .minimum))
    }

    @Test func anEmptyBatchOverANonEmptyIntervalAdvancesTheUpper() {
        let s = Self.stateAt(5)
        let (w, after) = Self.append(s, F.batch(5, 9, rows: 0), token: 1)
        #expect(w.committed != nil)
        #expect(after.upper == Antichain(9))
        #expect(after.trace.batches.last == F.batch(5, 9, rows: 0))
    }

    @Test func expiringAWriterForgetsItsToken() {
        let s = Self.stateAt(5)
        var n = F.next(s)
        #expect(n.expireWriter(Self.writers[0]).committed == true)
        #expect(n.writers.isEmpty)
        #expect(n.expireWriter(Self.writers[0]).noOpResult == false)
        // With the token forgotten, a retry is judged on bounds alone.
        var m = F.next(n)
        let w = m.compareAndAppend(
            F.batch(0, 5), writer: Self.writers[0], token: Self.tokens[0], nowMs: 1, leaseMs: 1, purpose: "", mergeFanout: 4)
        #expect(w.noOpResult == .upperMismatch(shardUpper: Antichain(5), writerUpper: .minimum))
    }

    // MARK: Leased readers (spec §5.1)

    static func withSince(_ since: UInt64, seqno: Int = 10) -> ShardState {
        var s = stateAt(20)
        s.seqno = SeqNo(seqno)
        s.trace.since = Antichain(since)
        return s
    }

    @Test func registrationHoldsTheShardSinceAndTheTransitionsSeqno() throws {
        var n = F.next(Self.withSince(4))
        let state = try #require(
            n.registerLeasedReader(Self.readers[0], nowMs: 77, leaseMs: 900, purpose: "snap", useCriticalSince: false).committed)
        #expect(state == LeasedReaderState(seqno: SeqNo(11), since: Antichain(4), lastHeartbeatMs: 77, leaseDurationMs: 900, purpose: "snap"))
        #expect(n.leasedReaders[Self.readers[0]] == state)
        #expect(n.seqnoSince == SeqNo(11))
    }

    @Test func registrationCanStartFromTheCriticalReadersSince() throws {
        var n = F.next(Self.withSince(4))
        // Without critical readers the flag changes nothing.
        let plain = try #require(n.registerLeasedReader(Self.readers[0], nowMs: 1, leaseMs: 1, purpose: "", useCriticalSince: true).committed)
        #expect(plain.since == Antichain(4))
        n.criticalReaders[Self.criticals[0]] = CriticalReaderState(since: Antichain(9), opaque: 0, opaqueCodec: "u64", purpose: "")
        n.criticalReaders[Self.criticals[1]] = CriticalReaderState(since: Antichain(6), opaque: 0, opaqueCodec: "u64", purpose: "")
        let r = try #require(n.registerLeasedReader(Self.readers[1], nowMs: 1, leaseMs: 1, purpose: "", useCriticalSince: true).committed)
        #expect(r.since == Antichain(6))
        // Never behind the shard since, even if a critical reader is.
        n.criticalReaders[Self.criticals[2]] = CriticalReaderState(since: Antichain(1), opaque: 0, opaqueCodec: "u64", purpose: "")
        let r2 = try #require(n.registerLeasedReader(Self.readers[2], nowMs: 1, leaseMs: 1, purpose: "", useCriticalSince: true).committed)
        #expect(r2.since == Antichain(4))
    }

    @Test func heartbeatOfAnUnknownReaderCommitsFalse() throws {
        var n = F.next(Self.withSince(0))
        #expect(n.heartbeatLeasedReader(Self.readers[0], nowMs: 5).committed == false)
        #expect(n.leasedReaders.isEmpty, "a heartbeat does not register")
        _ = n.registerLeasedReader(Self.readers[0], nowMs: 100, leaseMs: 10, purpose: "", useCriticalSince: false)
        #expect(n.heartbeatLeasedReader(Self.readers[0], nowMs: 150).committed == true)
        #expect(n.leasedReaders[Self.readers[0]]?.lastHeartbeatMs == 150)
        #expect(n.heartbeatLeasedReader(Self.readers[0], nowMs: 120).committed == true)
        #expect(n.leasedReaders[Self.readers[0]]?.lastHeartbeatMs == 150, "heartbeats never go back")
    }

    @Test func downgradeNeverMovesSinceOrSeqnoBack() throws {
        var s = Self.withSince(5, seqno: 10)
        s.leasedReaders[Self.readers[0]] = LeasedReaderState(seqno: SeqNo(10), since: Antichain(5), lastHeartbeatMs: 0, leaseDurationMs: 1_000, purpose: "")
        var n = F.next(s)  // seqno 11
        // Backwards in both: committed, nothing moves (but the heartbeat does).
        #expect(n.downgradeSince(Self.readers[0], to: Antichain(3), outstandingSeqno: SeqNo(7), nowMs: 40).committed == Antichain(5))
        #expect(n.leasedReaders[Self.readers[0]]?.seqno == SeqNo(10))
        #expect(n.leasedReaders[Self.readers[0]]?.since == Antichain(5))
        #expect(n.leasedReaders[Self.readers[0]]?.lastHeartbeatMs == 40)
        // Forward: the seqno hold moves to the outstanding seqno, capped by this state's.
        n = F.next(n)  // seqno 12
        #expect(n.downgradeSince(Self.readers[0], to: Antichain(8), outstandingSeqno: SeqNo(30), nowMs: 41).committed == Antichain(8))
        #expect(n.leasedReaders[Self.readers[0]]?.seqno == SeqNo(12))
        #expect(n.since == Antichain(8))
        // To the empty frontier: the reader reads nothing any more.
        #expect(n.downgradeSince(Self.readers[0], to: .empty, outstandingSeqno: SeqNo(12), nowMs: 42).committed == Antichain.empty)
        #expect(n.since == .empty)
        // And never back from there.
        #expect(n.downgradeSince(Self.readers[0], to: Antichain(9), outstandingSeqno: SeqNo(12), nowMs: 43).committed == Antichain.empty)
        // An expired reader gets nil, committed.
        let gone = n.downgradeSince(Self.readers[1], to: Antichain(9), outstandingSeqno: SeqNo(12), nowMs: 43)
        #expect(gone.committed == .some(nil))
    }

    @Test func shardSinceIsTheMeetOfAllReadersAndNeverRegresses() {
        var g = SeededGenerator(seed: 14)
        var s = Self.withSince(0, seqno: 5)
        for (i, r) in Self.readers.enumerated() {
            s.leasedReaders[r] = LeasedReaderState(seqno: SeqNo(5), since: .minimum, lastHeartbeatMs: 0, leaseDurationMs: 1, purpose: "\(i)")
        }
        for c in Self.criticals {
            s.criticalReaders[c] = CriticalReaderState(since: .minimum, opaque: 0, opaqueCodec: "u64", purpose: "")
        }
        var moved = 0
        for _ in 0..<400 {
            var n = F.next(s)
            let before = n.since
            let target = Antichain(UInt64.random(in: 0...60, using: &g))
            if Bool.random(using: &g) {
                _ = n.downgradeSince(Self.readers.randomElement(using: &g)!, to: target, outstandingSeqno: n.seqno, nowMs: 0)
            } else {
                let c = Self.criticals.randomElement(using: &g)!
                let opaque = n.criticalReaders[c]!.opaque
                _ = n.compareAndDowngradeSince(c, expected: opaque, newOpaque: opaque + 1, newSince: target)
            }
            let meet = n.leasedReaders.values.map(\.since).reduce(Antichain.empty) { $0.meet($1) }
                .meet(n.criticalReaders.values.map(\.since).reduce(Antichain.empty) { $0.meet($1) })
            #expect(n.since == meet, "the since is the meet of every reader's since")
            #expect(before.lessEqual(n.since))
            if n.since != before { moved += 1 }
            s = n
        }
        #expect(moved > 5)
        // Expiring a reader does not move the since by itself (spec §3.6); the next
        // recomputation does, to the meet of those left.
        var n = F.next(s)
        let sinceBefore = n.since
        let laggard = n.leasedReaders.min { ($0.value.since.element ?? .max) < ($1.value.since.element ?? .max) }!.key
        #expect(n.expireLeasedReader(laggard).committed == true)
        #expect(n.since == sinceBefore)
        n.recomputeSince()
        let rest = n.leasedReaders.values.map(\.since) + n.criticalReaders.values.map(\.since)
        #expect(n.since == rest.reduce(Antichain.empty) { $0.meet($1) }.join(sinceBefore))
    }

    @Test func withoutReadersTheSinceStays() {
        var n = F.next(Self.withSince(7))
        n.recomputeSince()
        #expect(n.since == Antichain(7))
        // A reader behind the shard since (registered before it advanced) cannot pull it back.
        n.leasedReaders[Self.readers[0]] = LeasedReaderState(seqno: n.seqno, since: Antichain(2), lastHeartbeatMs: 0, leaseDurationMs: 1, purpose: "")
        n.recomputeSince()
        #expect(n.since == Antichain(7))
    }

    @Test func expiryDropsLapsedLeasesButNeverCriticalReaders() {
        var s = Self.withSince(0)
        s.leasedReaders[Self.readers[0]] = LeasedReaderState(seqno: SeqNo(1), since: .minimum, lastHeartbeatMs: 100, leaseDurationMs: 50, purpose: "")
        s.leasedReaders[Self.readers[1]] = LeasedReaderState(seqno: SeqNo(1), since: .minimum, lastHeartbeatMs: 100, leaseDurationMs: 500, purpose: "")
        s.writers[Self.writers[1]] = WriterState(
            lastHeartbeatMs: 100, leaseDurationMs: 60, mostRecentWriteToken: Self.tokens[5], mostRecentWriteUpper: .minimum, purpose: "")
        s.criticalReaders[Self.criticals[0]] = CriticalReaderState(since: .minimum, opaque: 0, opaqueCodec: "u64", purpose: "")
        let writer0 = s.writers[Self.writers[0]]!  // heartbeat 2000, lease 60000

        var n = s
        n.expire(nowMs: 150)  // exactly at the end of reader 0's lease: still held
        #expect(n.leasedReaders.count == 2 && n.writers.count == 2)
        n.expire(nowMs: 151)
        #expect(Set(n.leasedReaders.keys) == [Self.readers[1]])
        #expect(Set(n.writers.keys) == [Self.writers[0], Self.writers[1]])
        n.expire(nowMs: 161)
        #expect(Set(n.writers.keys) == [Self.writers[0]])
        n.expire(nowMs: writer0.lastHeartbeatMs + writer0.leaseDurationMs + 1)
        #expect(n.leasedReaders.isEmpty && n.writers.isEmpty)
        n.expire(nowMs: UInt64.max)
        #expect(n.criticalReaders.count == 1, "critical readers never expire")
    }

    @Test func aLeaseThatCannotRunOutNeverExpires() {
        var n = Self.withSince(0)
        n.leasedReaders[Self.readers[0]] = LeasedReaderState(
            seqno: SeqNo(1), since: .minimum, lastHeartbeatMs: 1_700_000_000_000, leaseDurationMs: .max, purpose: "")
        n.expire(nowMs: 1_700_000_000_001)
        #expect(n.leasedReaders.count == 1, "a lease too long to add up never runs out")
    }

    @Test func expiringALeasedReaderIsANoOpWhenItIsGone() {
        var n = F.next(Self.withSince(0))
        _ = n.registerLeasedReader(Self.readers[0], nowMs: 0, leaseMs: 1, purpose: "", useCriticalSince: false)
        #expect(n.expireLeasedReader(Self.readers[0]).committed == true)
        #expect(n.expireLeasedReader(Self.readers[0]).noOpResult == false)
    }

    // MARK: Critical readers (spec §5.2)

    @Test func criticalRegistrationStartsAtTheSinceAndReattachesUnchanged() throws {
        var n = F.next(Self.withSince(4))
        let id = Self.criticals[0]
        let fresh = try #require(n.registerCriticalReader(id, initialOpaque: 0, opaqueCodec: "u64", purpose: "ctl").committed)
        #expect(fresh == CriticalReaderState(since: Antichain(4), opaque: 0, opaqueCodec: "u64", purpose: "ctl"))
        // Move it on, then let the shard since pass its original value.
        _ = n.compareAndDowngradeSince(id, expected: 0, newOpaque: 7, newSince: Antichain(6))
        // Re-attaching keeps since and token; same purpose writes nothing.
        #expect(n.registerCriticalReader(id, initialOpaque: 0, opaqueCodec: "u64", purpose: "ctl").noOpResult
            == CriticalReaderState(since: Antichain(6), opaque: 7, opaqueCodec: "u64", purpose: "ctl"))
        let renamed = try #require(n.registerCriticalReader(id, initialOpaque: 0, opaqueCodec: "u64", purpose: "ctl2").committed)
        #expect(renamed == CriticalReaderState(since: Antichain(6), opaque: 7, opaqueCodec: "u64", purpose: "ctl2"))
    }

    @Test func aWrongOpaqueIsReportedAndCommitted() {
        var n = F.next(Self.withSince(4))
        let id = Self.criticals[0]
        _ = n.registerCriticalReader(id, initialOpaque: 3, opaqueCodec: "u64", purpose: "")
        let before = n
        let w = n.compareAndDowngradeSince(id, expected: 2, newOpaque: 9, newSince: Antichain(10))
        #expect(w.committed == SinceDowngradeResult.opaqueMismatch(actual: 3, since: Antichain(4)))
        #expect(n == before, "a fenced-off downgrade changes nothing")
        // An unknown id has nothing to say.
        #expect(n.compareAndDowngradeSince(Self.criticals[1], expected: 3, newOpaque: 4, newSince: Antichain(5)).noOpResult == .some(nil))
    }

    @Test func aMatchingOpaqueMovesTheSinceForwardOnly() {
        var n = F.next(Self.withSince(4))
        let id = Self.criticals[0]
        _ = n.registerCriticalReader(id, initialOpaque: 0, opaqueCodec: "u64", purpose: "")
        #expect(n.compareAndDowngradeSince(id, expected: 0, newOpaque: 1, newSince: Antichain(9)).committed == SinceDowngradeResult.downgraded(since: Antichain(9)))
        #expect(n.since == Antichain(9), "the only reader carries the shard since")
        // Backwards: the token still advances, the since does not.
        #expect(n.compareAndDowngradeSince(id, expected: 1, newOpaque: 2, newSince: Antichain(3)).committed == SinceDowngradeResult.downgraded(since: Antichain(9)))
        #expect(n.criticalReaders[id]?.opaque == 2)
        #expect(n.since == Antichain(9))
        // The old token is now fenced off.
        #expect(n.compareAndDowngradeSince(id, expected: 1, newOpaque: 3, newSince: Antichain(20)).committed == SinceDowngradeResult.opaqueMismatch(actual: 2, since: Antichain(9)))
        #expect(n.expireCriticalReader(id).committed == true)
        #expect(n.expireCriticalReader(id).noOpResult == false)
    }

    // MARK: Rollups (spec §6.3)

    @Test func addingARollupTwice() {
        var n = F.next(F.initialState())
        let r = HollowRollup(key: "r/5/a", encodedSizeBytes: 10)
        #expect(n.addRollup(at: SeqNo(5), r).committed == true)
        #expect(n.rollups[SeqNo(5)] == r)
        #expect(n.addRollup(at: SeqNo(5), r).noOpResult == true, "the same rollup again was applied")
        #expect(n.addRollup(at: SeqNo(5), HollowRollup(key: "r/5/b", encodedSizeBytes: 10)).noOpResult == false)
        #expect(n.rollups[SeqNo(5)] == r, "the first one stays")
        #expect(n.latestRollup?.seqno == SeqNo(5))
        // A rollup older than the latest one is of no use: refused, nothing written.
        let before = n
        #expect(n.addRollup(at: SeqNo(3), HollowRollup(key: "r/3/a", encodedSizeBytes: 10)).noOpResult == false)
        #expect(n == before)
    }

    @Test func removingRollupsNeverRemovesTheLatest() {
        var n = F.next(F.initialState())
        let rollups = [1, 5, 9].map { (SeqNo($0), HollowRollup(key: "r/\($0)/x", encodedSizeBytes: 1)) }
        n.rollups = Dictionary(uniqueKeysWithValues: rollups)
        // A stale description of a rollup is not removed.
        #expect(n.removeRollups([(SeqNo(1), HollowRollup(key: "r/1/other", encodedSizeBytes: 1))]).noOpResult == 0)
        #expect(n.removeRollups([rollups[2]]).noOpResult == 0)
        #expect(n.removeRollups(rollups).committed == 2)
        #expect(Array(n.rollups.keys) == [SeqNo(9)])
        #expect(n.removeRollups(rollups).noOpResult == 0)
    }

    // MARK: Garbage collection (spec §6.2)

    /// A state at `seqno` with no readers (so seqno_since is the seqno) and `lastGCReq`.
    static func gcState(seqno: UInt64, lastGC: UInt64, writers: Bool = false) -> ShardState {
        var s = F.initialState()
        s.seqno = SeqNo(seqno)!
        s.lastGCReq = SeqNo(lastGC)!
        if writers {
            s.writers[Self.writers[0]] = WriterState(
                lastHeartbeatMs: 0, leaseDurationMs: 1, mostRecentWriteToken: Self.tokens[0], mostRecentWriteUpper: .minimum, purpose: "")
        }
        return s
    }

    /// The smallest gap between seqno_since and the last GC that assigns a GC at `seqno`.
    static func observedThreshold(seqno: UInt64) -> UInt64 {
        for gap in UInt64(1)...min(64, seqno) {
            var s = gcState(seqno: seqno, lastGC: seqno - gap)
            if s.maybeAssignGC(isWrite: true) != nil { return gap }
        }
        return 0
    }

    /// spec §6.2: `max(1, log2(next_power_of_two(seqno)))`.
    static func specThreshold(seqno: UInt64) -> UInt64 {
        seqno <= 1 ? 1 : max(1, UInt64(UInt64.bitWidth - (seqno - 1).leadingZeroBitCount))
    }

    @Test func theGCThresholdGrowsWithLog2OfTheSeqno() {
        // At powers of two the threshold is exactly the exponent.
        for e in [1, 2, 3, 5, 10, 20, 40] {
            #expect(Self.observedThreshold(seqno: 1 << e) == UInt64(e), "seqno 2^\(e)")
        }
        #expect(Self.observedThreshold(seqno: 1) == 1)
        // And it never shrinks as the seqno grows.
        var previous: UInt64 = 0
        for seqno in stride(from: UInt64(64), through: 5_000, by: 37) {
            let t = Self.observedThreshold(seqno: seqno)
            #expect(t >= previous)
            previous = t
        }
    }

    @Test func theGCThresholdRoundsTheLog2Up() {
        // Between powers of two the reference rounds up: at seqno 1000 the next power of
        // two is 1024, so nine versions are not yet enough.
        for seqno: UInt64 in [3, 5, 6, 7, 100, 1_000, 1_025] {
            #expect(Self.observedThreshold(seqno: seqno) == Self.specThreshold(seqno: seqno), "seqno \(seqno)")
        }
    }

    @Test func gcIsAssignedToWritersFirstAndRecordsTheRequest() throws {
        // Writers exist: a reader's transition does not get it, a write does.
        var withWriters = Self.gcState(seqno: 64, lastGC: 10, writers: true)
        #expect(withWriters.maybeAssignGC(isWrite: false) == nil)
        #expect(withWriters.lastGCReq == SeqNo(10), "an unassigned GC leaves last_gc_req alone")
        #expect(withWriters.maybeAssignGC(isWrite: true) == GCRequest(newSeqnoSince: SeqNo(64)))
        #expect(withWriters.lastGCReq == SeqNo(64))
        // Just assigned: the next transition does not get it again.
        withWriters.seqno = SeqNo(65)
        #expect(withWriters.maybeAssignGC(isWrite: true) == nil)
        // No writers: anyone gets it.
        var noWriters = Self.gcState(seqno: 64, lastGC: 10)
        #expect(noWriters.maybeAssignGC(isWrite: false) == GCRequest(newSeqnoSince: SeqNo(64)))
        #expect(noWriters.lastGCReq == SeqNo(64))
    }

    @Test func gcNeverPassesALeasedReadersSeqnoHold() {
        var s = Self.gcState(seqno: 100, lastGC: 0, writers: true)
        s.leasedReaders[Self.readers[0]] = LeasedReaderState(seqno: SeqNo(3), since: .minimum, lastHeartbeatMs: 0, leaseDurationMs: 1, purpose: "")
        s.leasedReaders[Self.readers[1]] = LeasedReaderState(seqno: SeqNo(60), since: .minimum, lastHeartbeatMs: 0, leaseDurationMs: 1, purpose: "")
        // Critical readers hold no seqno.
        s.criticalReaders[Self.criticals[0]] = CriticalReaderState(since: .minimum, opaque: 0, opaqueCodec: "u64", purpose: "")
        #expect(s.seqnoSince == SeqNo(3))
        var held = s
        #expect(held.maybeAssignGC(isWrite: true) == nil, "3 versions past the last GC are below the threshold at seqno 100")
        var released = s
        released.leasedReaders[Self.readers[0]]?.seqno = SeqNo(40)
        #expect(released.seqnoSince == SeqNo(40))
        #expect(released.maybeAssignGC(isWrite: true) == GCRequest(newSeqnoSince: SeqNo(40)))
        #expect(released.lastGCReq == SeqNo(40))
        // A reader behind the last GC (it cannot be, but the state may say so) gets nothing.
        var behind = Self.gcState(seqno: 100, lastGC: 50)
        behind.leasedReaders[Self.readers[0]] = LeasedReaderState(seqno: SeqNo(20), since: .minimum, lastHeartbeatMs: 0, leaseDurationMs: 1, purpose: "")
        #expect(behind.maybeAssignGC(isWrite: true) == nil)
        #expect(behind.lastGCReq == SeqNo(50), "last_gc_req never regresses")
    }

    // MARK: rollupDue (spec §6.3)

    static func rollupDue(seqno: UInt64, latest: UInt64?, threshold: UInt64) -> Bool {
        var s = F.initialState()
        s.rollups = latest.map { [SeqNo($0)!: HollowRollup(key: "r/\($0)/x", encodedSizeBytes: 1)] } ?? [:]
        s.seqno = SeqNo(seqno)!
        let due = s.rollupDue(threshold: threshold)
        if let due { #expect(due == s.seqno, "a due rollup is of this state") }
        return due != nil
    }

    // Whether a rollup between one and two thresholds behind is due only on multiples of
    // the threshold (so processes rarely race to write the same one) or at every seqno is
    // a tuning choice; these tests hold for both.

    @Test func rollupsAreDueOnMultiplesOfTheThreshold() {
        #expect(Self.rollupDue(seqno: 128, latest: nil, threshold: 128))
        #expect(Self.rollupDue(seqno: 256, latest: 128, threshold: 128))
        #expect(Self.rollupDue(seqno: 384, latest: 255, threshold: 128))
        #expect(Self.rollupDue(seqno: 10, latest: nil, threshold: 10))
        #expect(!Self.rollupDue(seqno: 255, latest: 128, threshold: 128))
        // A multiple of the threshold less than a threshold past the latest rollup is not.
        #expect(!Self.rollupDue(seqno: 256, latest: 200, threshold: 128))
        #expect(!Self.rollupDue(seqno: 128, latest: 128, threshold: 128))
        #expect(!Self.rollupDue(seqno: 128, latest: 1, threshold: 128))
    }

    @Test func overdueRollupsAreDueAtEverySeqno() {
        #expect(Self.rollupDue(seqno: 330, latest: 74, threshold: 128))
        #expect(Self.rollupDue(seqno: 331, latest: 74, threshold: 128))
        // Exhaustively over a window: due when two thresholds behind, and when one
        // threshold behind on a multiple; never when less than one threshold behind.
        for latest: UInt64 in [0, 3, 10, 17] {
            for seqno in latest...(latest + 45) {
                let behind = seqno - latest
                let due = Self.rollupDue(seqno: seqno, latest: latest, threshold: 10)
                if behind < 10 { #expect(!due, "seqno \(seqno) latest \(latest)") }
                if behind >= 20 { #expect(due, "seqno \(seqno) latest \(latest)") }
                if behind >= 10 && seqno % 10 == 0 { #expect(due, "seqno \(seqno) latest \(latest)") }
            }
        }
        #expect(!Self.rollupDue(seqno: 1_000, latest: 0, threshold: 0), "a zero threshold disables rollups")
    }
}
