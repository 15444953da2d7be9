import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import Synchronization
import Testing

@testable import TxnWAL

// The test oracle and helpers shared by every txn-wal test (spec/txn-wal.md §6, §6.1).
//
// Conventions, as upstream: data shards hold K = String (the key's UTF-8 bytes), V = ()
// (empty value bytes), T = UInt64 and D = Int64; a txns shard is opened at init_ts 0 and
// timestamps are small integers.

// MARK: - Configuration and handles

/// A persist config with short polls and backoffs, so tests that wait on another
/// handle's progress stay fast.
func txnTestConfig() -> PersistConfig {
    var c = PersistConfig()
    c.pollInterval = .milliseconds(1)
    c.initialBackoff = .milliseconds(1)
    c.maxBackoff = .milliseconds(20)
    return c
}

/// A client over fresh in-memory blob and consensus.
func newTestClient() -> PersistClient {
    PersistClient(blob: MemoryBlob(), consensus: MemoryConsensus(), config: txnTestConfig())
}

/// A writer on data shard `d`, with its cached upper fresh.
func writer(_ client: PersistClient, _ d: ShardID) async throws -> WriteHandle {
    let w = try await client.openWriter(shard: d, purpose: "test writer")
    _ = try await w.fetchRecentUpper()
    return w
}

/// A leased reader on data shard `d` (holds the shard's since while open).
func reader(_ client: PersistClient, _ d: ShardID) async throws -> ReadHandle {
    try await client.openLeasedReader(shard: d, purpose: "test reader")
}

/// A data-shard update row as the tests see it: `(key, ts, diff)`.
struct LogRow: Hashable, Comparable, Sendable, CustomStringConvertible {
    var key: String
    var ts: Timestamp
    var diff: Int64

    init(_ key: String, _ ts: Timestamp, _ diff: Int64) {
        self.key = key
        self.ts = ts
        self.diff = diff
    }

    init(_ u: Update) { self.init(String(decoding: u.key, as: UTF8.self), u.time, u.diff) }

    static func < (a: LogRow, b: LogRow) -> Bool { (a.key, a.ts, a.diff) < (b.key, b.ts, b.diff) }

    /// Rust's debug layout of the upstream tuple, `("foo", 2, 1)`, so failure messages
    /// read like upstream's.
    var description: String { "(\"\(key)\", \(ts), \(diff))" }
}

/// `[("a", 1, 1), ("b", 2, -1)]`.
func formatRows(_ rows: [LogRow]) -> String { "[" + rows.map(\.description).joined(separator: ", ") + "]" }

/// Sorts by `(key, ts)`, sums the diffs of equal `(key, ts)`, drops zeros.
func consolidateRows(_ rows: [LogRow]) -> [LogRow] {
    var sums: [LogRow: Int64] = [:]
    for r in rows { sums[LogRow(r.key, r.ts, 0), default: 0] += r.diff }
    return sums.compactMap { k, d in d == 0 ? nil : LogRow(k.key, k.ts, d) }.sorted()
}

// MARK: - CommitLog

/// The correctness oracle (spec §6.1): every write that a test makes durable, through
/// txns or directly, is recorded here; reads are then compared against what the log
/// says the data shard must hold.
///
/// A reference type: every copy shares the same records (upstream clones share a channel
/// and a list). Thread-safe, so concurrent workers can record into one log.
///
/// Failures are reported with `Issue.record`, whose comment holds
/// `left: <actual>\n right: <expected>` in upstream's layout, and the checking methods
/// also return whether they passed. A test that expects the oracle to catch a violation
/// (`incorrect_usage_register_write_same_time`) wraps the call in `withKnownIssue` and
/// matches on that comment: the test then fails if the oracle does *not* complain.
final class CommitLog: Sendable {
    let client: PersistClient
    let txnsID: ShardID
    private let records = Mutex<[(shard: ShardID, row: LogRow)]>([])

    init(client: PersistClient, txnsID: ShardID) {
        self.client = client
        self.txnsID = txnsID
    }

    /// Records one durable write.
    func record(_ shard: ShardID, _ key: String, _ ts: Timestamp, _ diff: Int64) {
        records.withLock { $0.append((shard, LogRow(key, ts, diff))) }
    }

