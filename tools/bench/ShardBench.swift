import Foundation
import PersistClient
import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation

/// The shard layer (`PersistClient`) on each blob and consensus pair: latency of small
/// sequential appends, throughput of one large ingest batch, and the zstd-1 compressor
/// on the same bytes as the peer the ingest rate is judged against.
struct ShardBench {
    struct Settings {
        var backends: [ShardBackendKind]
        /// Measured small appends, after `warmup` unmeasured ones.
        var appends: Int
        var warmup: Int
        /// The ingest batch's rows are generated until their encoding reaches this size.
        var ingestBytes: Int
        var ingestRuns: Int
        /// Overrides of the default `PersistConfig`.
        var partBytes: Int?
        var outstandingParts: Int?
        /// Parent of the run's scratch directory (file backend only).
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
    }

    struct AppendResult: Codable {
        var appends: Int
        var warmup: Int
        var seconds: Double
        var appendsPerSecond: Double
        var latency: LatencySummary
        var expectedUpper: UInt64
        /// The upper read back from consensus after the last append; nil if closed.
        var finalUpper: UInt64?
        var upperOK: Bool
        /// Rows a leased reader's snapshot at the last append's time returned; every
        /// append wrote a distinct key, so it should equal the number of appends.
        var snapshotRows: Int
        var rowsOK: Bool
    }

    struct IngestRun: Codable {
        var seconds: Double
        var mbPerSecond: Double
        var parts: Int
        var storedBytes: Int
    }

    struct IngestResult: Codable {
        var runs: [IngestRun]
        var bestMBPerSecond: Double
        var meanMBPerSecond: Double
        /// Rows a leased reader's snapshot returned after the first run, and how many the
        /// input holds once advanced to the snapshot time and consolidated.
        var snapshotRows: Int
        var expectedRows: Int
        var rowsOK: Bool
        /// Best ingest rate over the zstd-1 peer's best single-core rate.
        var bestOverZstd: Double
        var meanOverZstd: Double
    }

    struct BackendResult: Codable {
        var backend: ShardBackendKind
        var appends: AppendResult
        var ingest: IngestResult
    }

    struct ZstdPeer: Codable {
        /// Passes over the whole payload in one call each, as the target is defined.
        var passes: Int
        var bestMBPerSecond: Double
        var meanMBPerSecond: Double
        var compressedBytes: Int
        /// The same bytes cut into part-sized slices, one call per slice: what the
        /// ingest path's compressor calls look like.
        var sliceBytes: Int
        var slicedPasses: Int
        var slicedBestMBPerSecond: Double
    }

    struct Result: Codable {
        var bench = "persist"
        var appendKeyBytes: Int
        var appendValueBytes: Int
        var ingestRows: Int
        /// `PartRows.encode` of the ingest rows: the uncompressed bytes MB/s counts.
        var ingestEncodedBytes: Int
        var partTargetBytes: Int
        var outstandingParts: Int
        var compression: String
        var zstd: ZstdPeer
        var backends: [BackendResult]

        /// Whether every correctness check held (the throughput target is not one).
        var checksPassed: Bool {
            backends.allSatisfy { $0.appends.upperOK && $0.appends.rowsOK && $0.ingest.rowsOK }
        }
    }

    /// The fraction of the zstd-1 rate the ingest path is expected to reach.
    static let targetOverZstd = 0.5
    static let appendKeyBytes = 16
    static let zstdSeconds = 2.0

    var settings: Settings

    func run() async throws(BenchError) -> Result {
        var config = PersistConfig()
        if let partBytes = settings.partBytes { config.blobTargetSizeBytes = partBytes }
        if let outstanding = settings.outstandingParts { config.batchBuilderMaxOutstandingParts = outstanding }

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

        let rows = SyntheticRows.make(targetBytes: settings.ingestBytes, seed: settings.seed)
        let payload = PartRows.encode(rows)
        print(
            "ingest batch: \(Format.count(rows.count)) rows, \(Format.count(payload.count)) bytes encoded; "
                + "zstd-1 peer ...", terminator: "")
        fflush(nil)
        let zstd = try measureZstd(payload, sliceBytes: config.blobTargetSizeBytes)
        print(
            " \(Format.fixed(zstd.bestMBPerSecond, 1)) MB/s whole, "
                + "\(Format.fixed(zstd.slicedBestMBPerSecond, 1)) MB/s in part-sized slices")

        let appendRows = makeAppendRows()
        var results: [BackendResult] = []
        for kind in settings.backends {
            let directory = "\(runDirectory ?? settings.parentDirectory)/\(kind.rawValue)"
            if kind == .file { try System.makeDirectory(directory) }
            let backend = try OpenedShardBackend.open(kind, directory: directory)
            let client = PersistClient(blob: backend.blob, consensus: backend.consensus, config: config)
            do {
                let appends = try await measureAppends(client, kind: kind, rows: appendRows)
                let ingest = try await measureIngest(
                    client, backend: backend, rows: rows, encodedBytes: payload.count, zstd: zstd)
                results.append(BackendResult(backend: kind, appends: appends, ingest: ingest))
            } catch {
                await client.waitForMaintenance()
                await backend.close()
                throw error
            }
            await client.waitForMaintenance()
            await backend.close()
        }
        print("")
        return Result(
            appendKeyBytes: Self.appendKeyBytes, appendValueBytes: SyntheticRows.valueLength,
            ingestRows: rows.count, ingestEncodedBytes: payload.count, partTargetBytes: config.blobTargetSizeBytes,
            outstandingParts: config.batchBuilderMaxOutstandingParts, compression: config.compression.name,
            zstd: zstd, backends: results)
    }

