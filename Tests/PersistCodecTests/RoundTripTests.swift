import PersistCodec
import PersistCore
import Testing

@Suite struct RoundTripTests {
    @Test func samplesRoundTrip() throws {
        let handle = try TransmittableBatch.decode(Fixtures.handle.encode())
        #expect(handle == Fixtures.handle)
        #expect(handle.encode() == Fixtures.handle.encode())
        for entry in [Fixtures.register, Fixtures.append] {
            let decoded = try TxnsEntry.decode(key: entry.encodedKey, value: entry.encodedValue)
            #expect(decoded == entry)
            #expect(decoded.shard == Fixtures.shard)
            #expect(decoded.encodedValue == entry.encodedValue)
        }
        #expect(Fixtures.register.ts == 0x0000_018B_CFE5_6800)
        #expect(Fixtures.append.ts == 42)
        let frame = try BatchPartFrame.decode(Fixtures.frame)
        #expect(reencode(frame) == Fixtures.frame)
        #expect(frame.bytes == Fixtures.frame)
        #expect(frame.payloadRange == BatchPartHeader.size..<Fixtures.frame.count)
    }

    @Test func randomBatchHandles() throws {
        var g = SeededGenerator(seed: 300)
        for _ in 0..<400 {
            let handle = Fixtures.randomHandle(using: &g)
            let bytes = handle.encode()
            let decoded = try TransmittableBatch.decode(bytes)
            #expect(decoded == handle)
            #expect(decoded.encode() == bytes)
            // Part keys come back byte for byte (String equality alone is up to Unicode
            // canonical equivalence).
            #expect(decoded.batch.parts.map { Array($0.key.utf8) } == handle.batch.parts.map { Array($0.key.utf8) })
        }
    }

    @Test func handlesOverSameBatchEncodeDifferently() {
        // Every handle has a fresh batch id, so equal data never yields equal bytes.
        var g = SeededGenerator(seed: 301)
        let batch = Fixtures.hollowBatch
        let a = TransmittableBatch(shard: Fixtures.shard, batch: batch, using: &g)
        let b = TransmittableBatch(shard: Fixtures.shard, batch: batch, using: &g)
        #expect(a.batchID != b.batchID)
        #expect(a.encode() != b.encode())
    }

    @Test func randomTxnsEntries() throws {
        var g = SeededGenerator(seed: 302)
        for _ in 0..<400 {
            let entry = Fixtures.randomEntry(using: &g)
            let decoded = try TxnsEntry.decode(key: entry.encodedKey, value: entry.encodedValue)
            #expect(decoded == entry)
            #expect(decoded.encodedKey == entry.encodedKey)
            #expect(decoded.encodedValue == entry.encodedValue)
            if case .append(_, _, let batch) = decoded {
                #expect(try TransmittableBatch.decode(batch).shard == entry.shard)
            }
        }
    }

    @Test func randomPartRows() throws {
        var g = SeededGenerator(seed: 303)
        for _ in 0..<400 {
            let rows = Fixtures.randomRows(using: &g)
            let bytes = PartRows.encode(rows)
            #expect(try PartRows.decode(bytes, rowCount: UInt64(rows.count)) == rows)
        }
        #expect(try PartRows.decode([], rowCount: 0) == [])
    }

    @Test func randomFrames() throws {
        var g = SeededGenerator(seed: 304)
        for _ in 0..<400 {
            let codec = PartCodecID.allCases.randomElement(using: &g)!
            let payload = Fixtures.randomBytes(Int.random(in: 0...500, using: &g), using: &g)
            let uncompressed = codec == .none ? payload.count : Int.random(in: 0...(1 << 32), using: &g)
            let rows = Fixtures.randomU64(using: &g)
            let bytes = BatchPartFrame.encode(
                codec: codec, rowCount: rows, uncompressedLength: uncompressed, storedPayload: payload)
            let frame = try BatchPartFrame.decode(bytes)
            #expect(frame.header.codec == codec)
            #expect(frame.header.rowCount == rows)
            #expect(frame.header.uncompressedLength == UInt64(uncompressed))
            #expect(frame.header.payloadLength == UInt64(payload.count))
            #expect(frame.header.payloadChecksum == CRC32C.checksum(payload))
            #expect(frame.payload == payload)
            #expect(reencode(frame) == bytes)
        }
    }

    @Test func rowsThroughAFrame() throws {
        var g = SeededGenerator(seed: 305)
        for _ in 0..<200 {
            let rows = Fixtures.randomRows(using: &g)
            let payload = PartRows.encode(rows)
            let bytes = BatchPartFrame.encode(
                codec: .none, rowCount: UInt64(rows.count), uncompressedLength: payload.count,
                storedPayload: payload)
            let frame = try BatchPartFrame.decode(bytes)
            #expect(try PartRows.decode(frame.payload, rowCount: frame.header.rowCount) == rows)
        }
    }

    @Test func partMayContainIsAConservativeKeyRangeCheck() {
        let shard = Fixtures.shard
        let key = Array(shard.description.utf8)
        #expect(TxnsEntry.partMayContain(shard: shard, keyLower: [], keyUpper: []))
        #expect(TxnsEntry.partMayContain(shard: shard, keyLower: key, keyUpper: key))
        #expect(TxnsEntry.partMayContain(shard: shard, keyLower: Array("s0".utf8), keyUpper: Array("s1".utf8)))
        #expect(!TxnsEntry.partMayContain(shard: shard, keyLower: Array("s1".utf8), keyUpper: Array("s2".utf8)))
        #expect(!TxnsEntry.partMayContain(shard: shard, keyLower: Array("s00".utf8), keyUpper: Array("s0f".utf8)))
        // Never a false negative: any shard inside a range built from real keys is a yes.
        var g = SeededGenerator(seed: 306)
        for _ in 0..<300 {
            let ids = (0..<3).map { _ in ShardID(using: &g) }.sorted()
            let lo = Array(ids[0].description.utf8), hi = Array(ids[2].description.utf8)
            #expect(TxnsEntry.partMayContain(shard: ids[1], keyLower: lo, keyUpper: hi))
            #expect(TxnsEntry.partMayContain(shard: ids[0], keyLower: lo, keyUpper: hi))
            #expect(TxnsEntry.partMayContain(shard: ids[2], keyLower: lo, keyUpper: hi))
            let outside = ShardID(using: &g)
            let inRange = ids[0] <= outside && outside <= ids[2]
            #expect(TxnsEntry.partMayContain(shard: outside, keyLower: lo, keyUpper: hi) == inRange)
        }
    }
}
