import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import Testing

@testable import TxnWAL

/// Ports of the txn_cache.rs tests (spec/txn-wal.md §6.4), plus seeded property checks of
/// `TxnsCacheState` against a model that keeps the whole history.
@Suite struct TxnsCacheTests {
    typealias Pushed = (entry: TxnsEntry, time: Timestamp, diff: Int64)

    static func snap(_ d: ShardID, _ latestWrite: Timestamp?, _ asOf: Timestamp, _ emptyTo: Timestamp) -> DataSnapshotPlan {
        DataSnapshotPlan(dataID: d, latestWrite: latestWrite, asOf: asOf, emptyTo: emptyTo)
    }

    // MARK: txns_cache_data_snapshot_and_listen_next

    /// One row of the reference table: with progress `ts + 1`, the snapshot at `ts` and the
    /// listen answers at `ts` and `ts + 1`.
    static func checkRow(
        _ c: inout TxnsCacheState, _ d: ShardID, ts: Timestamp, snapshot: DataSnapshotPlan, listen: DataListenNext,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        try c.pushEntries([], progress: ts + 1)
        #expect(c.progressExclusive == ts + 1, sourceLocation: sourceLocation)
        #expect(c.dataSnapshot(d, asOf: ts) == snapshot, "snapshot at \(ts)", sourceLocation: sourceLocation)
        #expect(c.dataListenNext(d, ts) == listen, "listen at \(ts)", sourceLocation: sourceLocation)
        #expect(c.dataListenNext(d, ts + 1) == .waitForTxnsProgress, "listen at \(ts + 1)", sourceLocation: sourceLocation)
    }

    /// Pushes `entries` without moving progress (the next row moves it).
    static func push(_ c: inout TxnsCacheState, _ entries: [Pushed]) throws {
        try c.pushEntries(entries, progress: c.progressExclusive)
        #expect(c.validate() == nil, "\(c.validate() ?? "")")
    }

