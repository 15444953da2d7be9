import Foundation
import PersistClient
import PersistCodec
import PersistConformance
import PersistCore
import PersistLocation
import Testing

@testable import TxnWAL

// The white-box invariants of tools/verify: the read-only state inspector in process, and
// the `txn-verify` executable end to end, run on stores built here (FileBlob + LogConsensus
// in a scratch directory) and then damaged on purpose. Every damaged store must fail with
// the witness that names the damage; the healthy one must pass.

// MARK: - ShardStateInspector

@Suite struct ShardStateInspectorTests {
    @Test func readsTheCurrentStateWithoutWriting() async throws {
        var config = txnTestConfig()
        config.rollupThreshold = 3  // several rollups and diffs to combine
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let client = PersistClient(blob: blob, consensus: consensus, config: config)
        let txns = try await TxnsHandle.open(client: client, txnsID: ShardID.random(), initTs: 0)
        let d = ShardID.random()
        _ = try await txns.register(at: 1, [try await writer(client, d)]).get()
        for ts in 2...12 as ClosedRange<Timestamp> {
            var txn = txns.begin()
            txn.write(d, key: Array("k\(ts)".utf8), diff: 1)
            _ = try await txn.commitAt(txns, ts).get().apply(txns)
        }
        await client.waitForMaintenance()

        let inspector = ShardStateInspector(blob: blob, consensus: consensus)
        let headBefore = try #require(try await consensus.head(d.description)).seqno
        let state = try #require(try await inspector.currentState(of: d))
        #expect(state.seqno == headBefore)
        #expect(try await consensus.head(d.description)?.seqno == headBefore, "inspecting writes nothing")
        #expect(state.rollups.count >= 1)
        let frontiers = try #require(try await client.frontiers(of: d))
        #expect(state.trace.upper == frontiers.upper)
        #expect(state.trace.since == frontiers.since)

        // The parts it names hold what a reader sees.
        var rows: [Update] = []
        for b in state.trace.batches {
            for p in b.parts {
                rows += try await BatchParts.fetch(blob: blob, shard: d, part: p, batch: b.desc, filter: .none, config: config)
            }
        }
        Consolidation.consolidate(&rows)
        #expect(rows.map(LogRow.init) == (2...12).map { LogRow("k\($0)", Timestamp($0), 1) }.sorted())

        #expect(try await inspector.currentState(of: ShardID.random()) == nil, "a shard with no versions has no state")
    }

    @Test func aMissingLatestRollupIsAMissingBlob() async throws {
        let blob = MemoryBlob()
        let consensus = MemoryConsensus()
        let client = PersistClient(blob: blob, consensus: consensus, config: txnTestConfig())
        let d = ShardID.random()
        let w = try await writer(client, d)
        _ = try await w.compareAndAppend(
            [Update(key: Array("a".utf8), value: [], time: 0, diff: 1)], expectedUpper: .minimum, newUpper: Antichain(1)
        ).get()
        await client.waitForMaintenance()
        let inspector = ShardStateInspector(blob: blob, consensus: consensus)
        let state = try #require(try await inspector.currentState(of: d))
        let latest = try #require(state.rollups.max { $0.key < $1.key }?.value)
        let key = "\(d)/\(latest.key)"
        _ = try await blob.delete(key)
        await #expect(throws: ReadError.missingBlob(key: key)) { try await inspector.currentState(of: d) }
    }
}

// MARK: - txn-verify end to end

/// A scratch store on disk that `txn-verify` opens as `file://` + `log://`, built and
/// damaged in process while no verifier runs.
struct VerifyScratch {
    let dir: String
    var blobURL: String { "file://\(dir)/blob" }
    var consensusURL: String { "log://\(dir)/consensus" }
    /// The coordinator's default txns shard, so `check` needs no --txns-shard.
    static let txnsID: ShardID = {
        guard let id = try? ShardID(parsing: "s7a5a0000-0000-4000-8000-000000000001") else {
            preconditionFailure("a valid constant id")
        }
        return id
    }()