    /// Records one durable write given as upstream's tuple.
    func record(_ x: (ShardID, String, Timestamp, Int64)) { record(x.0, x.1, x.2, x.3) }

    /// Records every write of a committed test txn at its commit time.
    func recordTxn(_ commitTs: Timestamp, _ txn: TestTxn) {
        for w in txn.mirrored { record(w.shard, w.key, commitTs, w.diff) }
    }

    /// What shard `d` must hold as read at `asOf`, up to (excluding) `until`: every
    /// record's time advanced to `asOf`, rows at or after `until` dropped, consolidated.
    func expected(_ d: ShardID, asOf: Timestamp, until: Timestamp) -> [LogRow] {
        let rows = records.withLock { $0.filter { $0.shard == d }.map(\.row) }
        return consolidateRows(rows.map { LogRow($0.key, max($0.ts, asOf), $0.diff) }.filter { $0.ts < until })
    }

    /// Nil if `actual` (rows at or after `until` dropped, consolidated) is exactly what
    /// the log expects of `d` between `asOf` and `until`; otherwise the failure message.
    func mismatch(_ d: ShardID, asOf: Timestamp, until: Timestamp, actual: [LogRow]) -> String? {
        let expected = expected(d, asOf: asOf, until: until)
        let actual = consolidateRows(actual.filter { $0.ts < until })
        if actual == expected { return nil }
        return "CommitLog mismatch for \(d) as_of \(asOf) until \(until)\n"
            + "  left: \(formatRows(actual))\n right: \(formatRows(expected))"
    }

    /// Asserts `actual` against the log (see `mismatch`); records an issue and returns
    /// false when they differ.
    @discardableResult
    func assertEq(
        _ d: ShardID, asOf: Timestamp, until: Timestamp, actual: [LogRow], sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        guard let message = mismatch(d, asOf: asOf, until: until, actual: actual) else { return true }
        Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
        return false
    }

    /// `assertEq` over data-shard updates.
    @discardableResult
    func assertEq(
        _ d: ShardID, asOf: Timestamp, until: Timestamp, actual: [Update], sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        assertEq(d, asOf: asOf, until: until, actual: actual.map(LogRow.init), sourceLocation: sourceLocation)
    }

    /// Reads `d` at `asOf` through a fresh single-shard cache (`dataSnapshot` +
    /// `snapshotAndFetch` with a new leased reader), checks that a subscription at `asOf`
    /// stepped past `asOf` saw the same rows, and checks the snapshot against the log.
    @discardableResult
    func assertSnapshot(_ d: ShardID, asOf: Timestamp, sourceLocation: SourceLocation = #_sourceLocation) async throws -> Bool {
        let cache = try await TxnsCache.open(client: client, txnsID: txnsID, onlyDataID: d)
        try await cache.updateGt(asOf)
        let plan = cache.state.dataSnapshot(d, asOf: asOf)
        let dataRead = try await reader(client, d)
        let snapshot = try await DataSnapshot(plan).snapshotAndFetch(client: client, reader: dataRead).map(LogRow.init)
        try await dataRead.expire()
        try await cache.expire()

        let sub = try await subscribe(d, asOf: asOf, until: asOf + 1)
        let subscribed = sub.output.map(LogRow.init)
        try await sub.expire()
        var ok = true
        if Set(snapshot) != Set(subscribed) {
            ok = false
            let rows = "  snapshot: \(formatRows(snapshot.sorted()))\n subscribe: \(formatRows(subscribed.sorted()))"
            Issue.record("snapshot and subscribe of \(d) at \(asOf) differ\n\(rows)", sourceLocation: sourceLocation)
        }
        return assertEq(d, asOf: asOf, until: asOf + 1, actual: snapshot, sourceLocation: sourceLocation) && ok
    }

