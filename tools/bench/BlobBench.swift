#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PersistCore
import PersistLocation

/// PutObject and GetObject throughput of the blob-store server, beside `FileBlob` in
/// this process and the raw disk, with the same objects in the same run.
///
/// For every object size and concurrency, each round stores the same seeded objects in
/// each target in turn (PUT phase), reads them all back (GET phase), checks every byte
/// once the clock has stopped, and deletes them. A phase's MB/s is its bytes over its
/// wall time; the headline is the median round.
struct BlobBench {
    struct Settings {
        /// Object sizes in MiB.
        var objectSizesMiB: [Int]
        /// Concurrent requests measured for objects below `largeObjectBytes`.
        var smallConcurrency: [Int]
        /// Concurrent requests measured for objects of `largeObjectBytes` and more.
        var largeConcurrency: [Int]
        /// Bytes stored per measurement for small objects, and for large ones.
        var smallTotalBytes: Int
        var largeTotalBytes: Int
        var rounds: Int
        /// Reach the blob-store over a Unix socket instead of loopback TCP.
        var unixSocket: Bool
        /// Parent of the run's scratch directory.
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
    }

    /// Objects this large or larger count as large (their own concurrency and total).
    static let largeObjectBytes = 8 << 20

    /// The targets in the order each round measures them.
    static let targets: [BlobTarget] = [.raw, .fileBlob, .blobStore]

    /// The shape of one measured level.
    struct LevelPlan: Equatable {
        var objectBytes: Int
        var objects: Int
        var concurrency: Int
    }

    /// Every level `settings` asks for, size by size: at least one object each, as many
    /// whole objects as fit the size class's total.
    static func plan(_ settings: Settings) -> [LevelPlan] {
        settings.objectSizesMiB.flatMap { mib -> [LevelPlan] in
            let bytes = mib << 20
            let large = bytes >= largeObjectBytes
            let total = large ? settings.largeTotalBytes : settings.smallTotalBytes
            let objects = max(1, total / bytes)
            return (large ? settings.largeConcurrency : settings.smallConcurrency).map {
                LevelPlan(objectBytes: bytes, objects: objects, concurrency: $0)
            }
        }
    }

    /// One phase (PUT or GET) of one target at one level.
    struct PhaseFigures: Codable {
        /// Megabytes (1e6 bytes) per second of the median round.
        var mbPerSecond: Double
        /// Every round's figure, in run order.
        var roundMBPerSecond: [Double]
        /// Per-request latency over all rounds, in microseconds.
        var latency: LatencySummary

        /// The figures of `bytes` moved once per round in `roundSeconds`, with every
        /// request's latency in nanoseconds.
        init(bytes: Int, roundSeconds: [Double], latencyNanoseconds: [UInt64]) {
            roundMBPerSecond = roundSeconds.map { BlobBench.megabytesPerSecond(bytes: bytes, seconds: $0) }
            mbPerSecond = BlobBench.median(roundMBPerSecond)
            var histogram = LatencySummary.makeHistogram()
            for nanoseconds in latencyNanoseconds { histogram.recordClamped(nanoseconds) }
            latency = LatencySummary(histogram)
        }
    }

    struct TargetFigures: Codable {
        var target: BlobTarget
        var put: PhaseFigures
        var get: PhaseFigures
    }

    struct Level: Codable {
        var objectBytes: Int
        var objects: Int
        var concurrency: Int
        var targets: [TargetFigures]
        /// Throughput ratios keyed like `put:blob-store/raw` or `get:file-blob/raw`.
        var ratios: [String: Double]

        init(plan: LevelPlan, targets: [TargetFigures]) {
            objectBytes = plan.objectBytes
            objects = plan.objects
            concurrency = plan.concurrency
            self.targets = targets
            ratios = BlobBench.ratios(targets)
        }

        func figures(_ target: BlobTarget) -> TargetFigures? { targets.first { $0.target == target } }
    }

    struct Result: Codable {
        var bench = "blob"
        /// How the blob-store was reached: `tcp` (loopback) or `unix`.
        var transport: String
        var rounds: Int
        var seed: UInt64
        var levels: [Level]
    }

    var settings: Settings

