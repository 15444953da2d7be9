import PersistCodec
import PersistCompression
import PersistCore
import Testing

/// Decompress helper that keeps the typed error.
func decompressOutcome(_ c: Compression, _ input: [UInt8], size: Int) -> Result<[UInt8], CompressionError> {
    do { return .success(try c.decompress(input, decompressedSize: size)) } catch { return .failure(error) }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}

extension CompressionError {
    var isSizeMismatch: Bool {
        if case .sizeMismatch = self { return true }
        return false
    }
}

func randomBytes(_ n: Int, using g: inout SeededGenerator) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(n)
    while out.count < n {
        let word = g.next()
        for i in 0..<min(8, n - out.count) { out.append(UInt8(truncatingIfNeeded: word >> (8 * UInt64(i)))) }
    }
    return out
}

/// Row-like data with lots of repetition, as batch parts usually hold.
func repetitiveBytes(_ n: Int, using g: inout SeededGenerator) -> [UInt8] {
    let words = (0..<16).map { _ in randomBytes(Int.random(in: 3...12, using: &g), using: &g) }
    var out = [UInt8]()
    out.reserveCapacity(n + 16)
    while out.count < n { out += words[Int.random(in: 0..<words.count, using: &g)] }
    return Array(out.prefix(n))
}

@Suite struct CompressionTests {
    static let codecs: [Compression] = [.none, .lz4, .zstd(level: 1), .zstd(level: 3), .zstd(level: 19)]
    static let compressing: [Compression] = [.lz4, .zstd(level: 1), .zstd(level: 3), .zstd(level: 19)]

    static func roundTrip(_ c: Compression, _ input: [UInt8]) throws -> [UInt8] {
        let compressed = try c.compress(input)
        #expect(compressed.count <= c.compressBound(input.count), "\(c.name)")
        let output = try c.decompress(compressed, decompressedSize: input.count)
        #expect(output == input, "\(c.name) \(input.count) bytes")
        return compressed
    }

    @Test(arguments: codecs) func emptyInput(_ c: Compression) throws {
        let compressed = try Self.roundTrip(c, [])
        if c == .none { #expect(compressed.isEmpty) }
    }

    @Test(arguments: codecs) func oneByte(_ c: Compression) throws {
        for b: UInt8 in [0, 0x7F, 0xFF] { _ = try Self.roundTrip(c, [b]) }
    }

    @Test(arguments: codecs) func incompressible100KiB(_ c: Compression) throws {
        var g = SeededGenerator(seed: 600)
        let input = randomBytes(100 * 1024, using: &g)
        let compressed = try Self.roundTrip(c, input)
        // Random data does not shrink; the codecs only add a little framing.
        #expect(compressed.count >= input.count)
        #expect(compressed.count <= input.count + input.count / 100 + 64)
    }

    @Test(arguments: codecs) func repetitive1MiB(_ c: Compression) throws {
        var g = SeededGenerator(seed: 601)
        let input = repetitiveBytes(1 << 20, using: &g)
        let compressed = try Self.roundTrip(c, input)
        if c == .none {
            #expect(compressed == input)
        } else {
            #expect(compressed.count < input.count / 2, "\(c.name) compressed to \(compressed.count)")
        }
    }

    @Test func higherZstdLevelsDoNotCompressWorse() throws {
        var g = SeededGenerator(seed: 602)
        let input = repetitiveBytes(256 * 1024, using: &g)
        let l1 = try Compression.zstd(level: 1).compress(input).count
        let l19 = try Compression.zstd(level: 19).compress(input).count
        #expect(l19 <= l1)
    }

    @Test(arguments: codecs) func compressionIsDeterministic(_ c: Compression) throws {
        var g = SeededGenerator(seed: 603)
        let input = repetitiveBytes(10_000, using: &g)
        #expect(try c.compress(input) == c.compress(input))
    }

    @Test(arguments: codecs) func wrongDecompressedSizeIsSizeMismatch(_ c: Compression) throws {
        var g = SeededGenerator(seed: 604)
        let input = repetitiveBytes(5000, using: &g)
        let compressed = try c.compress(input)
        for size in [input.count + 1, input.count + 1000, 2 * input.count] {
            let e = decompressOutcome(c, compressed, size: size).failure
            #expect(e?.isSizeMismatch == true, "\(c.name) claimed \(size): \(String(describing: e))")
            if case .sizeMismatch(_, let expected, _) = e { #expect(expected == size) }
        }
        for size in [input.count - 1, input.count / 2, 1] {
            let e = decompressOutcome(c, compressed, size: size).failure
            if c == .lz4 {
                // LZ4's safe decoder stops with an error when the output would overflow, and
                // cannot tell a short buffer from a corrupt stream; either error is fine.
                #expect(e != nil, "lz4 claimed \(size)")
            } else {
                #expect(e?.isSizeMismatch == true, "\(c.name) claimed \(size): \(String(describing: e))")
            }
        }
        // Zero is wrong for non-empty input.
        #expect(decompressOutcome(c, compressed, size: 0).failure != nil)
        // A negative size is refused rather than trusted.
        #expect(decompressOutcome(c, compressed, size: -1).failure?.isSizeMismatch == true)
    }

    @Test(arguments: codecs) func emptyInputWithNonZeroSizeIsRefused(_ c: Compression) throws {
        let compressedEmpty = try c.compress([])
        #expect(decompressOutcome(c, compressedEmpty, size: 1).failure != nil)
    }

    static func sample(_ c: Compression) throws -> ([UInt8], [UInt8]) {
        var g = SeededGenerator(seed: 605)
        let input = repetitiveBytes(300, using: &g) + randomBytes(40, using: &g)
        return (input, try c.compress(input))
    }

    @Test(arguments: compressing) func everyTruncationIsRefusedOrExact(_ c: Compression) throws {
        let (input, compressed) = try Self.sample(c)
        for n in 0..<compressed.count {
            switch decompressOutcome(c, Array(compressed[0..<n]), size: input.count) {
            case .failure: break
            case .success(let out):
                // Without a checksum a decoder may in principle accept a shorter stream, but
                // never with the wrong length.
                #expect(out.count == input.count, "\(c.name) prefix \(n)")
            }
        }
        // In practice every truncation of these formats is detected.
        let accepted = (0..<compressed.count).filter {
            decompressOutcome(c, Array(compressed[0..<$0]), size: input.count).failure == nil
        }
        #expect(accepted.isEmpty, "\(c.name) accepted prefixes \(accepted)")
    }

    @Test(arguments: compressing) func everySingleByteChangeIsRefusedOrHasTheRightLength(_ c: Compression) throws {
        let (input, compressed) = try Self.sample(c)
        var refused = 0, accepted = 0
        for offset in 0..<compressed.count {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var bad = compressed
                bad[offset] ^= mask
                switch decompressOutcome(c, bad, size: input.count) {
                case .failure: refused += 1
                case .success(let out):
                    // Literal bytes can change without breaking the stream; the batch part's
                    // CRC32C is what catches those. The length is still exact.
                    #expect(out.count == input.count)
                    accepted += 1
                }
            }
        }
        #expect(refused > 0, "\(c.name): some changes must break the stream")
        #expect(refused + accepted == compressed.count * 3)
    }

    @Test(arguments: compressing) func garbageIsRefused(_ c: Compression) {
        var g = SeededGenerator(seed: 606)
        for i in 0..<2000 {
            let garbage = randomBytes(Int.random(in: 0...300, using: &g), using: &g)
            let size = i % 2 == 0 ? Int.random(in: 0...4096, using: &g) : garbage.count * 3
            switch decompressOutcome(c, garbage, size: size) {
            case .failure: break
            case .success(let out): #expect(out.count == size)
            }
        }
        // Fixed garbage that is certainly not a stream.
        #expect(decompressOutcome(c, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF], size: 100).failure != nil)
        #expect(decompressOutcome(c, [], size: 100).failure != nil)
        #expect(decompressOutcome(c, [1, 2, 3], size: 0).failure != nil)
    }

    @Test func zstdRefusesNonZstdInput() {
        let e = decompressOutcome(.zstd(level: 1), Array("definitely not zstd".utf8), size: 19).failure
        guard case .corrupt(let codec, _) = e else {
            Issue.record("expected corrupt, got \(String(describing: e))")
            return
        }
        #expect(codec == "zstd")
    }

    @Test func names() {
        #expect(Compression.none.name == "none")
        #expect(Compression.lz4.name == "lz4")
        #expect(Compression.zstd(level: 3).name == "zstd-3")
        #expect(Compression.default == .zstd(level: 1))
    }
}

/// The whole batch part path: rows encoded, compressed, framed; then verified, decompressed
/// and decoded.
@Suite struct BatchPartPipelineTests {
    static func codecID(_ c: Compression) -> PartCodecID {
        switch c {
        case .none: return .none
        case .lz4: return .lz4
        case .zstd: return .zstd
        }
    }