    /// Subscribes to `d` from `asOf` until `until` and checks the output against the log.
    @discardableResult
    func assertSubscribe(
        _ d: ShardID, asOf: Timestamp, until: Timestamp, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> Bool {
        let sub = try await subscribe(d, asOf: asOf, until: until)
        let output = sub.output
        try await sub.expire()
        return assertEq(d, asOf: asOf, until: until, actual: output, sourceLocation: sourceLocation)
    }

    /// A subscription to `d` at `asOf`, stepped until its progress reaches `until`
    /// (past `until - 1`). The caller owns it (and should `expire` it).
    func subscribe(_ d: ShardID, asOf: Timestamp, until: Timestamp) async throws -> DataSubscribe {
        let sub = try await DataSubscribe.open(client: client, txnsID: txnsID, dataID: d, asOf: asOf)
        if until > 0 { try await sub.stepPast(until - 1) }
        return sub
    }

    /// Writes `keys` (diff +1) at `ts` straight into a data shard, bypassing txns: a
    /// compare-and-append from the shard's current upper to `ts + 1`, retried on a
    /// mismatch, then logged. The shard must not be registered (invariant I1) and its
    /// upper must not be past `ts`.
    func writeDirectly(_ ts: Timestamp, _ dataWrite: WriteHandle, _ keys: [String]) async throws {
        let updates = keys.map { Update(key: Array($0.utf8), value: [], time: ts, diff: 1) }
        var current = dataWrite.sharedUpper()
        while true {
            switch try await dataWrite.compareAndAppend(updates, expectedUpper: current, newUpper: Antichain(ts + 1)) {
            case .success:
                for k in keys { record(dataWrite.shard, k, ts, 1) }
                return
            case .failure(let m):
                current = m.current
            }
        }
    }
}

// MARK: - TestTxn

/// A `Txn` that remembers its writes, so `CommitLog.recordTxn` can log them once the txn
/// commits.
struct TestTxn {
    var txn: Txn
    private(set) var mirrored: [(shard: ShardID, key: String, diff: Int64)] = []

    init(_ txn: Txn = Txn()) { self.txn = txn }

    mutating func write(_ d: ShardID, _ key: String, diff: Int64 = 1) {
        txn.write(d, key: Array(key.utf8), diff: diff)
        mirrored.append((d, key, diff))
    }

    mutating func tidy(_ t: Tidy) { txn.tidy(t) }

    mutating func takeTidy() -> Tidy { txn.takeTidy() }

    mutating func merge(_ other: TestTxn) {
        txn.merge(other.txn)
        mirrored += other.mirrored
    }

    mutating func commitAt(_ handle: TxnsHandle, _ commitTs: Timestamp) async throws -> Result<TxnApply, TimestampClosed> {
        try await txn.commitAt(handle, commitTs)
    }
}

// MARK: - Handle and cache helpers

extension TxnsHandle {
    /// A handle on a new txns shard, opened at 0.
    static func expectOpen(_ client: PersistClient) async throws -> TxnsHandle {
        try await expectOpenID(client, ShardID.random())
    }

    /// A handle on the txns shard `txnsID` (new or existing), opened at 0.
    static func expectOpenID(_ client: PersistClient, _ txnsID: ShardID) async throws -> TxnsHandle {
        try await open(client: client, txnsID: txnsID, initTs: 0)
    }

    func newLog() -> CommitLog { CommitLog(client: client, txnsID: txnsID) }

    func beginTest() -> TestTxn { TestTxn(begin()) }

    /// Registers a new data shard at `ts`; fails the test (throws) if the time is closed.
    /// Returns the shard and the write handle that was registered.
    func expectRegister(_ ts: Timestamp) async throws -> (shard: ShardID, write: WriteHandle) {
        let d = ShardID.random()
        let w = try await writer(client, d)
        _ = try await register(at: ts, [w]).get()
        return (d, w)
    }

    /// Registers `count` new data shards at `ts`.
    func expectRegisters(_ ts: Timestamp, _ count: Int) async throws -> [ShardID] {
        let ds = (0..<count).map { _ in ShardID.random() }
        var ws: [WriteHandle] = []
        for d in ds { ws.append(try await writer(client, d)) }
        _ = try await register(at: ts, ws).get()
        return ds
    }

