import PersistCodec
import PersistCore

/// CRC32C throughput over one large buffer of seeded random bytes.
struct CRCBench {
    struct Result: Codable {
        var bench = "crc"
        var bufferBytes: Int
        var runs: Int
        var bestGBPerSecond: Double
        var meanGBPerSecond: Double
        var checksum: UInt32
    }

    var bufferBytes: Int
    var runs: Int
    var seed: UInt64

    func run() throws(BenchError) -> Result {
        // A known answer first, so a fast but wrong checksum is never reported.
        let known = CRC32C.checksum(Array("123456789".utf8))
        guard known == 0xE306_9283 else {
            throw BenchError("CRC32C self-check failed: got \(hex32(known)), expected e3069283")
        }

        let buffer = randomBytes(count: bufferBytes, seed: seed)
        let clock = ContinuousClock()
        var times: [Double] = []
        var checksum: UInt32 = 0
        for run in 0..<runs {
            let start = clock.now
            let value = CRC32C.checksum(buffer)
            times.append((clock.now - start).seconds)
            if run > 0 && value != checksum {
                throw BenchError("CRC32C of the same buffer changed between runs")
            }
            checksum = value
        }
        let gigabytes = Double(bufferBytes) / 1e9
        let best = times.min() ?? .infinity
        let mean = times.reduce(0, +) / Double(max(times.count, 1))
        return Result(
            bufferBytes: bufferBytes, runs: runs, bestGBPerSecond: gigabytes / best,
            meanGBPerSecond: gigabytes / mean, checksum: checksum)
    }

    static func report(_ result: Result) {
        var table = Table(
            "CRC32C (PersistCodec.CRC32C.checksum), 1 GB = 1e9 bytes",
            headers: ["buffer", "runs", "best GB/s", "mean GB/s", "checksum", "target"])
        table.add([
            "\(result.bufferBytes / (1 << 20)) MiB", "\(result.runs)",
            Format.fixed(result.bestGBPerSecond, 2), Format.fixed(result.meanGBPerSecond, 2),
            hex32(result.checksum), ">= 1 GB/s (release)",
        ])
        table.notes.append("self-check: CRC32C(\"123456789\") = e3069283 ok")
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