    /// History of `d0`: registered over [2, 8] and [15, 16] (the forget at 11 closes the first
    /// interval), direct writes at 1 and 13 (invisible to the cache), txn writes at 4, 5, 7
    /// tidied at 8, 9, 10.
    @Test func txnsCacheDataSnapshotAndListenNext() throws {
        let d0 = ShardID.random()
        let ds = { (w: Timestamp?, asOf: Timestamp, emptyTo: Timestamp) in Self.snap(d0, w, asOf, emptyTo) }
        var c = TxnsCacheState(txnsID: ShardID.random(), initTs: 0)

        // Empty cache. (data_snapshot at 0 is a precondition failure here: not tested.)
        #expect(c.progressExclusive == 0)
        #expect(c.dataListenNext(d0, 0) == .waitForTxnsProgress)

        // 0: never registered.
        try Self.checkRow(&c, d0, ts: 0, snapshot: ds(nil, 0, 1), listen: .readDataTo(1))
        // 1: a direct write; the cache knows nothing of d0, so read the shard normally.
        try Self.checkRow(&c, d0, ts: 1, snapshot: ds(nil, 1, 2), listen: .readDataTo(2))
        // 2: registered.
        try Self.push(&c, [(.register(shard: d0, ts: 2), 2, 1)])
        try Self.checkRow(&c, d0, ts: 2, snapshot: ds(nil, 2, 3), listen: .readDataTo(3))
        // 3: registered, not written.
        try Self.checkRow(&c, d0, ts: 3, snapshot: ds(nil, 3, 4), listen: .emitLogicalProgress(4))
        // 4: written through txns.
        try Self.push(&c, [(.append(shard: d0, ts: 4, batch: [4]), 4, 1)])
        try Self.checkRow(&c, d0, ts: 4, snapshot: ds(4, 4, 5), listen: .readDataTo(5))
        // 5: written through txns, right after a write.
        try Self.push(&c, [(.append(shard: d0, ts: 5, batch: [5]), 5, 1)])
        try Self.checkRow(&c, d0, ts: 5, snapshot: ds(5, 5, 6), listen: .readDataTo(6))
        // 6: registered, not written, after a write.
        try Self.checkRow(&c, d0, ts: 6, snapshot: ds(5, 6, 7), listen: .emitLogicalProgress(7))
        // 7: written through txns, not right after a write.
        try Self.push(&c, [(.append(shard: d0, ts: 7, batch: [7]), 7, 1)])
        try Self.checkRow(&c, d0, ts: 7, snapshot: ds(7, 7, 8), listen: .readDataTo(8))
        // 8, 9, 10: the writes at 4, 5 and 7 are applied and tidied.
        try Self.push(&c, [(.append(shard: d0, ts: 4, batch: [4]), 8, -1)])
        try Self.checkRow(&c, d0, ts: 8, snapshot: ds(7, 8, 9), listen: .emitLogicalProgress(9))
        try Self.push(&c, [(.append(shard: d0, ts: 5, batch: [5]), 9, -1)])
        try Self.checkRow(&c, d0, ts: 9, snapshot: ds(7, 9, 10), listen: .emitLogicalProgress(10))
        try Self.push(&c, [(.append(shard: d0, ts: 7, batch: [7]), 10, -1)])
        try Self.checkRow(&c, d0, ts: 10, snapshot: ds(nil, 10, 11), listen: .emitLogicalProgress(11))
        // 11: forgotten (the forget carries its own time, not the registration's).
        try Self.push(&c, [(.register(shard: d0, ts: 11), 11, -1)])
        try Self.checkRow(&c, d0, ts: 11, snapshot: ds(nil, 11, 12), listen: .readDataTo(12))
        // 12: neither registered nor written; this read would block until the write at 13.
        try Self.checkRow(&c, d0, ts: 12, snapshot: ds(nil, 12, 13), listen: .readDataTo(13))
        // 13: written directly.
        try Self.checkRow(&c, d0, ts: 13, snapshot: ds(nil, 13, 14), listen: .readDataTo(14))
        // 14: neither registered nor written; this read would block until the register at 15.
        try Self.checkRow(&c, d0, ts: 14, snapshot: ds(nil, 14, 15), listen: .readDataTo(15))
        // 15: registered again.
        try Self.push(&c, [(.register(shard: d0, ts: 15), 15, 1)])
        try Self.checkRow(&c, d0, ts: 15, snapshot: ds(nil, 15, 16), listen: .readDataTo(16))
        // 16: forgotten right after the registration.
        try Self.push(&c, [(.register(shard: d0, ts: 16), 16, -1)])
        try Self.checkRow(&c, d0, ts: 16, snapshot: ds(nil, 16, 17), listen: .readDataTo(17))

        // With the whole history known, earlier answers change: every write is tidied,
        // and a reader anywhere below 17 may read the physical shard straight to 17.
        #expect(c.progressExclusive == 17)
        for x: Timestamp in 0...16 {
            #expect(c.dataSnapshot(d0, asOf: x) == ds(nil, x, x + 1), "snapshot at \(x)")
            #expect(c.dataListenNext(d0, x) == .readDataTo(17), "listen at \(x)")
        }
        #expect(c.dataListenNext(d0, 17) == .waitForTxnsProgress)
        #expect(c.validate() == nil, "\(c.validate() ?? "")")
    }

    // MARK: empty_to

