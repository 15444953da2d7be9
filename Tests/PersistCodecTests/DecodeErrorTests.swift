import PersistCodec
import PersistCore
import Testing

/// Each kind of bad input gets the error that names its problem. Where a test edits a
/// field it recomputes the checksums, so that the check under test, not the CRC, fires.
@Suite struct DecodeErrorTests {
    // MARK: Batch handle

    /// A batch handle body (everything before the CRC) built field by field.
    static func handleBytes(
        magic: [UInt8] = TransmittableBatch.magic, version: UInt8 = 1, shard: ShardID = Fixtures.shard,
        body: (inout ByteWriter) -> Void = { $0.writeHollowBatch(Fixtures.hollowBatch) }
    ) -> [UInt8] {
        var w = ByteWriter()
        w.writeBytes(magic)
        w.writeU8(version)
        w.writeShardID(shard)
        w.writeBytes(Fixtures.batchID)
        body(&w)
        w.writeTrailingChecksum()
        return w.bytes
    }

    static func decodeHandle(_ bytes: [UInt8]) -> CodecError? {
        outcome { () throws(CodecError) in try TransmittableBatch.decode(bytes) }.failure
    }

    @Test func handleBuilderMatchesEncoder() {
        #expect(Self.handleBytes() == Fixtures.handle.encode())
    }

    @Test func handleWrongMagic() {
        let magic: [UInt8] = Array("TWBP".utf8)
        #expect(Self.decodeHandle(Self.handleBytes(magic: magic)) == .badMagic(format: "batch handle", found: magic))
        // A batch part object is not a batch handle.
        #expect(Self.decodeHandle(Fixtures.frame)?.kind == .badMagic)
        #expect(Self.decodeHandle([]) == .badMagic(format: "batch handle", found: []))
    }