    init(_ label: String) {
        dir = NSTemporaryDirectory() + "txn-verify-\(label)-\(UUID().uuidString.prefix(8))"
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }

    /// Opens the store, runs `body`, waits for background maintenance and closes the log,
    /// so the verifier can open it next.
    func with<T>(
        config: PersistConfig = txnTestConfig(), _ body: (PersistClient, any Blob, any Consensus) async throws -> T
    ) async throws -> T {
        let log = try LogConsensus.open(directory: dir + "/consensus")
        let blob = try FileBlob(root: dir + "/blob")
        let client = PersistClient(blob: blob, consensus: log, config: config)
        do {
            let result = try await body(client, blob, log)
            await client.waitForMaintenance()
            await log.close()
            return result
        } catch {
            await client.waitForMaintenance()
            await log.close()
            throw error
        }
    }

    /// Runs `txn-verify` with `arguments`; stdout and stderr apart.
    func verify(_ arguments: [String]) async throws -> ChildProgram.Outcome {
        try await ChildProgram.run(
            executable: try SpawnedServer.builtExecutable("txn-verify"), arguments: arguments, separateStandardError: true,
            timeout: .seconds(300))
    }

    func check(_ extra: [String] = []) async throws -> (status: Int32, report: VerifyReportJSON) {
        let outcome = try await verify(["check", "--blob", blobURL, "--consensus", consensusURL, "--json"] + extra)
        let report = try VerifyJSON.decode(VerifyReportJSON.self, outcome.output, stderr: outcome.errorOutput)
        return (outcome.status, report)
    }
}

/// The parts of `txn-verify check --json` the tests look at.
struct VerifyReportJSON: Decodable {
    struct Summary: Decodable {
        var shardsChecked: Int
        var blobsChecked: Int
        var dataShardsCompared: Int
        var rowsCompared: Int
        var committedBatches: Int
        var unappliedCommits: Int
        var unverifiableTimes: Int?
    }
    struct Unapplied: Decodable {
        var shard: String
        var shardName: String?
        var time: UInt64
    }
    var ok: Bool
    var summary: Summary
    var unapplied: [Unapplied]
    var violationCounts: [String: Int]
    var violations: [ViolationJSON]
}

struct ViolationJSON: Decodable {
    var check: String
    var message: String
    var shard: String?
    var shardName: String?
    var consensusKey: String?
    var blobKey: String?
    var key: String?
    var value: String?
    var time: UInt64?
    var expectedDiff: Int64?
    var actualDiff: Int64?
}

enum VerifyJSON {
    static func decode<T: Decodable>(_ type: T.Type, _ text: String, stderr: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        do {
            return try decoder.decode(type, from: Data(text.utf8))
        } catch {
            Issue.record("txn-verify printed no valid JSON: \(error)\nstdout: \(text)\nstderr: \(stderr)")
            throw error
        }
    }
}

/// A store the way a coordinator leaves it: two named data shards, commits applied and
/// tidied (so the txns shard holds retractions), one update retracted by a later commit.
struct HealthyStore {
    static let orders = ShardID.random()
    static let stock = ShardID.random()

    /// Builds it in `scratch`; returns the txns upper afterwards.
    @discardableResult
    static func build(in scratch: VerifyScratch) async throws -> Timestamp {
        try await scratch.with { client, _, consensus in
            var names = ShardNameTable()
            names.insert(name: "orders", id: orders)
            names.insert(name: "stock", id: stock)
            _ = try await consensus.compareAndSet(
                "txn-coordinator/\(VerifyScratch.txnsID)/names", expected: nil,
                new: VersionedData(seqno: SeqNo(1), data: names.encode()))

            let txns = try await TxnsHandle.open(client: client, txnsID: VerifyScratch.txnsID, initTs: 0)
            _ = try await txns.register(at: 1, [try await writer(client, orders), try await writer(client, stock)]).get()
            var t3 = txns.begin()
            t3.write(orders, key: Array("o1".utf8), value: Array("pending".utf8), diff: 1)
            t3.write(stock, key: Array("widget".utf8), diff: 5)
            let tidy3 = try await t3.commitAt(txns, 3).get().apply(txns)
            var t4 = txns.begin()
            t4.write(orders, key: Array("o2".utf8), value: Array("pending".utf8), diff: 1)
            t4.tidy(tidy3)
            let tidy4 = try await t4.commitAt(txns, 4).get().apply(txns)
            var t5 = txns.begin()
            t5.write(orders, key: Array("o1".utf8), value: Array("pending".utf8), diff: -1)
            t5.write(orders, key: Array("o1".utf8), value: Array("shipped".utf8), diff: 1)
            t5.write(stock, key: Array("widget".utf8), diff: -1)
            t5.tidy(tidy4)
            _ = try await t5.commitAt(txns, 5).get().apply(txns)
            return try await txns.txnsWrite.fetchRecentUpper().element ?? 0
        }
    }
}

