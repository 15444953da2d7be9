import Foundation
import PersistClient
import PersistCore
import PersistLocation
import TxnWAL

/// Atomic multi-shard transactions through `TxnWAL` on each blob and consensus pair:
/// one committer in a closed loop, each transaction writing the same number of rows to
/// every one of N data shards, committed and then applied before the next one begins.
struct TxnBench {
    struct Settings {
        var backends: [ShardBackendKind]
        /// Data shard counts; each is one measured level per backend.
        var shardCounts: [Int]
        /// Measured transactions per level, after `warmup` unmeasured ones.
        var txns: Int
        var warmup: Int
        /// Parent of the run's scratch directory (file backend only).
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
    }

    struct LevelResult: Codable {
        var shards: Int
        var txns: Int
        var warmup: Int
        var seconds: Double
        var txnsPerSecond: Double
        var rowsPerSecond: Double
        /// One iteration: begin, write, commitAt (with its retries), apply.
        var latency: LatencySummary
        /// The commitAt part of each iteration, and the apply part.
        var commitLatency: LatencySummary
        var applyLatency: LatencySummary
        /// commitAt calls that found their time closed and were repeated at the next
        /// usable one (none are expected with a single committer).
        var retries: Int
        var lastCommitTs: UInt64
        /// Blob and consensus calls per measured transaction.
        var storage: StoragePerTxn
        /// Rows the read of one data shard at the last commit time returned, and how many
        /// the committed transactions (warmup included) wrote to it.
        var checkedRows: Int
        var expectedRows: Int
        var checkOK: Bool
    }

    /// Averages over the measured transactions of every storage call made meanwhile,
    /// background maintenance included. Microseconds are summed call time: calls that
    /// overlap (apply's per-shard appends) each count in full.
    struct StoragePerTxn: Codable {
        var blobSets: Double
        var blobSetMicros: Double
        var blobGets: Double
        var blobGetMicros: Double
        var compareAndSets: Double
        var compareAndSetMicros: Double
        /// `head` and `scan`: state fetches.
        var consensusReads: Double
        var consensusReadMicros: Double
        /// Blob deletes and lists, consensus truncates and key listings (maintenance).
        var otherCalls: Double

        init(_ tally: StorageTally.Snapshot, txns: Int) {
            let n = Double(max(txns, 1))
            func calls(_ ops: StorageTally.Operation...) -> Double { Double(ops.reduce(0) { $0 + tally[$1].calls }) / n }
            func micros(_ ops: StorageTally.Operation...) -> Double { ops.reduce(0) { $0 + tally[$1].seconds } * 1e6 / n }
            blobSets = calls(.blobSet)
            blobSetMicros = micros(.blobSet)
            blobGets = calls(.blobGet)
            blobGetMicros = micros(.blobGet)
            compareAndSets = calls(.consensusCaS)
            compareAndSetMicros = micros(.consensusCaS)
            consensusReads = calls(.consensusHead, .consensusScan)
            consensusReadMicros = micros(.consensusHead, .consensusScan)
            otherCalls = calls(.blobDelete, .blobList, .consensusTruncate, .consensusListKeys)
        }
    }

    struct BackendResult: Codable {
        var backend: ShardBackendKind
        var levels: [LevelResult]
    }

    struct Result: Codable {
        var bench = "txn"
        var rowsPerShardPerTxn: Int
        var keyBytes: Int
        var valueBytes: Int
        var backends: [BackendResult]

        var checksPassed: Bool { backends.allSatisfy { $0.levels.allSatisfy(\.checkOK) } }
    }

    static let rowsPerShard = 10
    static let keyBytes = 16
    /// Distinct values cycled through by the rows.
    static let valuePoolSize = 1024

    var settings: Settings

    func run() async throws(BenchError) -> Result {
        let runDirectory: String?
        let dirToken: CleanupRegistry.Token?
        if settings.backends.contains(.file) {
            let dir = try System.makeScratchDirectory(under: settings.parentDirectory, prefix: "persist-bench-")
            let keep = settings.keep
            runDirectory = dir
            dirToken = cleanup.register("remove \(dir)") { if !keep { System.removeTree(dir) } }
            print("scratch directory: \(dir)\(keep ? " (kept)" : " (removed at the end)")")
        } else {
            runDirectory = nil
            dirToken = nil
        }
        defer { if let dirToken { cleanup.run(dirToken) } }

        let values = SyntheticRows.make(
            targetBytes: Self.valuePoolSize * (SyntheticRows.valueLength + 30), seed: settings.seed &+ 2
        ).map(\.value)
        var results: [BackendResult] = []
        for kind in settings.backends {
            var levels: [LevelResult] = []
            for shards in settings.shardCounts {
                // A fresh backend per level, so no level inherits another's log or blobs.
                let directory = "\(runDirectory ?? settings.parentDirectory)/\(kind.rawValue)-\(shards)-shards"
                if kind == .file { try System.makeDirectory(directory) }
                levels.append(try await runLevel(kind, shards: shards, directory: directory, values: values))
            }
            results.append(BackendResult(backend: kind, levels: levels))
        }
        print("")
        return Result(
            rowsPerShardPerTxn: Self.rowsPerShard, keyBytes: Self.keyBytes, valueBytes: SyntheticRows.valueLength,
            backends: results)
    }

