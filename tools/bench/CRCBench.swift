import PersistCodec
import PersistCore

/// CRC32C throughput over one large buffer of seeded random bytes: the path that
/// `CRC32C.checksum` takes on this machine (the headline), and the portable table path
/// for comparison.
struct CRCBench {
    struct Result: Codable {
        var bench = "crc"
        var bufferBytes: Int
        var runs: Int
        /// "hardware" (the CPU's CRC32C instruction) or "tables": what `checksum` uses here.
        var path: String
        var bestGBPerSecond: Double
        var meanGBPerSecond: Double
        var tablesBestGBPerSecond: Double
        var tablesMeanGBPerSecond: Double
        var checksum: UInt32
    }

    /// Best and mean throughput of one way of computing the checksum.
    struct Speed {
        var best: Double
        var mean: Double
    }

    var bufferBytes: Int
    var runs: Int
    var seed: UInt64

    func run() throws(BenchError) -> Result {
        // Known answers first, so a fast but wrong checksum is never reported.
        let vector = Array("123456789".utf8)
        let known = CRC32C.checksum(vector)
        let knownTables = vector.withUnsafeBytes { CRC32C.finish(CRC32C.updateWithTables(CRC32C.start, $0)) }
        for (name, value) in [("checksum", known), ("table path", knownTables)] where value != 0xE306_9283 {
            throw BenchError("CRC32C self-check failed (\(name)): got \(hex32(value)), expected e3069283")
        }

        let buffer = randomBytes(count: bufferBytes, seed: seed)
        let (speed, checksum) = try measure { CRC32C.checksum(buffer) }
        let (tables, tablesChecksum) = try measure {
            buffer.withUnsafeBytes { CRC32C.finish(CRC32C.updateWithTables(CRC32C.start, $0)) }
        }
        guard tablesChecksum == checksum else {
            throw BenchError(
                "CRC32C paths disagree on the buffer: checksum \(hex32(checksum)), tables \(hex32(tablesChecksum))")
        }
        return Result(
            bufferBytes: bufferBytes, runs: runs, path: CRC32C.isHardwareAccelerated ? "hardware" : "tables",
            bestGBPerSecond: speed.best, meanGBPerSecond: speed.mean, tablesBestGBPerSecond: tables.best,
            tablesMeanGBPerSecond: tables.mean, checksum: checksum)
    }

    /// Runs `body` `runs` times over the buffer; fails if its answer ever changes.
    private func measure(_ body: () -> UInt32) throws(BenchError) -> (Speed, UInt32) {
        let clock = ContinuousClock()
        var times: [Double] = []
        var checksum: UInt32 = 0
        for run in 0..<runs {
            let start = clock.now
            let value = body()
            times.append((clock.now - start).seconds)
            if run > 0 && value != checksum {
                throw BenchError("CRC32C of the same buffer changed between runs")
            }
            checksum = value
        }
        let gigabytes = Double(bufferBytes) / 1e9
        let best = times.min() ?? .infinity
        let mean = times.reduce(0, +) / Double(max(times.count, 1))
        return (Speed(best: gigabytes / best, mean: gigabytes / mean), checksum)
    }

    static func report(_ result: Result) {
        var table = Table(
            "CRC32C (PersistCodec.CRC32C), 1 GB = 1e9 bytes",
            headers: ["path", "buffer", "runs", "best GB/s", "mean GB/s", "checksum", "target"])
        let size = "\(result.bufferBytes / (1 << 20)) MiB"
        table.add([
            "checksum (\(result.path))", size, "\(result.runs)",
            Format.fixed(result.bestGBPerSecond, 2), Format.fixed(result.meanGBPerSecond, 2),
            hex32(result.checksum), ">= 1 GB/s (release)",
        ])
        table.add([
            "tables (fallback)", size, "\(result.runs)",
            Format.fixed(result.tablesBestGBPerSecond, 2), Format.fixed(result.tablesMeanGBPerSecond, 2),
            hex32(result.checksum), "",
        ])
        table.notes.append("self-check: CRC32C(\"123456789\") = e3069283 ok on both paths; both agree on the buffer")
        if result.path != "hardware" {
            table.notes.append("no CRC32C instruction on this CPU (or not supported by this build): checksum uses the tables")
        }
        table.print()
    }
}

/// `count` bytes from a generator seeded with `seed`.
func randomBytes(count: Int, seed: UInt64) -> [UInt8] {
    var generator = SeededGenerator(seed: seed)
    var bytes: [UInt8] = []
    bytes.reserveCapacity(count)
    while bytes.count < count {
        let word = generator.next()
        for shift in stride(from: 0, to: 64, by: 8) where bytes.count < count {
            bytes.append(UInt8(truncatingIfNeeded: word >> UInt64(shift)))
        }
    }
    return bytes
}

/// `value` as eight lowercase hex digits.
func hex32(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
}