    // MARK: Measurements

    /// The zstd-1 single-core rate on `payload`: passes over the whole payload in one
    /// call for about two seconds (at least one), then as many seconds of passes that
    /// compress it in `sliceBytes` slices.
    private func measureZstd(_ payload: [UInt8], sliceBytes: Int) throws(BenchError) -> ZstdPeer {
        let codec = Compression.zstd(level: 1)
        var compressedBytes = 0
        let whole = try timePasses { () throws(CompressionError) in
            compressedBytes = try codec.compress(payload).count
        }
        let slices = stride(from: 0, to: payload.count, by: max(1, sliceBytes)).map {
            Array(payload[$0..<min($0 + sliceBytes, payload.count)])
        }
        let sliced = try timePasses { () throws(CompressionError) in
            for slice in slices { _ = try codec.compress(slice) }
        }
        let megabytes = Double(payload.count) / 1e6
        return ZstdPeer(
            passes: whole.count, bestMBPerSecond: megabytes / (whole.min() ?? .infinity),
            meanMBPerSecond: megabytes * Double(whole.count) / whole.reduce(0, +), compressedBytes: compressedBytes,
            sliceBytes: sliceBytes, slicedPasses: sliced.count,
            slicedBestMBPerSecond: megabytes / (sliced.min() ?? .infinity))
    }

    /// Runs `pass` repeatedly for about `zstdSeconds` (at least once); the seconds of each.
    private func timePasses(_ pass: () throws(CompressionError) -> Void) throws(BenchError) -> [Double] {
        let clock = ContinuousClock()
        let budget = Duration.milliseconds(Int64(Self.zstdSeconds * 1000))
        var times: [Double] = []
        let start = clock.now
        repeat {
            let t0 = clock.now
            do {
                try pass()
            } catch {
                throw BenchError("zstd-1 compression of the ingest payload failed: \(error)")
            }
            times.append((clock.now - t0).seconds)
        } while clock.now - start < budget
        return times
    }

    /// One row per small append, warmup first: a 16-byte key `append-NNNNNNNNN` and a
    /// 100-byte synthetic value. Times are filled in by the caller.
    private func makeAppendRows() -> [Update] {
        let count = settings.warmup + settings.appends
        let source = SyntheticRows.make(
            targetBytes: count * (SyntheticRows.valueLength + 30), seed: settings.seed &+ 1)
        return (0..<count).map { i in
            let digits = String(i)
            let key = "append-" + String(repeating: "0", count: max(0, 9 - digits.count)) + digits
            return Update(key: Array(key.utf8), value: source[i % source.count].value, time: 0, diff: 1)
        }
    }

    /// Sequential one-row appends at `[t, t+1)` on a fresh shard, each call timed.
    private func measureAppends(
        _ client: PersistClient, kind: ShardBackendKind, rows: [Update]
    ) async throws(BenchError) -> AppendResult {
        print("\(kind.rawValue): \(settings.appends) small appends ...", terminator: "")
        fflush(nil)
        let writer = try await attempt("open a writer") {
            try await client.openWriter(shard: ShardID.random(), purpose: "persist-bench small appends")
        }
        let clock = ContinuousClock()
        var histogram = LatencySummary.makeHistogram()
        var measuredStart = clock.now
        for (i, template) in rows.enumerated() {
            if i == settings.warmup { measuredStart = clock.now }
            var row = template
            row.time = Timestamp(i)
            let t0 = clock.now
            let outcome = try await attempt("small append \(i)") {
                try await writer.compareAndAppend(
                    [row], expectedUpper: Antichain(Timestamp(i)), newUpper: Antichain(Timestamp(i + 1)))
            }
            let elapsed = clock.now - t0
            if case .failure(let mismatch) = outcome {
                throw BenchError("small append \(i) found the upper moved: \(mismatch)")
            }
            if i >= settings.warmup { histogram.recordClamped(elapsed.nanoseconds) }
        }
        let seconds = (clock.now - measuredStart).seconds
        await client.waitForMaintenance()

        let expected = UInt64(rows.count)
        let upper = try await attempt("read the upper back") { try await writer.fetchRecentUpper() }
        let snapshotRows = try await attempt("read the appended shard back") {
            let reader = try await client.openLeasedReader(shard: writer.shard, purpose: "persist-bench check")
            let snapshot = try await reader.snapshotAndFetch(asOf: Timestamp(rows.count - 1))
            try await reader.expire()
            return snapshot.count
        }
        await client.waitForMaintenance()
        let rate = Double(settings.appends) / seconds
        print(" \(Format.rate(rate)) appends/s")
        return AppendResult(
            appends: settings.appends, warmup: settings.warmup, seconds: seconds, appendsPerSecond: rate,
            latency: LatencySummary(histogram), expectedUpper: expected, finalUpper: upper.element,
            upperOK: upper == Antichain(expected), snapshotRows: snapshotRows, rowsOK: snapshotRows == rows.count)
    }