@Suite struct TxnVerifyCheckTests {
    @Test func aHealthyStorePasses() async throws {
        let scratch = VerifyScratch("healthy")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        let (status, report) = try await scratch.check()
        #expect(status == 0, "\(report.violations)")
        #expect(report.ok)
        #expect(report.violations.isEmpty)
        #expect(report.summary.shardsChecked == 3, "the txns shard and two data shards")
        #expect(report.summary.blobsChecked >= 6)
        #expect(report.summary.dataShardsCompared == 2)
        #expect(report.summary.committedBatches == 5, "two batches at 3, one at 4, two at 5")
        #expect(report.summary.rowsCompared == 6)
        #expect(report.summary.unappliedCommits == 0)

        // The text form says the same, for people.
        let text = try await scratch.verify(["check", "--blob", scratch.blobURL, "--consensus", scratch.consensusURL])
        #expect(text.status == 0)
        #expect(text.output.contains("txn-verify check: OK"), "\(text.output)")
        #expect(text.output.contains("skipped txn-coordinator/\(VerifyScratch.txnsID)/names"), "\(text.output)")
    }

    @Test func aMissingReferencedBlobIsCaughtWithItsWitness() async throws {
        let scratch = VerifyScratch("missing-blob")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        let victim: String = try await scratch.with { _, blob, consensus in
            let state = try #require(try await ShardStateInspector(blob: blob, consensus: consensus).currentState(of: HealthyStore.stock))
            let part = try #require(state.trace.batches.flatMap(\.parts).first)
            let key = BatchParts.blobKey(shard: HealthyStore.stock, partKey: part.key)
            #expect(try await blob.delete(key) != nil)
            return key
        }
        let (status, report) = try await scratch.check()
        #expect(status == 1)
        #expect(!report.ok)
        let missing = report.violations.filter { $0.check == "blob_reference" }
        #expect(missing.count == 1, "\(report.violations)")
        #expect(missing.first?.blobKey == victim)
        #expect(missing.first?.shard == HealthyStore.stock.description)
        #expect(missing.first?.shardName == "stock")
    }

    @Test func anExtraRowInADataShardIsCaught() async throws {
        let scratch = VerifyScratch("extra-row")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        let at: Timestamp = try await scratch.with { client, _, _ in
            // Written straight to the data shard, behind the txns shard's back.
            let w = try await writer(client, HealthyStore.orders)
            let upper = try #require(w.upper.element)
            _ = try await w.compareAndAppend(
                [Update(key: Array("intruder".utf8), value: Array("x".utf8), time: upper, diff: 1)],
                expectedUpper: Antichain(upper), newUpper: Antichain(upper + 1)
            ).get()
            return upper
        }
        let (status, report) = try await scratch.check()
        #expect(status == 1)
        let replay = report.violations.filter { $0.check == "replay" }
        #expect(replay.count == 1, "\(report.violations)")
        let v = try #require(replay.first)
        #expect(v.shard == HealthyStore.orders.description)
        #expect(v.shardName == "orders")
        #expect(v.key == "intruder")
        #expect(v.value == "x")
        #expect(v.time == at)
        #expect(v.expectedDiff == 0)
        #expect(v.actualDiff == 1)
    }