    func run() async throws(BenchError) -> Result {
        let scratch = try ScratchRun(under: settings.parentDirectory, keep: settings.keep)
        defer { scratch.finish() }
        let runDirectory = scratch.path

        let plans = Self.plan(settings)
        let largest = plans.map(\.objectBytes).max() ?? 0
        let server = try BlobStoreProcess.start(
            directory: runDirectory, unix: settings.unixSocket, maxObjectBytes: max(largest, 1 << 20))
        print("blob-store: pid \(server.pid), \(server.endpoint), bucket \(BlobStoreProcess.bucket), data in \(runDirectory)/blobs")
        let levels: [Level]
        do {
            levels = try await measureAll(plans, server: server, runDirectory: runDirectory)
        } catch {
            try? server.stop()
            throw error
        }
        try server.stop()
        print("")
        return Result(
            transport: settings.unixSocket ? "unix" : "tcp", rounds: settings.rounds, seed: settings.seed, levels: levels)
    }

    private func measureAll(
        _ plans: [LevelPlan], server: BlobStoreProcess, runDirectory: String
    ) async throws(BenchError) -> [Level] {
        let fileBlob: FileBlob
        do {
            fileBlob = try FileBlob(root: "\(runDirectory)/file-blob")
        } catch {
            throw BenchError("cannot open FileBlob in \(runDirectory)/file-blob: \(error)")
        }
        let raw = try RawFileTarget(directory: "\(runDirectory)/raw")
        print("")

        var payloads: [[UInt8]] = []
        var levels: [Level] = []
        for plan in plans {
            if payloads.count != plan.objects || payloads.first?.count != plan.objectBytes {
                payloads = []  // released before the next set is made
                payloads = (0..<plan.objects).map {
                    Self.objectPayload(bytes: plan.objectBytes, seed: settings.seed, index: $0)
                }
            }
            print(
                "\(plan.objectBytes >> 20) MiB x \(plan.objects), \(plan.concurrency) at a time: round", terminator: "")
            fflush(nil)
            let client = server.client(connections: plan.concurrency)
            let operations: [BlobTarget: BlobTargetOperations] = [
                .raw: raw.operations,
                .fileBlob: storeOperations(fileBlob, name: "FileBlob"),
                .blobStore: storeOperations(client, name: "blob-store"),
            ]
            var samples: [BlobTarget: Samples] = [:]
            do throws(BenchError) {
                for round in 0..<settings.rounds {
                    for target in Self.targets {
                        guard let ops = operations[target] else { continue }
                        let keys = (0..<plan.objects).map {
                            "s\(plan.objectBytes >> 20)m-c\(plan.concurrency)-r\(round)-\(target.rawValue)-\($0)"
                        }
                        let round = try await measureRound(ops, target: target, keys: keys, payloads: payloads, plan: plan)
                        samples[target, default: Samples()].add(round)
                    }
                    print(" \(round + 1)", terminator: "")
                    fflush(nil)
                }
            } catch {
                await client.shutdown()
                print("")
                throw error
            }
            await client.shutdown()
            let bytes = plan.objects * plan.objectBytes
            let figures = Self.targets.compactMap { target -> TargetFigures? in
                guard let s = samples[target] else { return nil }
                return TargetFigures(
                    target: target,
                    put: PhaseFigures(bytes: bytes, roundSeconds: s.putSeconds, latencyNanoseconds: s.putLatencies),
                    get: PhaseFigures(bytes: bytes, roundSeconds: s.getSeconds, latencyNanoseconds: s.getLatencies))
            }
            let level = Level(plan: plan, targets: figures)
            print(
                "; PUT " + Self.targets.compactMap { t in level.figures(t).map { "\(t.displayName) \(Format.rate($0.put.mbPerSecond))" } }
                    .joined(separator: ", ") + " MB/s")
            levels.append(level)
        }
        return levels
    }

    /// The timings one target collected over the rounds of a level.
    private struct Samples {
        var putSeconds: [Double] = []
        var getSeconds: [Double] = []
        var putLatencies: [UInt64] = []
        var getLatencies: [UInt64] = []

        mutating func add(_ round: (put: PhaseTiming, get: PhaseTiming)) {
            putSeconds.append(round.put.seconds)
            getSeconds.append(round.get.seconds)
            putLatencies += round.put.latencyNanoseconds
            getLatencies += round.get.latencyNanoseconds
        }
    }