    /// Opens a fresh backend pair, measures one level on it and releases it, also when
    /// the measurement fails.
    private func runLevel(
        _ kind: ShardBackendKind, shards: Int, directory: String, values: [[UInt8]]
    ) async throws(BenchError) -> LevelResult {
        let backend = try OpenedShardBackend.open(kind, directory: directory)
        let tally = StorageTally()
        let client = PersistClient(
            blob: TalliedBlob(inner: backend.blob, tally: tally),
            consensus: TalliedConsensus(inner: backend.consensus, tally: tally), config: PersistConfig())
        let result: LevelResult
        do {
            result = try await measure(client, tally: tally, kind: kind, shards: shards, values: values)
        } catch {
            await client.waitForMaintenance()
            await backend.close()
            throw error
        }
        await client.waitForMaintenance()
        await backend.close()
        return result
    }

    /// The keys transaction `index` writes to each shard: `txnNNNNNNNNN-rNN`, 16 bytes,
    /// distinct within a transaction and across transactions.
    static func keys(txn index: Int) -> [[UInt8]] {
        let digits = String(index)
        let prefix = "txn" + String(repeating: "0", count: max(0, 9 - digits.count)) + digits + "-r"
        return (0..<rowsPerShard).map { row in
            Array((prefix + (row < 10 ? "0" : "") + String(row)).utf8)
        }
    }

    private func measure(
        _ client: PersistClient, tally: StorageTally, kind: ShardBackendKind, shards: Int, values: [[UInt8]]
    ) async throws(BenchError) -> LevelResult {
        print("\(kind.rawValue), \(shards) shard\(shards == 1 ? "" : "s"): \(settings.txns) txns ...", terminator: "")
        fflush(nil)
        let txns = try await attempt("open the txns shard") {
            try await TxnsHandle.open(client: client, txnsID: ShardID.random(), initTs: 0)
        }
        let dataIDs = (0..<shards).map { _ in ShardID.random() }
        var writers: [WriteHandle] = []
        for d in dataIDs {
            writers.append(
                try await attempt("open a data shard writer") {
                    try await client.openWriter(shard: d, purpose: "persist-bench txn data")
                })
        }
        let registered = try await attempt("register the data shards") { try await txns.register(at: 1, writers) }
        guard case .success(var tidy) = registered else {
            throw BenchError("registering the data shards at 1 found the time closed: \(registered)")
        }

        let clock = ContinuousClock()
        var whole = LatencySummary.makeHistogram()
        var commits = LatencySummary.makeHistogram()
        var applies = LatencySummary.makeHistogram()
        var retries = 0
        var nextTs: Timestamp = 2
        var lastTs: Timestamp = 1
        let total = settings.warmup + settings.txns
        var measuredStart = clock.now
        var tallyAtStart = tally.snapshot()
        for i in 0..<total {
            let rowKeys = Self.keys(txn: i)
            if i == settings.warmup {
                measuredStart = clock.now
                tallyAtStart = tally.snapshot()
            }
            let t0 = clock.now
            var txn = txns.begin()
            txn.tidy(tidy)
            for d in dataIDs {
                for (row, key) in rowKeys.enumerated() {
                    txn.write(d, key: key, value: values[(i &* Self.rowsPerShard &+ row) % values.count], diff: 1)
                }
            }
            var commitTs = nextTs
            let apply: TxnApply
            while true {
                let outcome = try await attempt("commit txn \(i) at \(commitTs)") {
                    try await txn.commitAt(txns, commitTs)
                }
                switch outcome {
                case .success(let committed):
                    apply = committed
                case .failure(let closed):
                    retries += 1
                    commitTs = closed.nextUsable
                    continue
                }
                break
            }
            let t1 = clock.now
            tidy = try await attempt("apply txn \(i) at \(commitTs)") { try await apply.apply(txns) }
            let t2 = clock.now
            lastTs = commitTs
            nextTs = commitTs + 1
            if i >= settings.warmup {
                whole.recordClamped((t2 - t0).nanoseconds)
                commits.recordClamped((t1 - t0).nanoseconds)
                applies.recordClamped((t2 - t1).nanoseconds)
            }
        }
        let seconds = (clock.now - measuredStart).seconds
        let storage = StoragePerTxn(tally.snapshot().minus(tallyAtStart), txns: settings.txns)

        // Read one data shard back through the txns shard at the last commit time: every
        // committed transaction (warmup included) wrote its own keys there once.
        let checked = dataIDs[0]
        let readTs = lastTs
        let rows = try await attempt("read data shard \(checked) back at \(readTs)") {
            try await txns.readCache.updateGt(readTs)
            let plan = txns.readCache.state.dataSnapshot(checked, asOf: readTs)
            let reader = try await client.openLeasedReader(shard: checked, purpose: "persist-bench txn check")
            let rows = try await DataSnapshot(plan).snapshotAndFetch(client: client, reader: reader)
            try await reader.expire()
            return rows
        }
        var expectedKeys = Set<[UInt8]>()
        for i in 0..<total { expectedKeys.formUnion(Self.keys(txn: i)) }
        let checkOK =
            rows.count == expectedKeys.count && Set(rows.map(\.key)) == expectedKeys
            && rows.allSatisfy { $0.diff == 1 && $0.value.count == SyntheticRows.valueLength }
        try await attempt("release the txns cache") { try await txns.readCache.expire() }

        let rate = Double(settings.txns) / seconds
        print(" \(Format.rate(rate)) txns/s\(checkOK ? "" : ", check WRONG")")
        return LevelResult(
            shards: shards, txns: settings.txns, warmup: settings.warmup, seconds: seconds, txnsPerSecond: rate,
            rowsPerSecond: rate * Double(Self.rowsPerShard * shards), latency: LatencySummary(whole),
            commitLatency: LatencySummary(commits), applyLatency: LatencySummary(applies), retries: retries,
            lastCommitTs: lastTs, storage: storage, checkedRows: rows.count, expectedRows: expectedKeys.count, checkOK: checkOK)
    }