    /// Commits `keys` (diff +1) to `d` at `ts`, applies the commit, logs the keys, and
    /// returns the apply's tidy. Throws if the time is closed.
    @discardableResult
    func expectCommitAt(_ ts: Timestamp, _ d: ShardID, _ keys: [String], _ log: CommitLog) async throws -> Tidy {
        var txn = begin()
        for k in keys { txn.write(d, key: Array(k.utf8), diff: 1) }
        let tidy = try await txn.commitAt(self, ts).get().apply(self)
        for k in keys { log.record(d, k, ts, 1) }
        return tidy
    }
}

extension TxnsCache {
    /// A full cache of `txnsID`, caught up past `initTs`.
    static func expectOpen(_ client: PersistClient, _ txnsID: ShardID, initTs: Timestamp = 0) async throws -> TxnsCache {
        let cache = try await open(client: client, txnsID: txnsID)
        try await cache.updateGt(initTs)
        return cache
    }

    /// The keys of `d` read at `asOf` through this cache, sorted, each repeated `diff`
    /// times (every diff must be positive).
    func expectSnapshot(_ client: PersistClient, _ d: ShardID, asOf: Timestamp) async throws -> [String] {
        try await updateGt(asOf)
        let plan = state.dataSnapshot(d, asOf: asOf)
        let dataRead = try await TxnWALTests.reader(client, d)
        let rows = try await DataSnapshot(plan).snapshotAndFetch(client: client, reader: dataRead)
        try await dataRead.expire()
        var keys: [String] = []
        for u in rows {
            #expect(u.diff > 0, "snapshot of \(d) at \(asOf) has a negative diff: \(u)")
            for _ in 0..<max(0, u.diff) { keys.append(String(decoding: u.key, as: UTF8.self)) }
        }
        return keys.sorted()
    }