    /// Stores every payload under its key, reads them all back, checks them and removes
    /// them again; only the PUT and GET phases are timed.
    private func measureRound(
        _ ops: BlobTargetOperations, target: BlobTarget, keys: [String], payloads: [[UInt8]], plan: LevelPlan
    ) async throws(BenchError) -> (put: PhaseTiming, get: PhaseTiming) {
        let put = try await drivePhase(count: keys.count, concurrency: plan.concurrency) { index throws(BenchError) in
            try await ops.put(keys[index], payloads[index])
        }
        let received = ReceivedObjects(count: keys.count)
        let get = try await drivePhase(count: keys.count, concurrency: plan.concurrency) { index throws(BenchError) in
            received.store(try await ops.get(keys[index]), at: index)
        }
        if let bad = Self.firstMismatch(received.all(), payloads) {
            throw BenchError("\(target.displayName) returned wrong bytes for \(keys[bad])")
        }
        for key in keys { try await ops.remove(key) }
        return (put, get)
    }

    // MARK: Pure helpers

    /// Object `index` of a run: `bytes` bytes from a generator seeded with `seed`, the
    /// size and the index, so no two objects of a run are alike.
    static func objectPayload(bytes: Int, seed: UInt64, index: Int) -> [UInt8] {
        var generator = SeededGenerator(
            seed: seed ^ (UInt64(index) &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(bytes) &* 0xC2B2_AE3D_27D4_EB4F))
        return [UInt8](unsafeUninitializedCapacity: bytes) { buffer, initialized in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            var offset = 0
            while offset + 8 <= bytes {
                raw.storeBytes(of: generator.next().littleEndian, toByteOffset: offset, as: UInt64.self)
                offset += 8
            }
            var tail = generator.next()
            while offset < bytes {
                raw[offset] = UInt8(truncatingIfNeeded: tail)
                tail >>= 8
                offset += 1
            }
            initialized = bytes
        }
    }

    /// The first index whose received object is missing or differs from its payload.
    static func firstMismatch(_ received: [[UInt8]?], _ payloads: [[UInt8]]) -> Int? {
        for (index, expected) in payloads.enumerated() {
            guard index < received.count, let got = received[index], sameBytes(got, expected) else { return index }
        }
        return nil
    }

    /// Whether `a` and `b` hold the same bytes (compared with `memcmp`).
    static func sameBytes(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return a.withUnsafeBytes { pa in
            b.withUnsafeBytes { pb in
                guard let x = pa.baseAddress, let y = pb.baseAddress else { return true }
                return memcmp(x, y, pa.count) == 0
            }
        }
    }

    static func megabytesPerSecond(bytes: Int, seconds: Double) -> Double {
        seconds > 0 ? Double(bytes) / 1e6 / seconds : .infinity
    }