    /// `emptyTo` is always a real bound: `applyLE(asOf)` alone must unblock a read at `asOf`
    /// even when a later commit (here at 5) is known and unapplied.
    @Test(.timeLimit(.minutes(1))) func emptyTo() async throws {
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let (d0, _) = try await txns.expectRegister(1)
        for ts: Timestamp in [3, 5] {
            var txn = txns.begin()
            txn.write(d0, key: Array("3".utf8), diff: 1)
            _ = try await txn.commitAt(txns, ts).get()
        }
        try await txns.readCache.updateGt(5)
        _ = try await txns.applyLE(4)
        let snap = txns.readCache.state.dataSnapshot(d0, asOf: 4)
        let dataRead = try await reader(client, d0)
        // Must not deadlock: nothing will ever apply the commit at 5.
        let contents = try await DataSnapshot(snap).snapshotAndFetch(client: client, reader: dataRead)
        #expect(contents.count == 1)
        #expect(contents.map(LogRow.init) == [LogRow("3", 4, 1)])
        // The scenario played out as intended.
        #expect(snap.emptyTo == 5)
        #expect(snap.latestWrite == 3)
        try await dataRead.expire()
    }

    // MARK: data_times_validate

    /// Builds `DataTimes` from alternating register/forget times and a write list.
    static func dataTimes(_ registerForget: [Timestamp], _ writes: [Timestamp]) -> DataTimes {
        var dt = DataTimes(registered: [], writes: [])
        for x in registerForget {
            if let last = dt.registered.last, last.forgetTs == nil {
                dt.registered[dt.registered.count - 1].forgetTs = x
            } else {
                dt.registered.append(DataRegistered(registerTs: x, forgetTs: nil))
            }
        }
        dt.writes = .init(writes)
        return dt
    }

    @Test(arguments: [
        ([1], [2, 3]) as ([Timestamp], [Timestamp]),
        ([1, 3], [2]),
        ([1, 3, 5], [2, 6, 7]),
        ([1, 3, 5], [2, 6, 7]),
        ([1, 1], [1]),
    ])
    func dataTimesValidateAccepts(_ registerForget: [Timestamp], _ writes: [Timestamp]) {
        let dt = Self.dataTimes(registerForget, writes)
        #expect(dt.validate() == nil, "\(registerForget) \(writes): \(dt.validate() ?? "")")
    }

    @Test(arguments: [
        ([], []) as ([Timestamp], [Timestamp]),
        ([1], [0]),
        ([1, 3], [4]),
        ([1, 3, 5], [4]),
        ([1, 4], [3, 2]),
    ])
    func dataTimesValidateRejects(_ registerForget: [Timestamp], _ writes: [Timestamp]) {
        #expect(Self.dataTimes(registerForget, writes).validate() != nil, "\(registerForget) \(writes)")
    }

    // MARK: regression_compact_latest_write

    /// A commit at 5, tidied at 20, with the txns since compacted to 10: a cache started at
    /// the since that has not yet seen the tidy sees the commit at update time 10, and must
    /// still report the commit's own time 5 as the latest write (10 never existed, so waiting
    /// for it to be applied would hang).
    @Test(.timeLimit(.minutes(1))) func regressionCompactLatestWrite() async throws {
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let log = txns.newLog()
        let (d0, _) = try await txns.expectRegister(1)
        let tidy5 = try await txns.expectCommitAt(5, d0, ["5"], log)
        try await txns.expectCommitAt(15, d0, ["15"], log)
        _ = try await txns.tidyAt(20, tidy5).get()
        try await txns.readCache.updateGt(20)
        #expect(txns.readCache.state.minUnappliedTs() == 15)
        try await txns.compactTo(10)

        // Upstream opens a leased reader, downgrades it to 10 and builds a cache from it;
        // our cache opens at the txns shard's critical since, which compact_to moved to 10.
        let cache = try await TxnsCache.open(client: client, txnsID: txns.txnsID)
        #expect(cache.state.initTs == 10)
        try await cache.updateGt(15)
        // The scenario needs a cache that has not seen the tidy at 20.
        #expect(cache.progress <= 20)
        let snap = cache.state.dataSnapshot(d0, asOf: 12)
        #expect(snap.latestWrite == 5)
        #expect(snap.emptyTo == 13)
        // And the read it plans finishes, with the right contents.
        #expect(try await log.assertSnapshot(d0, asOf: 12))
        let dataRead = try await reader(client, d0)
        let rows = try await DataSnapshot(snap).snapshotAndFetch(client: client, reader: dataRead)
        #expect(rows.map(LogRow.init) == [LogRow("5", 12, 1)])
        try await dataRead.expire()
        try await cache.expire()
    }

