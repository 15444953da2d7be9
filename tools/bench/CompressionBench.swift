import PersistCodec
import PersistCompression
import PersistCore

/// Compression and decompression speed of batch-part payloads for each codec.
///
/// The payload is `PartRows.encode` of seeded synthetic rows (see `SyntheticRows`), so
/// the figures describe the bytes a batch part really holds, framing included.
struct CompressionBench {
    struct CodecResult: Codable {
        var codec: String
        var compressedBytes: Int
        /// Uncompressed size over compressed size.
        var ratio: Double
        var compressPasses: Int
        var decompressPasses: Int
        /// Uncompressed megabytes (1e6 bytes) per second, fastest pass and all passes.
        var compressBestMBPerSecond: Double
        var compressMeanMBPerSecond: Double
        var decompressBestMBPerSecond: Double
        var decompressMeanMBPerSecond: Double
    }

    struct Result: Codable {
        var bench = "compression"
        var rows: Int
        var uncompressedBytes: Int
        var codecs: [CodecResult]
        var cli: [CLICompressionPeer.Figure]
    }

    static let codecs: [Compression] = [.none, .lz4, .zstd(level: 1), .zstd(level: 3)]

    var secondsPerCodec: Double

    /// Measures every codec on `payload`, the encoding of `rows` rows.
    func run(payload: [UInt8], rows: Int) throws(BenchError) -> Result {
        var results: [CodecResult] = []
        for codec in Self.codecs {
            results.append(try measure(codec, payload))
        }
        return Result(rows: rows, uncompressedBytes: payload.count, codecs: results, cli: [])
    }

    private func measure(_ codec: Compression, _ payload: [UInt8]) throws(BenchError) -> CodecResult {
        let clock = ContinuousClock()
        let budget = Duration.milliseconds(Int64((secondsPerCodec * 1000).rounded()))
        let megabytes = Double(payload.count) / 1e6

        var compressed: [UInt8] = []
        var compressTimes: [Double] = []
        let compressStart = clock.now
        repeat {
            let t0 = clock.now
            do {
                compressed = try codec.compress(payload)
            } catch {
                throw BenchError("\(codec.name) compression failed: \(error)")
            }
            compressTimes.append((clock.now - t0).seconds)
        } while clock.now - compressStart < budget

        var decompressTimes: [Double] = []
        var roundTripped: [UInt8] = []
        let decompressStart = clock.now
        repeat {
            let t0 = clock.now
            do {
                roundTripped = try codec.decompress(compressed, decompressedSize: payload.count)
            } catch {
                throw BenchError("\(codec.name) decompression failed: \(error)")
            }
            decompressTimes.append((clock.now - t0).seconds)
        } while clock.now - decompressStart < budget
        guard roundTripped == payload else {
            throw BenchError("\(codec.name) did not round-trip the payload")
        }

        func best(_ times: [Double]) -> Double { megabytes / (times.min() ?? .infinity) }
        func mean(_ times: [Double]) -> Double { megabytes * Double(times.count) / times.reduce(0, +) }
        return CodecResult(
            codec: codec.name, compressedBytes: compressed.count,
            ratio: Double(payload.count) / Double(max(compressed.count, 1)),
            compressPasses: compressTimes.count, decompressPasses: decompressTimes.count,
            compressBestMBPerSecond: best(compressTimes), compressMeanMBPerSecond: mean(compressTimes),
            decompressBestMBPerSecond: best(decompressTimes), decompressMeanMBPerSecond: mean(decompressTimes))
    }