    /// A subscription to `d` at `asOf` on this cache's txns shard (not yet stepped).
    func expectSubscribe(_ client: PersistClient, _ d: ShardID, asOf: Timestamp) async throws -> DataSubscribe {
        try await DataSubscribe.open(client: client, txnsID: state.txnsID, dataID: d, asOf: asOf)
    }
}

// MARK: - Tests of the oracle itself (lib.rs)

@Suite struct CommitLogTests {
    /// Upstream `commit_log`: the oracle's advance / truncate / consolidate rules.
    @Test func commitLog() {
        let log = CommitLog(client: newTestClient(), txnsID: .random())
        let d0 = ShardID.random()
        let d1 = ShardID.random()
        let clone = log  // a copy shares the records, like upstream's cloned log
        log.record(d0, "0", 0, 1)
        log.record(d0, "2", 2, 1)
        clone.record(d0, "2", 2, 1)
        log.record(d0, "3", 3, 1)
        clone.record(d0, "3", 4, -1)
        log.record(d0, "1", 1, 1)  // out of order
        clone.record(d1, "5", 5, 1)

        #expect(log.assertEq(d0, asOf: 0, until: 6, actual: [
            LogRow("0", 0, 1), LogRow("1", 1, 1), LogRow("2", 2, 2), LogRow("3", 3, 1), LogRow("3", 4, -1),
        ]))
        #expect(log.assertEq(d1, asOf: 0, until: 6, actual: [LogRow("5", 5, 1)]))
        // Advancing to as_of 4 makes the "3" insert and retraction cancel.
        #expect(log.assertEq(d0, asOf: 4, until: 6, actual: [LogRow("0", 4, 1), LogRow("1", 4, 1), LogRow("2", 4, 2)]))
        // Truncation at until.
        #expect(log.assertEq(d0, asOf: 0, until: 3, actual: [LogRow("0", 0, 1), LogRow("1", 1, 1), LogRow("2", 2, 2)]))

        // The oracle must also be able to say no, with upstream's message layout.
        let message = log.mismatch(d0, asOf: 0, until: 3, actual: [LogRow("0", 0, 1)])
        #expect(message?.contains("left: [(\"0\", 0, 1)]\n right: [(\"0\", 0, 1), (\"1\", 1, 1), (\"2\", 2, 2)]") == true)
        // Actual rows at or after until are ignored; unconsolidated actual is fine.
        #expect(log.mismatch(d1, asOf: 0, until: 6, actual: [LogRow("5", 5, 2), LogRow("5", 5, -1), LogRow("9", 6, 1)]) == nil)
    }

    /// Upstream `unique_batch_serialization`, adapted: our committed batch bytes are a
    /// `TransmittableBatch` whose random `batchID` plays the part of `ProtoIdBatch`'s
    /// UUID. There is no legacy (id-less) encoding in this port, so that half of the test
    /// has no counterpart.
    @Test func uniqueBatchSerialization() async throws {
        let client = newTestClient()
        let d = ShardID.random()
        let w = try await writer(client, d)
        let batch = try await w.batch(
            [Update(key: Array("foo".utf8), value: [], time: 0, diff: 1)], lower: .minimum, upper: Antichain(1))
        let hollow = try #require(batch.hollow)

        // The same handle content (including its id) encodes deterministically.
        let fixedID = [UInt8](repeating: 7, count: 16)
        #expect(
            TransmittableBatch(shard: d, batchID: fixedID, batch: hollow).encode()
                == TransmittableBatch(shard: d, batchID: fixedID, batch: hollow).encode())

        // Two handles for identical batches get different bytes ...
        var rng = SeededGenerator(seed: 42)
        let a = TransmittableBatch(shard: d, batch: hollow, using: &rng)
        let b = TransmittableBatch(shard: d, batch: hollow, using: &rng)
        #expect(a.encode() != b.encode())
        // ... and decoding returns the original batch.
        #expect(try TransmittableBatch.decode(a.encode()) == a)
        #expect(try TransmittableBatch.decode(b.encode()).batch == hollow)
        #expect(try w.batchFromTransmittable(a.encode()).hollow == hollow)

        // `intoTransmittable` (what commit uses) also makes every encoding unique.
        let raw1 = try batch.intoTransmittable()
        let raw2 = try w.batchFromTransmittable(raw1).intoTransmittable()
        #expect(raw1 != raw2)
        #expect(try TransmittableBatch.decode(raw2).batch == hollow)

        // End to end: two identical commits leave two distinct outstanding entries.
        let txns = try await TxnsHandle.expectOpen(client)
        let (d0, _) = try await txns.expectRegister(1)
        for ts: Timestamp in 2...3 {
            var txn = txns.begin()
            txn.write(d0, key: Array("same".utf8), diff: 1)
            _ = try await txn.commitAt(txns, ts).get()
        }
        try await txns.readCache.updateGt(3)
        let raws = txns.readCache.state.unapplied().compactMap { item -> [[UInt8]]? in
            if case .batch(let r) = item.work { return r }
            return nil
        }.flatMap { $0 }
        #expect(raws.count == 2)
        #expect(Set(raws).count == 2)
    }

    /// The crate documentation's usage example, run as a test.
    @Test func crateUsageExample() async throws {
        let client = newTestClient()
        let txnsID = ShardID.random()
        let txns = try await TxnsHandle.open(client: client, txnsID: txnsID, initTs: 0)
        let d0 = ShardID.random()
        let d1 = ShardID.random()
        _ = try await txns.register(at: 1, [try await writer(client, d0)]).get()
        _ = try await txns.register(at: 2, [try await writer(client, d1)]).get()

        var txn = txns.begin()
        txn.write(d0, key: Array("0".utf8), diff: 1)
        txn.write(d1, key: Array("1".utf8), diff: -1)
        let tidy = try await txn.commitAt(txns, 3).get().apply(txns)

        var next = txns.begin()
        next.write(d0, key: Array("2".utf8), diff: 1)
        next.tidy(tidy)
        // 3 is closed: the error names the first time that could work.
        #expect(try await next.commitAt(txns, 3) == .failure(TimestampClosed(nextUsable: 4)))
        _ = try await next.commitAt(txns, 4).get().apply(txns)

        let sub = try await DataSubscribe.open(client: client, txnsID: txnsID, dataID: d1, asOf: 4)
        while sub.progress <= 4 { _ = try await sub.next() }
        #expect(consolidateRows(sub.output.map(LogRow.init)) == [LogRow("1", 4, -1)])
        try await sub.expire()
    }
}