    // MARK: regression_ts_sort

    /// Entries are applied in the order of their embedded times, not their (possibly
    /// compacted) update times nor their arrival order: a register at 1 and a forget at 2,
    /// both at update time 2 and delivered forget first, are a valid history.
    @Test(.timeLimit(.minutes(1))) func regressionTsSort() async throws {
        let client = newTestClient()
        let txns = try await TxnsHandle.expectOpen(client)
        let cache = try await TxnsCache.expectOpen(client, txns.txnsID, initTs: 0)
        // Our cache's state is read-only from outside, so the entries go to a copy of it.
        var state = cache.state
        let d0 = ShardID.random()
        try state.pushEntries([(.register(shard: d0, ts: 2), 2, -1), (.register(shard: d0, ts: 1), 2, 1)], progress: 3)
        #expect(state.validate() == nil, "\(state.validate() ?? "")")
        #expect(state.progressExclusive == 3)
        #expect(!state.registeredAtProgress(d0, 3))
        #expect(state.datas[d0]?.registered.last == DataRegistered(registerTs: 1, forgetTs: 2))
        // Only the forget kept its own time, so only it may still lack its fill.
        #expect(state.unappliedRegisters.map(\.ts) == [2])
        try await cache.expire()
    }

    // MARK: data_compacted

    /// A cache started at a since of 10 knows nothing below it: a snapshot below 10 fills up to
    /// 10, not just past the as_of. (Listening below 10 is a precondition failure.)
    @Test func dataCompacted() throws {
        let d0 = ShardID.random()
        var c = TxnsCacheState(txnsID: ShardID.random(), initTs: 10)
        try c.pushEntries([], progress: 20)
        #expect(c.dataSnapshot(d0, asOf: 0) == Self.snap(d0, nil, 0, 10))
        #expect(c.dataSnapshot(d0, asOf: 9) == Self.snap(d0, nil, 9, 10))
        #expect(c.dataSnapshot(d0, asOf: 10) == Self.snap(d0, nil, 10, 11))
        #expect(c.dataListenNext(d0, 10) == .readDataTo(20))
    }

    // MARK: Compaction across shards

    /// One txn writes d0 and d1 at 3, another writes d0 at 7, and a tidy at 8 retracts both
    /// batches at 3, d0's first. Only once d1's batch is retracted does the first unapplied
    /// time move to 7, and d0's write at 3 must be compacted away then too.
    @Test func retractionCompactsOtherShards() throws {
        let d0 = ShardID.random()
        let d1 = ShardID.random()
        var c = TxnsCacheState(txnsID: ShardID.random(), initTs: 0)
        try c.pushEntries([(.register(shard: d0, ts: 1), 1, 1), (.register(shard: d1, ts: 1), 1, 1)], progress: 2)
        try c.pushEntries([(.append(shard: d0, ts: 3, batch: [0, 3]), 3, 1), (.append(shard: d1, ts: 3, batch: [1, 3]), 3, 1)], progress: 4)
        try c.pushEntries([(.append(shard: d0, ts: 7, batch: [0, 7]), 7, 1)], progress: 8)
        try c.pushEntries(
            [(.append(shard: d0, ts: 3, batch: [0, 3]), 8, -1), (.append(shard: d1, ts: 3, batch: [1, 3]), 8, -1)], progress: 9)
        #expect(c.validate() == nil, "\(c.validate() ?? "")")
        #expect(c.datas[d0]?.writes == [7])
        #expect(c.datas[d1]?.writes == [3], "the latest write is always kept")
        #expect(c.minUnappliedTs() == 1, "the registrations were never marked applied")
        c.markRegisterApplied(8)
        #expect(c.minUnappliedTs() == 7)
        #expect(c.validate() == nil, "\(c.validate() ?? "")")
        #expect(c.dataSnapshot(d0, asOf: 8).latestWrite == 7)
        #expect(c.dataSnapshot(d1, asOf: 8).latestWrite == nil)
    }