    @Test func handleOtherVersions() {
        for version: UInt8 in [0, 2, 255] {
            #expect(Self.decodeHandle(Self.handleBytes(version: version))
                == .unsupportedVersion(format: "batch handle", version: Int(version)))
        }
        // The version is checked before the length, so a short buffer from a newer
        // release still says "unsupported version".
        #expect(Self.decodeHandle(TransmittableBatch.magic + [2])
            == .unsupportedVersion(format: "batch handle", version: 2))
    }

    @Test func handleBadChecksum() {
        var bytes = Fixtures.handle.encode()
        let stored = le(bytes, at: bytes.count - 4, as: UInt32.self)
        bytes[bytes.count - 1] ^= 0x10
        #expect(Self.decodeHandle(bytes) == .checksumMismatch(
            format: "batch handle", stored: stored ^ 0x1000_0000, computed: stored))
    }

    @Test func handleDescriptionWithLowerBeyondUpper() {
        let e = Self.decodeHandle(Self.handleBytes { w in
            w.writeBatchDescription(BatchDescription(lower: Antichain(9), upper: Antichain(5)))
            w.writeU64(0)
            w.writeVarint(0)
        })
        #expect(e?.kind == .invalidValue && e?.subject == "batch description")
        let closedLower = Self.decodeHandle(Self.handleBytes { w in
            w.writeBatchDescription(BatchDescription(lower: .empty, upper: Antichain(5)))
            w.writeU64(0)
            w.writeVarint(0)
        })
        #expect(closedLower?.subject == "batch description")
        // lower == upper and an empty upper are fine.
        for desc in [
            BatchDescription(lower: Antichain(5), upper: Antichain(5)),
            BatchDescription(lower: Antichain(5), upper: .empty), BatchDescription(lower: .empty, upper: .empty),
        ] {
            let batch = HollowBatch(desc: desc, rowCount: 0, parts: [])
            let bytes = Self.handleBytes { $0.writeHollowBatch(batch) }
            #expect(try! TransmittableBatch.decode(bytes).batch == batch)
        }
    }

    @Test func handleBadAntichainTag() {
        let e = Self.decodeHandle(Self.handleBytes { w in
            w.writeU8(2)
            w.writeU64(1)
            w.writeAntichain(.empty)
            w.writeAntichain(.empty)
            w.writeU64(0)
            w.writeVarint(0)
        })
        #expect(e?.kind == .invalidValue && e?.subject == "batch lower")
    }

    @Test func handleRowCountThatDisagreesWithParts() {
        var batch = Fixtures.hollowBatch
        batch.rowCount = 6
        let e = Self.decodeHandle(Self.handleBytes { $0.writeHollowBatch(batch) })
        #expect(e?.kind == .invalidValue && e?.subject == "batch row count")
        // Part row counts whose sum overflows are refused, not wrapped.
        batch.parts[0].rowCount = UInt64.max
        batch.rowCount = 1  // what a wrapping sum would give
        let overflow = Self.decodeHandle(Self.handleBytes { $0.writeHollowBatch(batch) })
        #expect(overflow?.kind == .invalidValue && overflow?.subject == "batch row count")
    }

    @Test func handlePartProblems() {
        func withPart(_ p: HollowBatchPart) -> CodecError? {
            Self.decodeHandle(Self.handleBytes { w in
                w.writeBatchDescription(Fixtures.hollowBatch.desc)
                w.writeU64(p.rowCount)
                w.writeVarint(1)
                w.writeHollowBatchPart(p)
            })
        }
        let good = Fixtures.hollowBatch.parts[0]
        #expect(withPart(good) == nil)
        var empty = good
        empty.key = ""
        #expect(withPart(empty)?.subject == "part key")
        var reversed = good
        (reversed.keyLower, reversed.keyUpper) = (reversed.keyUpper, reversed.keyLower)
        #expect(withPart(reversed)?.subject == "part key bounds")
        var longKey = good
        longKey.key = String(repeating: "k", count: ByteReader.maxBlobKeyLength + 1)
        #expect(withPart(longKey)?.kind == .lengthOutOfRange)
        longKey.key = String(repeating: "k", count: ByteReader.maxBlobKeyLength)
        #expect(withPart(longKey) == nil)
    }

    @Test func handleRawFieldProblems() {
        // Fields a valid encoder never writes, written by hand.
        func part(_ write: (inout ByteWriter) -> Void) -> CodecError? {
            Self.decodeHandle(Self.handleBytes { w in
                w.writeBatchDescription(Fixtures.hollowBatch.desc)
                w.writeU64(0)
                w.writeVarint(1)
                write(&w)
            })
        }
        // Invalid UTF-8 in the part key.
        let badKey = part { w in
            w.writeLengthPrefixed([0x70, 0xFF])
            w.writeU64(1); w.writeU64(0); w.writeVarint(0); w.writeVarint(0); w.writeU8(0); w.writeU8(0)
        }
        #expect(badKey?.kind == .invalidValue && badKey?.subject == "part key")
        // Unknown optional tags.
        let badRewrite = part { w in
            w.writeString("k"); w.writeU64(1); w.writeU64(0); w.writeVarint(0); w.writeVarint(0)
            w.writeU8(7); w.writeU8(0)
        }
        #expect(badRewrite?.kind == .invalidValue && badRewrite?.subject == "part ts rewrite")
        let badSum = part { w in
            w.writeString("k"); w.writeU64(1); w.writeU64(0); w.writeVarint(0); w.writeVarint(0)
            w.writeU8(0); w.writeU8(2)
        }
        #expect(badSum?.kind == .invalidValue && badSum?.subject == "part diffs sum")
        // A part count far larger than the bytes could hold.
        let hugeCount = Self.decodeHandle(Self.handleBytes { w in
            w.writeBatchDescription(Fixtures.hollowBatch.desc)
            w.writeU64(0)
            w.writeVarint(1 << 40)
        })
        #expect(hugeCount?.kind == .lengthOutOfRange && hugeCount?.subject == "batch part count")
    }

    @Test func handleTrailingBytesBeforeChecksum() {
        let e = Self.decodeHandle(Self.handleBytes { w in
            w.writeHollowBatch(Fixtures.hollowBatch)
            w.writeU8(0)
        })
        #expect(e == .trailingBytes(format: "batch handle", count: 1))
    }

    // MARK: Txns entry

    static func entryValue(version: UInt8 = 1, kind: UInt8, shard: ShardID = Fixtures.shard, ts: UInt64 = 7, tail: [UInt8] = []) -> [UInt8] {
        var w = ByteWriter()
        w.writeU8(version)
        w.writeU8(kind)
        w.writeShardID(shard)
        w.writeU64(ts)
        w.writeBytes(tail)
        w.writeTrailingChecksum()
        return w.bytes
    }

    static let key = Array(Fixtures.shardText.utf8)

    static func decodeEntry(key: [UInt8] = key, _ value: [UInt8]) -> CodecError? {
        outcome { () throws(CodecError) in try TxnsEntry.decode(key: key, value: value) }.failure
    }

    @Test func entryBuilderMatchesEncoder() throws {
        #expect(Self.entryValue(kind: 1, ts: 0x0000_018B_CFE5_6800) == Fixtures.register.encodedValue)
        #expect(Self.entryValue(kind: 2, ts: 42, tail: Fixtures.handle.encode()) == Fixtures.append.encodedValue)
    }

    @Test func entryOtherVersions() {
        for version: UInt8 in [0, 2, 255] {
            #expect(Self.decodeEntry(Self.entryValue(version: version, kind: 1))
                == .unsupportedVersion(format: "txns entry", version: Int(version)))
        }
    }

    @Test func entryBadChecksum() {
        var value = Fixtures.register.encodedValue
        value[10] ^= 4
        let e = Self.decodeEntry(value)
        #expect(e == .checksumMismatch(
            format: "txns entry", stored: le(value, at: 26, as: UInt32.self), computed: CRC32C.checksum(Array(value[0..<26]))))
    }

    @Test func entryUnknownKind() {
        for kind: UInt8 in [0, 3, 255] {
            let e = Self.decodeEntry(Self.entryValue(kind: kind))
            #expect(e?.kind == .invalidValue && e?.subject == "txns entry kind", "kind \(kind)")
        }
    }

    @Test func entryRegisterWithTrailingBytes() {
        #expect(Self.decodeEntry(Self.entryValue(kind: 1, tail: [0]))
            == .trailingBytes(format: "txns entry", count: 1))
    }

    @Test func entryAppendWithoutBatch() {
        let e = Self.decodeEntry(Self.entryValue(kind: 2))
        #expect(e?.kind == .invalidValue && e?.subject == "txns entry batch")
    }

    @Test func entryAppendWithBatchOfAnotherShard() {
        let handle = TransmittableBatch(shard: Fixtures.otherShard, batchID: Fixtures.batchID, batch: Fixtures.hollowBatch)
        let e = Self.decodeEntry(Self.entryValue(kind: 2, tail: handle.encode()))
        #expect(e?.kind == .invalidValue && e?.subject == "txns entry batch")
    }

    @Test func entryAppendWithBrokenBatch() {
        // The outer checksum is right but the embedded handle is not: its own error shows.
        var handle = Fixtures.handle.encode()
        handle[60] ^= 1
        #expect(Self.decodeEntry(Self.entryValue(kind: 2, tail: handle))?.kind == .checksumMismatch)
        #expect(Self.decodeEntry(Self.entryValue(kind: 2, tail: [1, 2, 3]))?.kind == .badMagic)
        #expect(Self.decodeEntry(Self.entryValue(kind: 2, tail: Fixtures.handle.encode() + [0]))?.kind == .checksumMismatch)
    }

    @Test func entryKeyAndValueNameDifferentShards() {
        let value = Self.entryValue(kind: 1, shard: Fixtures.otherShard)
        let e = Self.decodeEntry(value)
        #expect(e?.kind == .invalidValue && e?.subject == "txns entry key")
        // The same value with its own key is fine.
        #expect(Self.decodeEntry(key: Array(Fixtures.otherShard.description.utf8), value) == nil)
    }

    @Test func entryKeyThatIsNotAShardID() {
        for key: [UInt8] in [[], Array("hello".utf8), [0xFF, 0xFE], Array(Fixtures.shardText.utf8.dropFirst())] {
            let e = Self.decodeEntry(key: key, Fixtures.register.encodedValue)
            #expect(e?.kind == .invalidValue && e?.subject == "txns entry key", "\(key)")
        }
    }

    @Test func entryKeyMustBeCanonicalText() {
        // Uppercase hex names the same shard, but the txns shard compares keys as bytes:
        // a retraction re-encoded from the decoded entry would not cancel such an update.
        let upper = Array(("s" + Fixtures.shardText.dropFirst().uppercased()).utf8)
        let e = Self.decodeEntry(key: upper, Fixtures.register.encodedValue)
        #expect(e?.kind == .invalidValue && e?.subject == "txns entry key")
    }

    @Test func entryTooShort() {
        #expect(Self.decodeEntry([]) == .truncated(field: "txns entry", needed: 30, available: 0))
        #expect(Self.decodeEntry(Array(Fixtures.register.encodedValue.dropLast()))
            == .truncated(field: "txns entry", needed: 30, available: 29))
    }

    // MARK: Batch part frame

    static func frameBytes(
        codec: UInt8 = 0, reserved: UInt16 = 0, rows: UInt64 = 1, uncompressed: UInt64 = 3,
        stored: UInt64 = 3, payload: [UInt8] = [1, 2, 3]
    ) -> [UInt8] {
        var w = ByteWriter()
        w.writeBytes(BatchPartHeader.magic)
        w.writeU8(1)
        w.writeU8(codec)
        w.writeU16(reserved)
        w.writeU64(rows)
        w.writeU64(uncompressed)
        w.writeU64(stored)
        w.writeU32(CRC32C.checksum(payload))
        w.writeTrailingChecksum()
        w.writeBytes(payload)
        return w.bytes
    }

    static func decodeFrame(_ bytes: [UInt8], max: UInt64 = 1 << 32) -> CodecError? {
        outcome { () throws(CodecError) in try BatchPartFrame.decode(bytes, maxUncompressedLength: max) }.failure
    }

    @Test func frameBuilderMatchesEncoder() {
        #expect(Self.frameBytes() == BatchPartFrame.encode(codec: .none, rowCount: 1, uncompressedLength: 3, storedPayload: [1, 2, 3]))
        #expect(Self.decodeFrame(Self.frameBytes()) == nil)
    }

    @Test func frameWrongMagicAndVersion() {
        var bytes = Self.frameBytes()
        bytes[3] = UInt8(ascii: "H")
        #expect(Self.decodeFrame(bytes) == .badMagic(format: "batch part", found: Array("TWBH".utf8)))
        #expect(Self.decodeFrame(Fixtures.handle.encode())?.kind == .badMagic)
        for version: UInt8 in [0, 2] {
            var v = Self.frameBytes()
            v[4] = version
            #expect(Self.decodeFrame(refreshFrameChecksums(v)) == .unsupportedVersion(format: "batch part", version: Int(version)))
        }
    }

    @Test func frameUnknownCodec() {
        for codec: UInt8 in [3, 0x80, 0xFF] {
            let e = Self.decodeFrame(Self.frameBytes(codec: codec))
            #expect(e?.kind == .invalidValue && e?.subject == "batch part codec")
        }
        for codec in PartCodecID.allCases {
            #expect(Self.decodeFrame(Self.frameBytes(codec: codec.rawValue)) == nil)
        }
    }

    @Test func frameReservedNotZero() {
        let e = Self.decodeFrame(Self.frameBytes(reserved: 1))
        #expect(e?.kind == .invalidValue && e?.subject == "batch part reserved")
    }

    @Test func frameUncompressedLengthBeyondLimit() {
        #expect(Self.decodeFrame(Self.frameBytes(codec: 2, uncompressed: 101), max: 100)
            == .lengthOutOfRange(field: "batch part uncompressed length", length: 101, limit: 100))
        #expect(Self.decodeFrame(Self.frameBytes(codec: 2, uncompressed: 100), max: 100) == nil)
        #expect(Self.decodeFrame(Self.frameBytes(codec: 2, uncompressed: UInt64.max))?.kind == .lengthOutOfRange)
    }

    @Test func uncompressedFrameWhoseLengthsDisagree() {
        let e = Self.decodeFrame(Self.frameBytes(codec: 0, uncompressed: 4))
        #expect(e?.kind == .invalidValue && e?.subject == "batch part payload length")
        // Compressed codecs may store any length.
        #expect(Self.decodeFrame(Self.frameBytes(codec: 1, uncompressed: 4)) == nil)
    }

    @Test func framePayloadLengthDisagreesWithObjectLength() {
        #expect(Self.decodeFrame(Self.frameBytes(codec: 1, stored: 4))
            == .truncated(field: "batch part payload", needed: 4, available: 3))
        #expect(Self.decodeFrame(Self.frameBytes(codec: 1, stored: UInt64.max))?.kind == .truncated)
        #expect(Self.decodeFrame(Self.frameBytes(codec: 1, stored: 2)) == .trailingBytes(format: "batch part", count: 1))
    }

    @Test func frameBadChecksums() {
        var header = Self.frameBytes()
        header[20] ^= 1
        #expect(Self.decodeFrame(header)?.kind == .checksumMismatch)
        #expect(Self.decodeFrame(header)?.subject == "batch part header")
        var payload = Self.frameBytes()
        payload[41] ^= 1
        #expect(Self.decodeFrame(payload) == .checksumMismatch(
            format: "batch part payload", stored: CRC32C.checksum([1, 2, 3]), computed: CRC32C.checksum([1, 3, 3])))
    }
}