    /// The middle value (the mean of the middle two for an even count); 0 when empty.
    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        guard !sorted.isEmpty else { return 0 }
        let mid = sorted.count / 2
        return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
    }

    /// Each target's PUT and GET throughput over the raw disk's, and the blob-store's
    /// over FileBlob's (the price of the protocol alone).
    static func ratios(_ targets: [TargetFigures]) -> [String: Double] {
        var out: [String: Double] = [:]
        func figures(_ t: BlobTarget) -> TargetFigures? { targets.first { $0.target == t } }
        let pairs: [(BlobTarget, BlobTarget)] = [(.blobStore, .raw), (.fileBlob, .raw), (.blobStore, .fileBlob)]
        for (numerator, denominator) in pairs {
            guard let n = figures(numerator), let d = figures(denominator) else { continue }
            let name = "\(numerator.rawValue)/\(denominator.rawValue)"
            if d.put.mbPerSecond > 0 { out["put:" + name] = n.put.mbPerSecond / d.put.mbPerSecond }
            if d.get.mbPerSecond > 0 { out["get:" + name] = n.get.mbPerSecond / d.get.mbPerSecond }
        }
        return out
    }

    /// `1 MiB` or `64 MiB`; `256 KiB`-style below a MiB.
    static func sizeText(_ bytes: Int) -> String {
        bytes >= 1 << 20 && bytes % (1 << 20) == 0 ? "\(bytes >> 20) MiB" : "\(bytes >> 10) KiB"
    }

    static func concurrencyText(_ n: Int) -> String { n == 1 ? "1 stream" : "\(n) concurrent" }

    /// The headline sentences: for each level, the blob-store's (and FileBlob's) PUT and
    /// GET throughput as a fraction of the raw disk's.
    static func summaryLines(_ result: Result) -> [String] {
        var lines: [String] = []
        for level in result.levels {
            guard let raw = level.figures(.raw), let store = level.figures(.blobStore) else { continue }
            let file = level.figures(.fileBlob)
            let label = "\(sizeText(level.objectBytes)), \(concurrencyText(level.concurrency))"
            for (phase, what) in [("put", "raw disk write"), ("get", "raw read")] {
                let pick: (TargetFigures) -> Double = { phase == "put" ? $0.put.mbPerSecond : $0.get.mbPerSecond }
                var line =
                    "blob-store \(phase.uppercased()) \(label): \(Format.rate(pick(store))) MB/s = "
                    + "\(Format.ratio(pick(store), pick(raw))) of \(what) (\(Format.rate(pick(raw))) MB/s)"
                if let file {
                    line += "; FileBlob \(Format.rate(pick(file))) MB/s = \(Format.ratio(pick(file), pick(raw)))"
                }
                lines.append(line)
            }
        }
        return lines
    }

    // MARK: Report

    static func report(_ result: Result) {
        let transport = result.transport == "unix" ? "a Unix socket" : "loopback TCP"
        for size in uniqueSizes(result.levels) {
            let levels = result.levels.filter { $0.objectBytes == size }
            let objects = levels.first?.objects ?? 0
            var table = Table(
                "Blob PUT/GET of \(sizeText(size)) objects: \(objects) per measurement "
                    + "(\(sizeText(objects * size))), median of \(result.rounds) round(s); MB = 1e6 bytes",
                headers: [
                    "target", "conc", "PUT MB/s", "p50 ms", "p99 ms", "/ raw", "GET MB/s", "p50 ms", "p99 ms", "/ raw",
                ])
            for level in levels {
                guard let raw = level.figures(.raw) else { continue }
                for figures in level.targets {
                    let isRaw = figures.target == .raw
                    table.add([
                        figures.target.displayName, "\(level.concurrency)",
                        Format.rate(figures.put.mbPerSecond), millis(figures.put.latency.p50),
                        millis(figures.put.latency.p99),
                        isRaw ? "" : Format.ratio(figures.put.mbPerSecond, raw.put.mbPerSecond),
                        Format.rate(figures.get.mbPerSecond), millis(figures.get.latency.p50),
                        millis(figures.get.latency.p99),
                        isRaw ? "" : Format.ratio(figures.get.mbPerSecond, raw.get.mbPerSecond),
                    ])
                }
                if let putOverFile = level.ratios["put:blob-store/file-blob"],
                    let getOverFile = level.ratios["get:blob-store/file-blob"]
                {
                    table.notes.append(
                        "\(concurrencyText(level.concurrency)): blob-store / FileBlob = "
                            + "\(Format.fixed(putOverFile, 2))x PUT, \(Format.fixed(getOverFile, 2))x GET "
                            + "(the cost of HTTP, SigV4 and the second process)")
                }
            }
            table.notes += [
                "raw disk: write() + fdatasync per object file, read() back; FileBlob: temporary file, fsync, "
                    + "rename, directory fsync, in this process; blob-store: the same FileBlob in a server process, "
                    + "reached with S3Blob over \(transport) (every PUT body carries a CRC32C the server verifies; "
                    + "the server computes the MD5 ETag)",
                "conc: requests in flight; MB/s = the phase's bytes / its wall time; p50/p99: per-request latency",
                "GET reads objects just written, so all three read from the page cache: GET compares software "
                    + "paths, not the disk",
            ]
            table.print()
        }
        for line in summaryLines(result) { print(line) }
        print("")
    }

    private static func millis(_ micros: Double) -> String { Format.fixed(micros / 1000, 2) }

    private static func uniqueSizes(_ levels: [Level]) -> [Int] {
        var seen: [Int] = []
        for level in levels where !seen.contains(level.objectBytes) { seen.append(level.objectBytes) }
        return seen
    }
}