    // MARK: Typed errors where the reference panics

    @Test func invalidTxnsContentsThrow() throws {
        let d0 = ShardID.random()
        func fresh() -> TxnsCacheState { TxnsCacheState(txnsID: ShardID.random(), initTs: 0) }
        func expectViolation(_ entries: [Pushed], after setup: [Pushed] = [], _ what: Comment) throws {
            var c = fresh()
            try c.pushEntries(setup, progress: 1)
            #expect(throws: TxnsInvariantViolation.self, what) { try c.pushEntries(entries, progress: 10) }
        }
        let reg: Pushed = (.register(shard: d0, ts: 0), 0, 1)
        try expectViolation([(.register(shard: d0, ts: 3), 3, 2)], "a diff other than +-1")
        try expectViolation([(.register(shard: d0, ts: 3), 3, -1)], "a forget of a shard never registered")
        try expectViolation([(.register(shard: d0, ts: 3), 3, 1)], after: [reg], "a register while registered")
        try expectViolation([(.append(shard: d0, ts: 3, batch: [1]), 3, 1)], "a commit to a shard never registered")
        try expectViolation(
            [(.register(shard: d0, ts: 2), 2, -1), (.append(shard: d0, ts: 3, batch: [1]), 3, 1)], after: [reg],
            "a commit to a forgotten shard")
        try expectViolation(
            [(.append(shard: d0, ts: 2, batch: [1]), 2, 1), (.append(shard: d0, ts: 3, batch: [1]), 3, 1)], after: [reg],
            "the same batch committed twice")
        try expectViolation([(.append(shard: d0, ts: 2, batch: [1]), 4, -1)], after: [reg], "a retraction of an unknown batch")
    }

    // MARK: Seeded property checks

    @Test(arguments: [1, 2, 3, 4, 5, 6, 7, 8] as [UInt64])
    func randomHistoriesKeepInvariants(seed: UInt64) throws {
        var rng = SeededGenerator(seed: seed)
        var model = CacheModel(shards: (0..<4).map { _ in ShardID(using: &rng) }, rng: &rng)
        var state = TxnsCacheState(txnsID: ShardID(using: &rng), initTs: model.initTs)
        try state.pushEntries(model.initialSnapshot(), progress: model.initTs + 1)
        model.progress = model.initTs + 1
        try model.check(state)
        for step in 0..<150 {
            let (entries, progress) = model.step(using: &rng)
            try state.pushEntries(entries, progress: progress)
            if Int.random(in: 0..<4, using: &rng) == 0 {
                // A handle applies registration fills up to some time it has reached.
                let t = Timestamp.random(in: model.initTs...progress - 1, using: &rng)
                state.markRegisterApplied(t)
                model.markRegisterApplied(t)
            }
            try model.check(state, full: step % 10 == 9)
        }
    }
}

// MARK: - A model of the txns shard with its whole history

/// Generates valid txns-shard update streams and knows the answers the cache must give.
struct CacheModel {
    struct Batch {
        let shard: ShardID
        let raw: [UInt8]
        let ts: Timestamp
    }

    let shards: [ShardID]
    let initTs: Timestamp
    var progress: Timestamp = 0
    /// Full registration history per shard: `(register, forget?)`.
    var registrations: [ShardID: [(Timestamp, Timestamp?)]] = [:]
    /// Every committed write time per shard (including tidied ones).
    var writes: [ShardID: [Timestamp]] = [:]
    /// Committed and not yet retracted, in commit order.
    var outstanding: [Batch] = []
    /// Registrations and forgets at their own update time, not yet marked applied.
    var unappliedRegisters: [(ShardID, Timestamp)] = []
    var nextRaw: UInt32 = 0