    static func report(_ result: Result) {
        var ours = Table(
            "Compression of a \(Format.count(result.uncompressedBytes))-byte PartRows payload "
                + "(\(Format.count(result.rows)) rows); MB/s = uncompressed 1e6 bytes per second",
            headers: [
                "codec", "compressed", "ratio", "comp best", "comp mean", "decomp best", "decomp mean", "passes",
            ])
        for c in result.codecs {
            // `none` hands its input back without copying: its speed would be a
            // meaningless, enormous figure, so only its pass counts are shown.
            let speeds =
                c.codec == Compression.none.name
                ? ["no work", "no work", "no work", "no work"]
                : [
                    Format.fixed(c.compressBestMBPerSecond, 1), Format.fixed(c.compressMeanMBPerSecond, 1),
                    Format.fixed(c.decompressBestMBPerSecond, 1), Format.fixed(c.decompressMeanMBPerSecond, 1),
                ]
            ours.add(
                [c.codec, Format.count(c.compressedBytes), Format.fixed(c.ratio, 3)] + speeds
                    + ["\(c.compressPasses)/\(c.decompressPasses)"])
        }
        ours.notes.append(
            "none: the API returns its input unchanged without copying; its figures are in the JSON only")
        ours.notes.append("rows: \(SyntheticRows.shape)")
        ours.print()

        guard !result.cli.isEmpty else { return }
        var peer = Table(
            "Same bytes through the command-line tools' built-in benchmark (fastest pass, MB = 1e6 bytes)",
            headers: [
                "codec", "cli ratio", "cli comp", "cli decomp", "ours/cli comp", "ours/cli decomp", "ours/cli ratio",
            ])
        for figure in result.cli {
            let ours = result.codecs.first { $0.codec == figure.codec }
            peer.add([
                "\(figure.codec) (\(figure.tool) -\(figure.level))", Format.fixed(figure.ratio, 3),
                Format.fixed(figure.compressMBPerSecond, 1), Format.fixed(figure.decompressMBPerSecond, 1),
                Format.ratio(ours?.compressBestMBPerSecond, figure.compressMBPerSecond),
                Format.ratio(ours?.decompressBestMBPerSecond, figure.decompressMBPerSecond),
                Format.ratio(ours?.ratio, figure.ratio),
            ])
        }
        peer.notes.append("ours/cli compares our fastest pass with the tool's fastest pass on the identical file")
        peer.print()
    }
}

/// Seeded, compressible key/value rows shaped like a small table's contents.
enum SyntheticRows {
    static let shape =
        "key \"key-%08d\" (row number, ascending); value exactly 100 bytes of space-separated "
        + "tokens, each a word from a 24-word vocabulary (70%) or a 1-6 digit number (30%); "
        + "time = 1,700,000,000,000 + row/64; diff +1"

    private static let vocabulary: [String] = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet", "kilo",
        "lima", "order", "invoice", "customer", "pending", "shipped", "paid", "refund", "north", "south",
        "east", "west", "priority",
    ]

    static let valueLength = 100

    /// Rows until their `PartRows` encoding reaches at least `targetBytes`.
    static func make(targetBytes: Int, seed: UInt64) -> [Update] {
        var generator = SeededGenerator(seed: seed)
        var rows: [Update] = []
        var encoded = 0
        var row = 0
        while encoded < targetBytes {
            let key = Array(("key-" + pad(row, 8)).utf8)
            let value = makeValue(&generator)
            let update = Update(key: key, value: value, time: 1_700_000_000_000 + UInt64(row / 64), diff: 1)
            // Two one-byte varint lengths, then 8-byte time and 8-byte diff.
            encoded += key.count + value.count + 18
            rows.append(update)
            row += 1
        }
        return rows
    }

    private static func makeValue(_ generator: inout SeededGenerator) -> [UInt8] {
        var value: [UInt8] = []
        value.reserveCapacity(valueLength + 16)
        while value.count < valueLength {
            if !value.isEmpty { value.append(UInt8(ascii: " ")) }
            if Int.random(in: 0..<10, using: &generator) < 7 {
                value += vocabulary[Int.random(in: 0..<vocabulary.count, using: &generator)].utf8
            } else {
                let digits = Int.random(in: 1...6, using: &generator)
                let upper = [1, 10, 100, 1000, 10_000, 100_000, 1_000_000][digits]
                value += String(Int.random(in: 0..<upper, using: &generator)).utf8
            }
        }
        return Array(value.prefix(valueLength))
    }

    private static func pad(_ n: Int, _ width: Int) -> String {
        let digits = String(n)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}