    @Test func aCommitThatNeverReachedItsDataShardIsCaught() async throws {
        let scratch = VerifyScratch("missing-row")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        let committedAt: Timestamp = 10
        try await scratch.with { client, _, _ in
            let txns = try await TxnsHandle.open(client: client, txnsID: VerifyScratch.txnsID, initTs: 0)
            var txn = txns.begin()
            txn.write(HealthyStore.stock, key: Array("gadget".utf8), diff: 2)
            _ = try await txn.commitAt(txns, committedAt).get()  // committed, not applied
            // The data shard's upper passes the commit without its batch: the update is lost.
            let w = try await writer(client, HealthyStore.stock)
            _ = try await w.compareAndAppend([], expectedUpper: w.upper, newUpper: Antichain(committedAt + 1)).get()
        }
        let (status, report) = try await scratch.check()
        #expect(status == 1)
        let replay = report.violations.filter { $0.check == "replay" }
        #expect(replay.count == 1, "\(report.violations)")
        let v = try #require(replay.first)
        #expect(v.shardName == "stock")
        #expect(v.key == "gadget")
        #expect(v.time == committedAt)
        #expect(v.expectedDiff == 2)
        #expect(v.actualDiff == 0)
    }

    @Test func unappliedCommitsAreListedAndFailOnlyWhenRequired() async throws {
        let scratch = VerifyScratch("unapplied")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        let committedAt: Timestamp = 20
        try await scratch.with { client, _, _ in
            let txns = try await TxnsHandle.open(client: client, txnsID: VerifyScratch.txnsID, initTs: 0)
            var txn = txns.begin()
            txn.write(HealthyStore.orders, key: Array("o3".utf8), diff: 1)
            _ = try await txn.commitAt(txns, committedAt).get()
        }
        let (status, report) = try await scratch.check()
        #expect(status == 0, "\(report.violations)")
        #expect(report.summary.unappliedCommits == 1)
        #expect(report.unapplied.first?.time == committedAt)
        #expect(report.unapplied.first?.shardName == "orders")

        let (strict, strictReport) = try await scratch.check(["--require-applied"])
        #expect(strict == 1)
        #expect(strictReport.violations.map(\.check) == ["unapplied"])
        #expect(strictReport.violations.first?.time == committedAt)

        // Applying it needs its batch: a part of it gone is a missing blob.
        let gone: [String] = try await scratch.with { _, blob, consensus in
            let d = HealthyStore.orders
            let state = try #require(try await ShardStateInspector(blob: blob, consensus: consensus).currentState(of: d))
            let linked = Set(state.trace.batches.flatMap(\.parts).map { BatchParts.blobKey(shard: d, partKey: $0.key) })
            let pending = try await blob.list(prefix: "\(d)/p/").map(\.key).filter { !linked.contains($0) }
            for key in pending { _ = try await blob.delete(key) }
            return pending
        }
        #expect(gone.count == 1, "the unapplied commit's one part")
        let (lost, lostReport) = try await scratch.check()
        #expect(lost == 1)
        #expect(lostReport.violations.map(\.check) == ["blob_reference"], "\(lostReport.violations)")
        #expect(lostReport.violations.first?.blobKey == gone.first)
        #expect(lostReport.violations.first?.time == committedAt)
    }

    @Test func aRetractionOfSomethingNeverCommittedIsATxnsHistoryViolation() async throws {
        let scratch = VerifyScratch("txns-history")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        try await scratch.with { client, _, _ in
            let w = try await writer(client, VerifyScratch.txnsID)
            let upper = try #require(w.upper.element)
            let bogus = TxnsEntry.register(shard: HealthyStore.orders, ts: 999)
            _ = try await w.compareAndAppend(
                [Update(key: bogus.encodedKey, value: bogus.encodedValue, time: upper, diff: -1)],
                expectedUpper: Antichain(upper), newUpper: Antichain(upper + 1)
            ).get()
        }
        let (status, report) = try await scratch.check()
        #expect(status == 1)
        #expect(report.violations.map(\.check) == ["txns_history"], "\(report.violations)")
        #expect(report.violations.first?.shard == HealthyStore.orders.description)
    }