    init(shards: [ShardID], rng: inout SeededGenerator) {
        self.shards = shards
        self.initTs = Bool.random(using: &rng) ? 0 : Timestamp.random(in: 3...8, using: &rng)
        // History before initTs: registrations and forgets only (every batch before the
        // since was applied and tidied, so it consolidated away).
        for d in shards {
            var t: Timestamp = 0
            var regs: [(Timestamp, Timestamp?)] = []
            while initTs > 0, t < initTs, Bool.random(using: &rng) {
                let r = t
                let f = Timestamp.random(in: r + 1...r + 3, using: &rng)
                regs.append((r, f < initTs && Bool.random(using: &rng) ? f : nil))
                if regs.last?.1 == nil { break }
                t = f + 1
            }
            if !regs.isEmpty { registrations[d] = regs }
        }
    }

    func isRegistered(_ d: ShardID) -> Bool { registrations[d]?.last.map { $0.1 == nil } ?? false }

    /// The snapshot at initTs: every earlier update advanced to initTs.
    func initialSnapshot() -> [TxnsCacheTests.Pushed] {
        var out: [TxnsCacheTests.Pushed] = []
        for (d, regs) in registrations {
            for (r, f) in regs {
                out.append((.register(shard: d, ts: r), initTs, 1))
                if let f { out.append((.register(shard: d, ts: f), initTs, -1)) }
            }
        }
        return out.shuffled()
    }

    /// One progress step: a few events at times in `[progress, newProgress)`, delivered in
    /// an arbitrary order (retractions last, after any commit they retract).
    mutating func step(using rng: inout SeededGenerator) -> ([TxnsCacheTests.Pushed], Timestamp) {
        let span = Timestamp.random(in: 1...3, using: &rng)
        var events: [TxnsCacheTests.Pushed] = []
        var retractions: [TxnsCacheTests.Pushed] = []
        for t in progress..<progress + span {
            // Each time is one txns op; an op touches each shard at most once.
            var touched: Set<ShardID> = []
            for _ in 0..<Int.random(in: 0...3, using: &rng) {
                guard let d = shards.randomElement(using: &rng), !touched.contains(d) else { continue }
                touched.insert(d)
                switch Int.random(in: 0..<10, using: &rng) {
                case 0..<2 where !isRegistered(d):
                    registrations[d, default: []].append((t, nil))
                    unappliedRegisters.append((d, t))
                    events.append((.register(shard: d, ts: t), t, 1))
                case 2 where isRegistered(d):
                    registrations[d]![registrations[d]!.count - 1].1 = t
                    unappliedRegisters.append((d, t))
                    events.append((.register(shard: d, ts: t), t, -1))
                case 3..<8 where isRegistered(d):
                    for _ in 0..<Int.random(in: 1...2, using: &rng) {
                        nextRaw += 1
                        let raw = withUnsafeBytes(of: nextRaw.littleEndian) { Array($0) }
                        outstanding.append(Batch(shard: d, raw: raw, ts: t))
                        writes[d, default: []].append(t)
                        events.append((.append(shard: d, ts: t, batch: raw), t, 1))
                    }
                default:
                    break
                }
            }
            // Sometimes a tidy at t: it retracts every outstanding batch up to some earlier
            // time, as a tidy from `applyLE(x)` (filtered against the outstanding set) does.
            if let first = outstanding.map(\.ts).min(), first < t, Int.random(in: 0..<3, using: &rng) == 0 {
                let x = Timestamp.random(in: first...t - 1, using: &rng)
                for b in outstanding where b.ts <= x {
                    retractions.append((.append(shard: b.shard, ts: b.ts, batch: b.raw), t, -1))
                }
                outstanding.removeAll { $0.ts <= x }
            }
        }
        progress += span
        return (events.shuffled(using: &rng) + retractions.shuffled(using: &rng), progress)
    }

