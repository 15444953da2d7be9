import PersistClient
import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation
import Testing

/// Checks that decoding `bytes` fails with `ReadError.corrupt` whose message names `key`
/// and contains `reason` (when given).
private func expectCorrupt(
    _ bytes: [UInt8], key: String = "sX/p/w/part", reason: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
) {
    do {
        let rows = try BatchParts.decode(bytes, key: key)
        Issue.record("decoded \(rows.count) rows from corrupt bytes", sourceLocation: sourceLocation)
    } catch {
        guard case .corrupt(let message) = error else {
            Issue.record("expected corrupt, got \(error)", sourceLocation: sourceLocation)
            return
        }
        #expect(message.contains(key), sourceLocation: sourceLocation)
        if let reason { #expect(message.contains(reason), "\(message)", sourceLocation: sourceLocation) }
    }
}

private func update(_ key: UInt8, _ time: Timestamp, _ diff: Int64 = 1) -> Update {
    Update(key: [key], value: [key &+ 100], time: time, diff: diff)
}

@Suite struct BatchPartsTests {
    static let codecs: [Compression] = [.none, .lz4, .zstd(level: 1), .zstd(level: 7)]

    // MARK: Keys

    @Test func partKeysFollowTheLayout() throws {
        var g = SeededGenerator(seed: 1)
        let shard = ShardID(using: &g)
        let a = BatchParts.newPartKey(writerKey: "wabc", using: &g)
        let b = BatchParts.newPartKey(writerKey: "wabc", using: &g)
        #expect(a != b)
        #expect(a.hasPrefix("p/wabc/"))
        let uuid = a.dropFirst("p/wabc/".count)
        #expect(try UUIDText.parse(uuid.utf8).count == 16)
        #expect(BatchParts.blobKey(shard: shard, partKey: a) == "\(shard)/\(a)")
        #expect(BatchParts.blobKey(shard: shard, partKey: a).hasPrefix(BatchParts.writerPrefix(shard: shard, writerKey: "wabc")))
        #expect(BatchParts.newPartKey(writerKey: "compactor").hasPrefix("p/compactor/"))
    }

    // MARK: Encoding

    @Test(arguments: codecs)
    func encodeDecodeRoundTrip(compression: Compression) throws {
        var g = SeededGenerator(seed: 2)
        for size in [0, 1, 2, 17, 500] {
            var rows = BatchTestData.randomUpdates(count: size, times: 0...1_000, using: &g)
            Consolidation.consolidate(&rows)
            let part = try BatchParts.encode(rows, compression: compression)
            let frame = try BatchPartFrame.decode(part.bytes)
            #expect(frame.header.codec == BatchParts.codecID(compression))
            #expect(frame.header.rowCount == UInt64(rows.count))
            #expect(part.rowCount == UInt64(rows.count))
            #expect(try BatchParts.decode(part.bytes, key: "k") == rows)
        }
    }

    @Test(arguments: codecs)
    func compressingCodecsShrinkRepetitiveRows(compression: Compression) throws {
        let rows = (0..<400).map { i in
            Update(key: Array("key-\(1_000 + i)".utf8), value: [UInt8](repeating: 7, count: 40), time: 5, diff: 1)
        }
        let part = try BatchParts.encode(rows, compression: compression)
        let header = try BatchPartFrame.decode(part.bytes).header
        if compression == .none {
            #expect(header.payloadLength == header.uncompressedLength)
        } else {
            #expect(header.payloadLength * 4 < header.uncompressedLength)
        }
        #expect(try BatchParts.decode(part.bytes, key: "k") == rows)
    }

    @Test func statsDescribeTheRows() throws {
        let rows = [
            Update(key: [1, 2], value: [9], time: 4, diff: 3),
            Update(key: [1, 3], value: [], time: 1, diff: -1),
            Update(key: [0xF0], value: [1], time: 2, diff: 5),
        ]
        let part = try BatchParts.encode(rows, compression: .default)
        #expect(part.keyLower == [1, 2])
        #expect(part.keyUpper == [0xF0])
        #expect(part.diffsSum == 7)
        #expect(part.rowCount == 3)
        let hollow = part.hollow(key: "p/w/x")
        #expect(hollow == HollowBatchPart(
            key: "p/w/x", encodedSizeBytes: UInt64(part.bytes.count), rowCount: 3, keyLower: [1, 2],
            keyUpper: [0xF0], tsRewrite: nil, diffsSum: 7))

        let empty = try BatchParts.encode([], compression: .lz4)
        #expect(empty.keyLower.isEmpty && empty.keyUpper.isEmpty)
        #expect(empty.diffsSum == 0 && empty.rowCount == 0)
        #expect(try BatchParts.decode(empty.bytes, key: "k").isEmpty)

        // The diff sum wraps like consolidation does.
        let wrapped = try BatchParts.encode([update(1, 0, .max), update(2, 0, 2)], compression: .none)
        #expect(wrapped.diffsSum == .min + 1)
    }

    // MARK: Corruption

    @Test(arguments: codecs)
    func everyFlippedByteIsCorrupt(compression: Compression) throws {
        let rows = (0..<5).map { update(UInt8($0), UInt64($0)) }
        let bytes = try BatchParts.encode(rows, compression: compression).bytes
        for i in bytes.indices {
            var bad = bytes
            bad[i] ^= 0x20
            expectCorrupt(bad)
        }
    }

    @Test func everyTruncationIsCorrupt() throws {
        let bytes = try BatchParts.encode((0..<5).map { update(UInt8($0), 1) }, compression: .default).bytes
        for n in 0..<bytes.count {
            expectCorrupt(Array(bytes.prefix(n)))
        }
        expectCorrupt(bytes + [0])
    }

    @Test func wellFramedButUndecodablePayloadsAreCorrupt() {
        // The frame checks pass (checksums are computed over what is stored), but the
        // payload is not zstd.
        let notZstd = BatchPartFrame.encode(codec: .zstd, rowCount: 1, uncompressedLength: 20, storedPayload: [1, 2, 3, 4])
        expectCorrupt(notZstd, reason: "does not decompress")
        // An lz4 payload that expands to a different size than the header records.
        let lz4 = (try? Compression.lz4.compress([UInt8](repeating: 1, count: 64))) ?? []
        let wrongSize = BatchPartFrame.encode(codec: .lz4, rowCount: 1, uncompressedLength: 63, storedPayload: lz4)
        expectCorrupt(wrongSize, reason: "does not decompress")
        // Uncompressed rows that do not parse as the recorded number of rows.
        let rows = PartRows.encode([update(1, 1), update(2, 2)])
        let tooMany = BatchPartFrame.encode(codec: .none, rowCount: 3, uncompressedLength: rows.count, storedPayload: rows)
        expectCorrupt(tooMany, reason: "rows do not decode")
        let tooFew = BatchPartFrame.encode(codec: .none, rowCount: 1, uncompressedLength: rows.count, storedPayload: rows)
        expectCorrupt(tooFew, reason: "rows do not decode")
    }

    @Test func uncompressedLengthAboveTheLimitIsCorrupt() throws {
        let bytes = try BatchParts.encode((0..<50).map { update(UInt8($0), 1) }, compression: .lz4).bytes
        let length = try BatchPartFrame.decode(bytes).header.uncompressedLength
        #expect(throws: ReadError.self) { try BatchParts.decode(bytes, key: "k", maxUncompressedLength: length - 1) }
        #expect(try BatchParts.decode(bytes, key: "k", maxUncompressedLength: length).count == 50)
    }

    // MARK: Read rules

    /// Rows at times 1, 3, 5, 7, 9.
    static let rows = [update(1, 1), update(2, 3), update(3, 5), update(4, 7), update(5, 9)]

    static func apply(
        rewrite: Timestamp? = nil, lower: Antichain, upper: Antichain, since: Antichain = .minimum,
        filter: FetchFilter = .none
    ) -> [Timestamp] {
        let part = HollowBatchPart(key: "p/w/x", encodedSizeBytes: 0, rowCount: 5, tsRewrite: rewrite)
        let desc = BatchDescription(lower: lower, upper: upper, since: since)
        return BatchParts.applyReadRules(rows, part: part, batch: desc, filter: filter).map(\.time)
    }

    @Test func uncompactedBatchesAreTruncatedToTheirDescription() {
        #expect(Self.apply(lower: Antichain(3), upper: Antichain(8)) == [3, 5, 7])
        #expect(Self.apply(lower: Antichain(0), upper: Antichain(10)) == [1, 3, 5, 7, 9])
        #expect(Self.apply(lower: Antichain(3), upper: .empty) == [3, 5, 7, 9])
        #expect(Self.apply(lower: Antichain(5), upper: Antichain(5)).isEmpty)
        // The rows kept are the original rows, not just their times.
        let desc = BatchDescription(lower: Antichain(4), upper: Antichain(6))
        let part = HollowBatchPart(key: "p/w/x", encodedSizeBytes: 0, rowCount: 5)
        #expect(BatchParts.applyReadRules(Self.rows, part: part, batch: desc, filter: .none) == [update(3, 5)])
    }

    @Test func compactedBatchesAreNotTruncated() {
        // A compacted batch's times were advanced to its since, possibly beyond its upper.
        #expect(Self.apply(lower: Antichain(3), upper: Antichain(8), since: Antichain(4)) == [1, 3, 5, 7, 9])
    }

    @Test func rewriteAdvancesTimesBeforeTruncation() {
        #expect(Self.apply(rewrite: 5, lower: Antichain(0), upper: Antichain(10)) == [5, 5, 5, 7, 9])
        // Rows at 1 and 3 read as at 5 and so fall inside [5, 10); truncating first would
        // have dropped them.
        #expect(Self.apply(rewrite: 5, lower: Antichain(5), upper: Antichain(10)) == [5, 5, 5, 7, 9])
        #expect(Self.apply(rewrite: 6, lower: Antichain(5), upper: Antichain(8)) == [6, 6, 6, 7])
    }

    @Test func snapshotDropsLaterTimesAndAdvancesTheRest() {
        #expect(Self.apply(lower: Antichain(0), upper: Antichain(10), filter: .snapshot(asOf: 5)) == [5, 5, 5])
        #expect(Self.apply(lower: Antichain(0), upper: Antichain(10), filter: .snapshot(asOf: 0)).isEmpty)
        #expect(Self.apply(lower: Antichain(0), upper: Antichain(10), filter: .snapshot(asOf: 100)) == [100, 100, 100, 100, 100])
        // Composes with truncation and rewrite.
        #expect(Self.apply(rewrite: 4, lower: Antichain(2), upper: Antichain(8), filter: .snapshot(asOf: 6)) == [6, 6, 6])
    }

    @Test func listenKeepsTimesAfterAsOfAndAtOrAfterLower() {
        let all = (Antichain(0), Antichain(10))
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .listen(asOf: 3, lower: Antichain(0))) == [5, 7, 9])
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .listen(asOf: 3, lower: Antichain(7))) == [7, 9])
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .listen(asOf: 0, lower: Antichain(3))) == [3, 5, 7, 9])
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .listen(asOf: 9, lower: Antichain(0))).isEmpty)
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .listen(asOf: 0, lower: .empty)).isEmpty)
    }

    @Test func compactionAdvancesWithoutDropping() {
        let all = (Antichain(0), Antichain(10))
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .compaction(since: Antichain(6))) == [6, 6, 6, 7, 9])
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .compaction(since: .empty)) == [1, 3, 5, 7, 9])
        #expect(Self.apply(lower: all.0, upper: all.1, filter: .compaction(since: .minimum)) == [1, 3, 5, 7, 9])
    }

    // MARK: Fetch

    @Test func snapshotOfFetchedPartsMatchesTheModel() async throws {
        var g = SeededGenerator(seed: 3)
        let blob = MemoryBlob()
        let shard = ShardID(using: &g)
        let config = PersistConfig()
        for _ in 0..<150 {
            // The batch was written for [0, 21); it is registered at a (maybe) narrower
            // interval and (maybe) rewritten.
            let written = BatchTestData.randomUpdates(count: Int.random(in: 0...60, using: &g), times: 0...20, using: &g)
            let lower = UInt64.random(in: 0...20, using: &g)
            let upper: Antichain = Bool.random(using: &g) ? .empty : Antichain(UInt64.random(in: lower...21, using: &g))
            // A rewrite needs lower <= r < upper.
            var rewrite: Timestamp?
            if Bool.random(using: &g) {
                if let u = upper.element {
                    if lower < u { rewrite = UInt64.random(in: lower...(u - 1), using: &g) }
                } else {
                    rewrite = UInt64.random(in: lower...30, using: &g)
                }
            }
            let desc = BatchDescription(lower: Antichain(lower), upper: upper)
            let asOf = UInt64.random(in: 0...25, using: &g)

            // Store the rows as three parts (any of them may be empty).
            let cuts = ([0, written.count] + (0..<2).map { _ in Int.random(in: 0...written.count, using: &g) }).sorted()
            var fetched: [Update] = []
            for i in 0..<(cuts.count - 1) {
                var chunk = Array(written[cuts[i]..<cuts[i + 1]])
                Consolidation.consolidate(&chunk)
                let encoded = try BatchParts.encode(chunk, compression: Self.codecs[Int.random(in: 0..<4, using: &g)])
                let key = BatchParts.newPartKey(writerKey: "w", using: &g)
                try await blob.set(BatchParts.blobKey(shard: shard, partKey: key), encoded.bytes)
                var part = encoded.hollow(key: key)
                part.tsRewrite = rewrite
                fetched += try await BatchParts.fetch(
                    blob: blob, shard: shard, part: part, batch: desc, filter: .snapshot(asOf: asOf), config: config)
            }
            Consolidation.consolidate(&fetched)

            let expected = written.compactMap { u -> Update? in
                var u = u
                if let r = rewrite { u.time = max(u.time, r) }
                guard desc.lower.lessEqual(u.time), !desc.upper.lessEqual(u.time), u.time <= asOf else { return nil }
                u.time = asOf
                return u
            }
            #expect(fetched == BatchTestData.naiveConsolidate(expected))
        }
    }

    @Test func fetchOfAMissingPartIsMissingBlob() async throws {
        var g = SeededGenerator(seed: 4)
        let shard = ShardID(using: &g)
        let part = HollowBatchPart(key: "p/w/gone", encodedSizeBytes: 10, rowCount: 1)
        await #expect(throws: ReadError.missingBlob(key: "\(shard)/p/w/gone")) {
            try await BatchParts.fetch(
                blob: MemoryBlob(), shard: shard, part: part, batch: BatchDescription(lower: .minimum, upper: .empty),
                filter: .none, config: PersistConfig())
        }
    }

    @Test func fetchChecksTheRowCountAndTheBytes() async throws {
        var g = SeededGenerator(seed: 5)
        let shard = ShardID(using: &g)
        let blob = MemoryBlob()
        let encoded = try BatchParts.encode([update(1, 1), update(2, 2)], compression: .lz4)
        try await blob.set("\(shard)/p/w/a", encoded.bytes)
        let desc = BatchDescription(lower: .minimum, upper: .empty)

        let good = encoded.hollow(key: "p/w/a")
        let rows = try await BatchParts.fetch(blob: blob, shard: shard, part: good, batch: desc, filter: .none, config: PersistConfig())
        #expect(rows == [update(1, 1), update(2, 2)])

        var wrongCount = good
        wrongCount.rowCount = 3
        await #expect(throws: ReadError.self) {
            try await BatchParts.fetch(blob: blob, shard: shard, part: wrongCount, batch: desc, filter: .none, config: PersistConfig())
        }

        try await blob.set("\(shard)/p/w/b", Array(encoded.bytes.dropLast()))
        var truncated = good
        truncated.key = "p/w/b"
        do {
            _ = try await BatchParts.fetch(blob: blob, shard: shard, part: truncated, batch: desc, filter: .none, config: PersistConfig())
            Issue.record("a truncated part decoded")
        } catch let error as ReadError {
            guard case .corrupt(let message) = error else {
                Issue.record("expected corrupt, got \(error)")
                return
            }
            #expect(message.contains("\(shard)/p/w/b"))
        }
    }
}