    /// The level only matters when compressing; any level decompresses.
    static func compression(_ id: PartCodecID) -> Compression {
        switch id {
        case .none: return .none
        case .lz4: return .lz4
        case .zstd: return .zstd(level: 1)
        }
    }

    static func write(_ rows: [Update], with c: Compression) throws -> [UInt8] {
        let payload = PartRows.encode(rows)
        let stored = try c.compress(payload)
        return BatchPartFrame.encode(
            codec: codecID(c), rowCount: UInt64(rows.count), uncompressedLength: payload.count,
            storedPayload: stored)
    }

    static func read(_ object: [UInt8]) throws -> [Update] {
        let frame = try BatchPartFrame.decode(object)
        let payload = try compression(frame.header.codec).decompress(
            frame.payload, decompressedSize: Int(frame.header.uncompressedLength))
        return try PartRows.decode(payload, rowCount: frame.header.rowCount)
    }

    static func rows(_ n: Int, using g: inout SeededGenerator) -> [Update] {
        (0..<n).map { i in
            Update(
                key: Array("key-\(i % 97)".utf8), value: repetitiveBytes(Int.random(in: 0...64, using: &g), using: &g),
                time: UInt64(1000 + i / 10), diff: Int64.random(in: -3...3, using: &g))
        }
    }

    @Test(arguments: CompressionTests.codecs) func rowsSurviveTheRoundTrip(_ c: Compression) throws {
        var g = SeededGenerator(seed: 700)
        for n in [0, 1, 2, 1000] {
            let rows = Self.rows(n, using: &g)
            let object = try Self.write(rows, with: c)
            #expect(object[5] == Self.codecID(c).rawValue)
            #expect(try Self.read(object) == rows)
        }
    }

    @Test func codecMappingIsTotal() {
        for id in PartCodecID.allCases {
            #expect(Self.codecID(Self.compression(id)) == id)
        }
    }

    @Test(arguments: CompressionTests.compressing) func corruptedCompressedPartIsCaughtByTheFrame(_ c: Compression) throws {
        var g = SeededGenerator(seed: 701)
        let object = try Self.write(Self.rows(200, using: &g), with: c)
        for _ in 0..<200 {
            var bad = object
            let offset = Int.random(in: BatchPartHeader.size..<bad.count, using: &g)
            bad[offset] ^= UInt8.random(in: 1...255, using: &g)
            // The payload checksum fires before the decompressor ever sees the bytes.
            #expect(throws: CodecError.self) { try BatchPartFrame.decode(bad) }
        }
    }
}