    mutating func markRegisterApplied(_ t: Timestamp) { unappliedRegisters.removeAll { $0.1 <= t } }

    /// The cache's answers against the model's full history.
    /// Reads are checked at every time when `full`, else only at the latest 16 times (the
    /// full check is quadratic in the history's length).
    func check(_ c: TxnsCacheState, full: Bool = true, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let firstChecked = full || progress < initTs + 16 ? initTs : progress - 16
        #expect(c.validate() == nil, "\(c.validate() ?? "")", sourceLocation: sourceLocation)
        #expect(c.progressExclusive == progress, sourceLocation: sourceLocation)
        let firstOutstanding = outstanding.map(\.ts).min()
        let minUnapplied = [firstOutstanding, unappliedRegisters.map(\.1).min()].compactMap { $0 }.min() ?? progress
        #expect(c.minUnappliedTs() == minUnapplied, sourceLocation: sourceLocation)
        #expect(c.unappliedBatchCount == outstanding.count, sourceLocation: sourceLocation)
        #expect(c.allRegisteredAtProgress(progress) == shards.filter(isRegistered).sorted(), sourceLocation: sourceLocation)
        let work = c.unapplied()
        #expect(work.map(\.ts) == work.map(\.ts).sorted(), "unapplied work in time order", sourceLocation: sourceLocation)
        let raws = work.flatMap { w -> [[UInt8]] in if case .batch(let r) = w.work { return r } else { return [] } }
        #expect(Set(raws) == Set(outstanding.map(\.raw)), sourceLocation: sourceLocation)
        #expect(raws.count == outstanding.count, sourceLocation: sourceLocation)

        for d in shards {
            #expect(c.registeredAtProgress(d, progress) == isRegistered(d), sourceLocation: sourceLocation)
            let ws = writes[d] ?? []
            let regs = registrations[d] ?? []
            for asOf in firstChecked..<progress {
                // The snapshot must wait for the latest write at or before asOf that may be
                // unapplied: every write at or after the first outstanding batch counts.
                let expected = ws.filter { $0 <= asOf && $0 >= (firstOutstanding ?? progress) }.max()
                let plan = c.dataSnapshot(d, asOf: asOf)
                #expect(plan.latestWrite == expected, "\(d) snapshot at \(asOf)", sourceLocation: sourceLocation)
                #expect(plan.emptyTo == max(asOf + 1, initTs), sourceLocation: sourceLocation)
                // Nothing unapplied may hide in (asOf, emptyTo).
                #expect(!outstanding.contains { $0.shard == d && $0.ts > asOf && $0.ts < plan.emptyTo }, sourceLocation: sourceLocation)
            }
            for ts in firstChecked...progress {
                let answer = c.dataListenNext(d, ts)
                switch answer {
                case .waitForTxnsProgress:
                    #expect(ts == progress, "\(d) waits at \(ts) below progress \(progress)", sourceLocation: sourceLocation)
                case .readDataTo(let n):
                    #expect(ts < n && n <= progress, "\(d) reads from \(ts) to \(n)", sourceLocation: sourceLocation)
                case .emitLogicalProgress(let p):
                    // Skipping [ts, p) without reading is sound only if d is registered over
                    // all of it and nothing was written there.
                    #expect(p == progress && ts < p, sourceLocation: sourceLocation)
                    #expect(!ws.contains { $0 >= ts && $0 < p }, "\(d) skips a write in [\(ts), \(p))", sourceLocation: sourceLocation)
                    let covering = regs.contains { r, f in r <= ts && f == nil }
                    #expect(covering, "\(d) skips [\(ts), \(p)) while not registered", sourceLocation: sourceLocation)
                }
            }
        }
    }
}