    /// Runs `body`, turning any error into a `BenchError` that says what was being done.
    private func attempt<T>(_ what: String, _ body: () async throws -> T) async throws(BenchError) -> T {
        do {
            return try await body()
        } catch {
            throw BenchError("\(what) failed: \(error)")
        }
    }

    // MARK: Report

    static func report(_ result: Result) {
        for b in result.backends {
            var table = Table(
                "Transactions on \(b.backend.displayName): one committer, closed loop; each txn writes "
                    + "\(result.rowsPerShardPerTxn) rows (\(result.keyBytes)-byte key, \(result.valueBytes)-byte value) "
                    + "to every data shard, then commitAt and apply; latency in µs",
                headers: ["shards", "txns/s", "rows/s", "p50", "p90", "p99", "max", "check", "commit p50", "apply p50"])
            for level in b.levels {
                table.add([
                    Format.count(level.shards), Format.rate(level.txnsPerSecond), Format.rate(level.rowsPerSecond),
                    LatencySummary.format(level.latency.p50), LatencySummary.format(level.latency.p90),
                    LatencySummary.format(level.latency.p99), LatencySummary.format(level.latency.max),
                    "\(Format.count(level.checkedRows))/\(Format.count(level.expectedRows))"
                        + (level.checkOK ? " ok" : " WRONG"),
                    LatencySummary.format(level.commitLatency.p50), LatencySummary.format(level.applyLatency.p50),
                ])
            }
            let first = b.levels.first
            table.notes.append(
                "\(Format.count(first?.txns ?? 0)) measured txns per level after \(Format.count(first?.warmup ?? 0)) "
                    + "unmeasured ones, on a fresh backend, txns shard and data shards; latency = begin + writes + "
                    + "commitAt + apply; rows/s = txns/s x rows per shard x shards")
            table.notes.append(
                "commit p50 and apply p50 split the iteration: commitAt (batch per data shard, then the txns shard CaA) "
                    + "and apply (the batches linked into every data shard, in parallel)")
            let retries = b.levels.reduce(0) { $0 + $1.retries }
            table.notes.append("commitAt retries at the next usable time: \(Format.count(retries))")
            table.notes.append(
                "check: the first data shard read through the txns shard (DataSnapshot) at the last commit time "
                    + "holds each committed txn's keys exactly once, warmup included")
            if b.backend == .file {
                table.notes.append(
                    "file: FileBlob fsyncs every part and LogConsensus every CaS, so these figures follow the disk's "
                        + "flush mode: run ../shared/tools/fsync-probe before and after and keep its lines with these")
            }
            table.print()

            var storage = Table(
                "Storage calls per measured txn on \(b.backend.rawValue): count, and summed call time in µs",
                headers: [
                    "shards", "blob sets", "set µs", "blob gets", "get µs", "CaS", "CaS µs", "head/scan",
                    "head/scan µs", "other",
                ])
            for level in b.levels {
                let s = level.storage
                storage.add([
                    Format.count(level.shards), Format.fixed(s.blobSets, 2), LatencySummary.format(s.blobSetMicros),
                    Format.fixed(s.blobGets, 2), LatencySummary.format(s.blobGetMicros),
                    Format.fixed(s.compareAndSets, 2), LatencySummary.format(s.compareAndSetMicros),
                    Format.fixed(s.consensusReads, 2), LatencySummary.format(s.consensusReadMicros),
                    Format.fixed(s.otherCalls, 2),
                ])
            }
            storage.notes.append(
                "every call made while the measured txns ran, background maintenance (rollups, GC, compaction) "
                    + "included; overlapping calls each count in full, so µs may exceed the txn latency")
            storage.notes.append("other: blob deletes and lists, consensus truncates")
            storage.print()
        }
    }
}