    @Test func commitsCompactedAwayAreCheckedAgainstTheirPartStatistics() async throws {
        let scratch = VerifyScratch("compacted")
        defer { scratch.remove() }
        // Compaction merges every couple of batches and GC deletes the inputs, so most
        // committed batches can no longer be read back.
        var config = txnTestConfig()
        config.compactionMinInputs = 2
        config.rollupThreshold = 2
        let d = HealthyStore.orders
        let tamper: String = try await scratch.with(config: config) { client, blob, consensus in
            let txns = try await TxnsHandle.open(client: client, txnsID: VerifyScratch.txnsID, initTs: 0)
            _ = try await txns.register(at: 1, [try await writer(client, d)]).get()
            var tidy = Tidy()
            for ts in 2...25 as ClosedRange<Timestamp> {
                var txn = txns.begin()
                txn.write(d, key: Array("k\(ts)".utf8), diff: 1)
                txn.tidy(tidy)
                tidy = try await txn.commitAt(txns, ts).get().apply(txns)
            }
            await client.waitForMaintenance()
            try await client.maintain(shard: d)
            let state = try #require(try await ShardStateInspector(blob: blob, consensus: consensus).currentState(of: d))
            let merged = try #require(state.trace.batches.flatMap(\.parts).first { $0.key.contains("/compactor/") })
            return BatchParts.blobKey(shard: d, partKey: merged.key)
        }
        let (status, report) = try await scratch.check()
        #expect(status == 0, "\(report.violations)")
        #expect(report.summary.committedBatches == 24)
        let unverifiable = try #require(report.summary.unverifiableTimes)
        #expect(unverifiable > 0, "the setup must compact some commits away")

        // A merged part rewritten with one key changed: its row count and diff sum still
        // match, but the key lies outside the bounds of the batch committed at its time.
        try await scratch.with { _, blob, _ in
            let bytes = try #require(try await blob.get(tamper))
            var rows = try BatchParts.decode(bytes, key: tamper)
            rows[0].key = Array("stray".utf8)
            try await blob.set(tamper, try BatchParts.encode(rows, compression: .none).bytes)
        }
        let (bad, badReport) = try await scratch.check()
        #expect(bad == 1)
        let stray = badReport.violations.filter { $0.key == "stray" }
        #expect(stray.count == 1, "\(badReport.violations)")
        #expect(stray.first?.check == "replay")
        #expect(stray.first?.actualDiff == 1)
    }

    @Test func usageAndUnreachableStorageHaveTheirOwnExitStatuses() async throws {
        let scratch = VerifyScratch("usage")
        defer { scratch.remove() }
        let missingDir = try await scratch.verify(["check", "--blob", scratch.blobURL, "--consensus", scratch.consensusURL])
        #expect(missingDir.status == 2, "a store directory that does not exist is refused: \(missingDir.errorOutput)")
        #expect(!FileManager.default.fileExists(atPath: scratch.dir), "and is not created")
        let badURL = try await scratch.verify(["check", "--blob", scratch.blobURL, "--consensus", "nope://x"])
        #expect(badURL.status == 2, "\(badURL.errorOutput)")
        let badFlag = try await scratch.verify(["check", "--frobnicate"])
        #expect(badFlag.status == 2, "\(badFlag.errorOutput)")
        // Nothing listens on port 1: connections are refused at once.
        let down = try await scratch.verify(["heads", "--consensus", "consensus://127.0.0.1:1", "--record", scratch.dir + ".json", "--attempts", "2"])
        #expect(down.status == 3, "\(down.output) \(down.errorOutput)")
        #expect(down.errorOutput.contains("storage unreachable"))
    }
}

// MARK: - txn-verify heads

/// The parts of a heads record the tests read and edit.
struct HeadsJSON: Codable {
    struct Entry: Codable, Equatable {
        var key: String
        var seqno: UInt64
        var upper: [UInt64]?
        var since: [UInt64]?
    }
    var format: String
    var keys: [Entry]
}