    /// `settings.ingestRuns` single-batch appends of `rows` on fresh shards, each timed
    /// whole; the first one is read back by a leased reader.
    private func measureIngest(
        _ client: PersistClient, backend: OpenedShardBackend, rows: [Update], encodedBytes: Int, zstd: ZstdPeer
    ) async throws(BenchError) -> IngestResult {
        let maxTime = rows.map(\.time).max() ?? 0
        let newUpper = Antichain(maxTime + 1)
        let clock = ContinuousClock()
        var runs: [IngestRun] = []
        var snapshotRows = 0
        for run in 0..<settings.ingestRuns {
            print(
                "\(backend.kind.rawValue): ingest run \(run + 1)/\(settings.ingestRuns) ...", terminator: "")
            fflush(nil)
            let shard = ShardID.random()
            let writer = try await attempt("open a writer") {
                try await client.openWriter(shard: shard, purpose: "persist-bench ingest")
            }
            let lower = writer.upper
            let t0 = clock.now
            let outcome = try await attempt("ingest append") {
                try await writer.compareAndAppend(rows, expectedUpper: lower, newUpper: newUpper)
            }
            let seconds = (clock.now - t0).seconds
            if case .failure(let mismatch) = outcome {
                throw BenchError("the ingest append on a fresh shard found the upper moved: \(mismatch)")
            }
            let parts = try await attempt("list the parts") {
                try await backend.blob.list(prefix: "\(shard)/p/")
            }
            let mbPerSecond = Double(encodedBytes) / 1e6 / seconds
            runs.append(
                IngestRun(
                    seconds: seconds, mbPerSecond: mbPerSecond, parts: parts.count,
                    storedBytes: parts.reduce(0) { $0 + $1.sizeBytes }))
            print(" \(Format.fixed(mbPerSecond, 1)) MB/s, \(parts.count) parts")
            if run == 0 {
                snapshotRows = try await attempt("read the ingested shard back") {
                    let reader = try await client.openLeasedReader(shard: shard, purpose: "persist-bench check")
                    let snapshot = try await reader.snapshotAndFetch(asOf: maxTime)
                    try await reader.expire()
                    return snapshot.count
                }
            }
            await client.waitForMaintenance()
        }
        var expected = rows
        Consolidation.advance(&expected, to: Antichain(maxTime))
        Consolidation.consolidate(&expected)

        let best = runs.map(\.mbPerSecond).max() ?? 0
        let mean = runs.map(\.mbPerSecond).reduce(0, +) / Double(max(runs.count, 1))
        return IngestResult(
            runs: runs, bestMBPerSecond: best, meanMBPerSecond: mean, snapshotRows: snapshotRows,
            expectedRows: expected.count, rowsOK: snapshotRows == expected.count,
            bestOverZstd: best / zstd.bestMBPerSecond, meanOverZstd: mean / zstd.bestMBPerSecond)
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
        var appends = Table(
            "Small appends: sequential compareAndAppend of one row (\(result.appendKeyBytes)-byte key, "
                + "\(result.appendValueBytes)-byte value) at [t, t+1); latency in µs",
            headers: ["backend", "appends", "appends/s", "p50", "p90", "p99", "max", "final upper", "snapshot rows"])
        for b in result.backends {
            let a = b.appends
            appends.add([
                b.backend.rawValue, Format.count(a.appends), Format.rate(a.appendsPerSecond),
                LatencySummary.format(a.latency.p50), LatencySummary.format(a.latency.p90),
                LatencySummary.format(a.latency.p99), LatencySummary.format(a.latency.max),
                (a.finalUpper.map { Format.count($0) } ?? "closed") + (a.upperOK ? " ok" : " WRONG"),
                Format.count(a.snapshotRows) + (a.rowsOK ? " ok" : " WRONG"),
            ])
        }
        appends.notes.append(
            "each call builds and uploads a one-part batch, then compare-and-sets the shard state; "
                + "\(result.backends.first?.appends.warmup ?? 0) unmeasured appends first")
        appends.notes.append(
            "maintenance (rollups, GC, compaction) runs in the background as in production and is awaited, "
                + "untimed, after the last call; then the upper is read back from consensus and a leased reader's "
                + "snapshot must hold every appended row (warmup included)")
        appends.print()

        let partSize =
            result.partTargetBytes % (1 << 20) == 0
            ? "\(result.partTargetBytes >> 20) MiB" : "\(Format.count(result.partTargetBytes)) B"
        let config = "\(result.compression), \(partSize) parts, \(result.outstandingParts) uploads outstanding"
        var ingest = Table(
            "Ingest: one compareAndAppend of \(Format.count(result.ingestRows)) rows "
                + "(\(Format.count(result.ingestEncodedBytes)) bytes PartRows-encoded) on a fresh shard, timed whole; "
                + "MB/s = encoded 1e6 bytes per second",
            headers: [
                "backend", "best MB/s", "mean MB/s", "each run MB/s", "parts", "stored bytes", "ratio", "snapshot rows",
            ])
        for b in result.backends {
            let i = b.ingest
            let first = i.runs.first
            ingest.add([
                b.backend.rawValue, Format.fixed(i.bestMBPerSecond, 1), Format.fixed(i.meanMBPerSecond, 1),
                i.runs.map { Format.fixed($0.mbPerSecond, 1) }.joined(separator: " "),
                first.map { Format.count($0.parts) } ?? "-", first.map { Format.count($0.storedBytes) } ?? "-",
                first.map { Format.ratio(Double(result.ingestEncodedBytes), Double($0.storedBytes)) } ?? "-",
                "\(Format.count(i.snapshotRows))/\(Format.count(i.expectedRows))" + (i.rowsOK ? " ok" : " WRONG"),
            ])
        }
        ingest.notes.append(
            "timed: batch build, consolidation and compression of each part, part uploads, the state CaS; "
                + "config: \(config)")
        ingest.notes.append(
            "parts and stored bytes: the first run's objects under <shard>/p/ in blob; ratio = encoded / stored")
        ingest.notes.append(
            "snapshot rows: a leased reader's snapshotAndFetch after the first run / the input advanced to the "
                + "snapshot time and consolidated")
        ingest.notes.append("rows: \(SyntheticRows.shape)")
        ingest.print()

        var peer = Table(
            "Ingest against zstd-1 on one core (Compression.zstd(level: 1) over the same "
                + "\(Format.count(result.ingestEncodedBytes)) bytes)",
            headers: [
                "backend", "ingest best", "ingest mean", "zstd-1 best", "best/zstd", "mean/zstd", "target",
                "zstd-1 slices", "best/slices",
            ])
        for b in result.backends {
            let i = b.ingest
            peer.add([
                b.backend.rawValue, Format.fixed(i.bestMBPerSecond, 1), Format.fixed(i.meanMBPerSecond, 1),
                Format.fixed(result.zstd.bestMBPerSecond, 1), percent(i.bestOverZstd), percent(i.meanOverZstd),
                i.bestOverZstd >= targetOverZstd ? "met" : "below",
                Format.fixed(result.zstd.slicedBestMBPerSecond, 1),
                percent(i.bestMBPerSecond / result.zstd.slicedBestMBPerSecond),
            ])
        }
        peer.notes.append(
            "zstd-1: fastest of \(result.zstd.passes) whole-payload passes in about \(Int(zstdSeconds)) s "
                + "(mean \(Format.fixed(result.zstd.meanMBPerSecond, 1)) MB/s, ratio "
                + "\(Format.ratio(Double(result.ingestEncodedBytes), Double(result.zstd.compressedBytes))))")
        peer.notes.append(
            "zstd-1 slices: fastest of \(result.zstd.slicedPasses) passes compressing the same bytes in "
                + "\(Format.count(result.zstd.sliceBytes))-byte slices (the part size), one call each, as ingest does; "
                + "one call over a large payload pays for a fresh zero-filled output buffer every time")
        peer.notes.append(
            "target: ingest >= \(Int(targetOverZstd * 100))% of zstd-1 (informational; the run does not fail on it)")
        if result.backends.contains(where: { $0.backend == .file }) {
            peer.notes.append(
                "file: FileBlob fsyncs every part and LogConsensus every CaS, so its figures follow the disk's "
                    + "flush mode: run ../shared/tools/fsync-probe before and after and keep its lines with these")
        }
        peer.print()
    }

    private static func percent(_ fraction: Double) -> String {
        fraction.isFinite ? Format.fixed(fraction * 100, 0) + "%" : "-"
    }
}
