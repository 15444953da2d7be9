import PersistCodec
import PersistCore
import Testing

/// The framed records and segment header of LogConsensus's files.
@Suite struct ConsensusLogRecordTests {
    static let version = ConsensusLogRecord.version(
        key: Array("s1".utf8), VersionedData(seqno: SeqNo(7), data: [0xAA, 0xBB]))
    static let truncation = ConsensusLogRecord.truncation(key: Array("s1".utf8), below: SeqNo(5))

    @Test func goldenBytes() {
        // payload: kind 1 | key len 2 "s1" | seqno 7 LE | data len 2 AA BB = 15 bytes.
        let payload: [UInt8] = [1, 2, 0x73, 0x31, 7, 0, 0, 0, 0, 0, 0, 0, 2, 0xAA, 0xBB]
        let crc = CRC32C.checksum(payload)
        let expected: [UInt8] =
            [15, 0, 0, 0] + [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24)]
            + payload
        #expect(Self.version.encoded() == expected)
        #expect(
            Self.truncation.encoded().suffix(12) == [2, 2, 0x73, 0x31, 5, 0, 0, 0, 0, 0, 0, 0],
            "truncation payload: kind 2, key, seqno; no data")
        #expect(
            ConsensusLogSegmentHeader(segmentID: 3).encode().prefix(16)
                == [0x54, 0x57, 0x43, 0x4C, 1, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0])
    }

    @Test func aSequenceOfRecordsReadsBack() {
        let bytes = Self.version.encoded() + Self.truncation.encoded()
        guard case .record(let first, let n1) = ConsensusLogRecord.read(bytes, at: 0, end: bytes.count) else {
            Issue.record("first record unreadable")
            return
        }
        #expect(first == Self.version)
        guard case .record(let second, let n2) = ConsensusLogRecord.read(bytes, at: n1, end: bytes.count) else {
            Issue.record("second record unreadable")
            return
        }
        #expect(second == Self.truncation)
        #expect(ConsensusLogRecord.read(bytes, at: n1 + n2, end: bytes.count) == .end)
    }

    @Test func everyTruncationIsInvalid() {
        for record in [Self.version, Self.truncation] {
            let bytes = record.encoded()
            for cut in 1..<bytes.count {
                guard case .invalid = ConsensusLogRecord.read(Array(bytes[..<cut]), at: 0, end: cut) else {
                    Issue.record("a record cut to \(cut) of \(bytes.count) bytes was accepted")
                    continue
                }
            }
        }
    }

    @Test func everySingleByteFlipIsInvalid() {
        for record in [Self.version, Self.truncation] {
            let bytes = record.encoded()
            for offset in bytes.indices {
                for mask: UInt8 in [0x01, 0x80, 0xFF] {
                    var bad = bytes
                    bad[offset] ^= mask
                    if case .record(let r, _) = ConsensusLogRecord.read(bad, at: 0, end: bad.count) {
                        Issue.record("flip \(mask) at \(offset) decoded to \(r)")
                    }
                }
            }
        }
        let header = ConsensusLogSegmentHeader(segmentID: 9).encode()
        for offset in header.indices {
            var bad = header
            bad[offset] ^= 0x10
            #expect(throws: CodecError.self) { try ConsensusLogSegmentHeader.decode(bad) }
        }
    }

    @Test func hugeLengthsAreRejectedWithoutAllocating() {
        var bytes: [UInt8] = [0xFF, 0xFF, 0xFF, 0x7F, 0, 0, 0, 0]
        bytes += Array(repeating: 0, count: 16)
        guard case .invalid(let e) = ConsensusLogRecord.read(bytes, at: 0, end: bytes.count) else {
            Issue.record("a 2 GiB length was accepted")
            return
        }
        guard case .lengthOutOfRange = e else {
            Issue.record("expected lengthOutOfRange, got \(e)")
            return
        }
    }

    @Test func seqnosAboveInt64MaxAreRejected() {
        var payload: [UInt8] = [2, 1, 0x6B]
        payload += [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        let crc = CRC32C.checksum(payload)
        var w = ByteWriter()
        w.writeU32(UInt32(payload.count))
        w.writeU32(crc)
        w.writeBytes(payload)
        guard case .invalid(.invalidValue(let field, _)) = ConsensusLogRecord.read(w.bytes, at: 0, end: w.count) else {
            Issue.record("a seqno of 2^64-1 was accepted")
            return
        }
        #expect(field == "log record seqno")
    }

    @Test func randomBytesNeverTrap() {
        var g = SeededGenerator(seed: 77)
        for _ in 0..<50_000 {
            let n = Int.random(in: 0...64, using: &g)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
            if n >= 8 && Bool.random(using: &g) {
                // A plausible frame: small length, correct checksum over random payload.
                let len = n - 8
                let crc = CRC32C.checksum(Array(bytes[8...]))
                for i in 0..<4 { bytes[i] = UInt8(truncatingIfNeeded: UInt32(len) >> (8 * UInt32(i))) }
                for i in 0..<4 { bytes[4 + i] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i))) }
            }
            if case .record(let r, let length) = ConsensusLogRecord.read(bytes, at: 0, end: bytes.count) {
                #expect(r.encoded() == Array(bytes[0..<length]), "a decoded record re-encodes to its bytes")
            }
            _ = try? ConsensusLogSegmentHeader.decode(bytes)
        }
    }
}

@Suite struct ConsensusLogSegmentHeaderRegressionTests {
    /// Found by the fuzzer: reserved bytes that are not zero, under a valid checksum,
    /// decoded and then re-encoded differently.
    @Test func nonZeroReservedBytesAreRejected() {
        var w = ByteWriter()
        w.writeBytes(ConsensusLogSegmentHeader.magic)
        w.writeU8(ConsensusLogSegmentHeader.currentVersion)
        w.writeBytes([0x00, 0xBF, 0xFF])
        w.writeU64(7)
        w.writeTrailingChecksum()
        #expect(throws: CodecError.self) { try ConsensusLogSegmentHeader.decode(w.bytes) }
    }
}