@Suite struct TxnVerifyHeadsTests {
    func heads(_ scratch: VerifyScratch, _ args: [String]) async throws -> (Int32, String) {
        let outcome = try await scratch.verify(["heads", "--consensus", scratch.consensusURL] + args)
        return (outcome.status, outcome.output + outcome.errorOutput)
    }

    func load(_ path: String) throws -> HeadsJSON {
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        return try decoder.decode(HeadsJSON.self, from: try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    func save(_ record: HeadsJSON, _ path: String) throws {
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        try encoder.encode(record).write(to: URL(fileURLWithPath: path))
    }

    @Test func recordsCompareAndCatchAnythingGoingBackwards() async throws {
        let scratch = VerifyScratch("heads")
        defer { scratch.remove() }
        try await HealthyStore.build(in: scratch)
        let first = scratch.dir + "/heads-1.json"
        let (s1, o1) = try await heads(scratch, ["--blob", scratch.blobURL, "--record", first])
        #expect(s1 == 0, "\(o1)")
        let record = try load(first)
        #expect(record.format == "txn-verify-heads/1")
        #expect(record.keys.count == 4, "three shards and the name table")
        let orders = try #require(record.keys.first { $0.key == HealthyStore.orders.description })
        #expect(orders.upper == [6], "applied through the commit at 5")
        #expect(orders.since == [0])
        #expect(record.keys.first { $0.key.hasSuffix("/names") }?.upper == nil)

        // Without --blob the frontiers come from the diffs: the same here (nothing truncated).
        let fromDiffs = scratch.dir + "/heads-diffs.json"
        let (s2, o2) = try await heads(scratch, ["--record", fromDiffs, "--previous", first])
        #expect(s2 == 0, "\(o2)")
        #expect(try load(fromDiffs).keys == record.keys)

        // Moving forward is fine.
        try await scratch.with { client, _, _ in
            let txns = try await TxnsHandle.open(client: client, txnsID: VerifyScratch.txnsID, initTs: 0)
            var txn = txns.begin()
            txn.write(HealthyStore.orders, key: Array("o9".utf8), diff: 1)
            _ = try await txn.commitAt(txns, 30).get().apply(txns)
        }
        let second = scratch.dir + "/heads-2.json"
        let (s3, o3) = try await heads(scratch, ["--blob", scratch.blobURL, "--record", second, "--previous", first])
        #expect(s3 == 0, "\(o3)")

        // A previous record ahead of the store: seqno, upper and since went backwards, and
        // a key disappeared.
        var ahead = try load(second)
        let i = try #require(ahead.keys.firstIndex { $0.key == HealthyStore.orders.description })
        ahead.keys[i].seqno += 1000
        let j = try #require(ahead.keys.firstIndex { $0.key == HealthyStore.stock.description })
        ahead.keys[j].upper = [1_000_000]
        ahead.keys[j].since = [7]
        ahead.keys.append(.init(key: "gone/key", seqno: 1))
        let aheadPath = scratch.dir + "/heads-ahead.json"
        try save(ahead, aheadPath)
        let outcome = try await scratch.verify([
            "heads", "--consensus", scratch.consensusURL, "--blob", scratch.blobURL, "--record", scratch.dir + "/heads-3.json",
            "--previous", aheadPath, "--json",
        ])
        #expect(outcome.status == 1)
        struct Outcome: Decodable {
            var ok: Bool
            var violations: [ViolationJSON]
        }
        let result = try VerifyJSON.decode(Outcome.self, outcome.output, stderr: outcome.errorOutput)
        #expect(!result.ok)
        let found = Set(result.violations.map { "\($0.consensusKey ?? "") \($0.message)" })
        #expect(
            found == [
                "\(HealthyStore.orders) the head seqno went backwards",
                "\(HealthyStore.stock) the shard's upper went backwards",
                "\(HealthyStore.stock) the shard's since went backwards",
                "gone/key the key disappeared from consensus",
            ], "\(result.violations)")
    }
}
