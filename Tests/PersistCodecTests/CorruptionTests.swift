import PersistCodec
import PersistCore
import Testing

/// Decoders take untrusted bytes: every truncation and every single-byte change of a valid
/// encoding must be refused with a `CodecError` that says what is wrong.
@Suite struct CorruptionTests {
    static let masks: [UInt8] = [0x01, 0x80, 0xFF]

    // MARK: Batch handle

    @Test func everyTruncatedBatchHandleIsRefused() {
        let bytes = Fixtures.handle.encode()
        for n in 0..<bytes.count {
            let e = outcome { () throws(CodecError) in try TransmittableBatch.decode(Array(bytes[0..<n])) }.failure
            // Fewer than four bytes cannot show the magic; up to the minimum size the length
            // check names the truncation; beyond it the trailing checksum no longer matches.
            switch n {
            case 0..<4: #expect(e == .badMagic(format: "batch handle", found: Array(bytes[0..<n])), "prefix \(n)")
            case 4..<41: #expect(e?.kind == .truncated, "prefix \(n)")
            default: #expect(e?.kind == .checksumMismatch, "prefix \(n)")
            }
        }
    }

    @Test func everyByteChangeOfABatchHandleIsRefused() {
        let bytes = Fixtures.handle.encode()
        for offset in 0..<bytes.count {
            for mask in Self.masks {
                var bad = bytes
                bad[offset] ^= mask
                let e = outcome { () throws(CodecError) in try TransmittableBatch.decode(bad) }.failure
                switch offset {
                case 0..<4: #expect(e?.kind == .badMagic, "offset \(offset)")
                case 4: #expect(e == .unsupportedVersion(format: "batch handle", version: Int(1 ^ mask)))
                default: #expect(e?.kind == .checksumMismatch, "offset \(offset) mask \(mask)")
                }
            }
        }
    }

    // MARK: Txns entries

    static let entries: [(String, TxnsEntry)] = [("register", Fixtures.register), ("append", Fixtures.append)]

    @Test func everyTruncatedTxnsEntryValueIsRefused() {
        for (name, entry) in Self.entries {
            let key = entry.encodedKey, value = entry.encodedValue
            for n in 0..<value.count {
                let e = outcome { () throws(CodecError) in try TxnsEntry.decode(key: key, value: Array(value[0..<n])) }.failure
                // Below the fixed part plus checksum it is a truncation; above, a checksum failure.
                if n < 30 {
                    #expect(e?.kind == .truncated, "\(name) prefix \(n)")
                } else {
                    #expect(e?.kind == .checksumMismatch, "\(name) prefix \(n)")
                }
            }
        }
    }

    @Test func everyTruncatedTxnsEntryKeyIsRefused() {
        for (name, entry) in Self.entries {
            let key = entry.encodedKey, value = entry.encodedValue
            for n in 0..<key.count {
                let e = outcome { () throws(CodecError) in try TxnsEntry.decode(key: Array(key[0..<n]), value: value) }.failure
                #expect(e?.kind == .invalidValue && e?.subject == "txns entry key", "\(name) key prefix \(n)")
            }
            // A longer key is no better.
            let e = outcome { () throws(CodecError) in try TxnsEntry.decode(key: key + [0x30], value: value) }.failure
            #expect(e?.subject == "txns entry key")
        }
    }

    @Test func everyByteChangeOfATxnsEntryValueIsRefused() {
        for (name, entry) in Self.entries {
            let key = entry.encodedKey, value = entry.encodedValue
            for offset in 0..<value.count {
                for mask in Self.masks {
                    var bad = value
                    bad[offset] ^= mask
                    let e = outcome { () throws(CodecError) in try TxnsEntry.decode(key: key, value: bad) }.failure
                    // The checksum covers everything, the embedded batch handle included.
                    #expect(e?.kind == .checksumMismatch && e?.subject == "txns entry", "\(name) offset \(offset) mask \(mask)")
                }
            }
        }
    }

    @Test func everyByteChangeOfATxnsEntryKeyIsRefused() {
        // The key is not covered by the value's checksum; it must still name exactly the
        // shard in the value, in its canonical (lowercase) text. 0x20 turns a hex letter
        // into its uppercase twin, which parses to the same id but is a different key.
        for (name, entry) in Self.entries {
            let key = entry.encodedKey, value = entry.encodedValue
            for offset in 0..<key.count {
                for mask in Self.masks + [0x20] {
                    var bad = key
                    bad[offset] ^= mask
                    let e = outcome { () throws(CodecError) in try TxnsEntry.decode(key: bad, value: value) }.failure
                    #expect(e?.kind == .invalidValue && e?.subject == "txns entry key", "\(name) key offset \(offset) mask \(mask)")
                }
            }
        }
    }

    @Test func keyFromAnotherShardIsRefused() {
        var g = SeededGenerator(seed: 400)
        for (_, entry) in Self.entries {
            for _ in 0..<50 {
                let other = ShardID(using: &g)
                let e = outcome { () throws(CodecError) in
                    try TxnsEntry.decode(key: Array(other.description.utf8), value: entry.encodedValue)
                }.failure
                #expect(e?.kind == .invalidValue && e?.subject == "txns entry key")
            }
        }
    }

    // MARK: Batch part frames

    @Test func everyTruncatedFrameIsRefused() {
        let bytes = Fixtures.frame
        for n in 0..<bytes.count {
            let e = outcome { () throws(CodecError) in try BatchPartFrame.decode(Array(bytes[0..<n])) }.failure
            switch n {
            case 0..<4: #expect(e == .badMagic(format: "batch part", found: Array(bytes[0..<n])), "prefix \(n)")
            case 4..<BatchPartHeader.size:
                #expect(e?.kind == .truncated, "prefix \(n)")
            default:
                // The header is intact and says how long the payload is.
                #expect(e == .truncated(field: "batch part payload", needed: 42, available: n - 40), "prefix \(n)")
            }
        }
    }

    @Test func everyByteChangeOfAFrameIsRefused() {
        let bytes = Fixtures.frame
        for offset in 0..<bytes.count {
            for mask in Self.masks {
                var bad = bytes
                bad[offset] ^= mask
                let e = outcome { () throws(CodecError) in try BatchPartFrame.decode(bad) }.failure
                switch offset {
                case 0..<4: #expect(e?.kind == .badMagic, "offset \(offset)")
                case 4: #expect(e == .unsupportedVersion(format: "batch part", version: Int(1 ^ mask)))
                case 5..<40:
                    #expect(e?.kind == .checksumMismatch && e?.subject == "batch part header", "offset \(offset)")
                default:
                    #expect(e?.kind == .checksumMismatch && e?.subject == "batch part payload", "offset \(offset)")
                }
            }
        }
    }

    @Test func bytesAfterThePayloadAreRefused() {
        for extra in [1, 2, 100] {
            let e = outcome { () throws(CodecError) in
                try BatchPartFrame.decode(Fixtures.frame + [UInt8](repeating: 0, count: extra))
            }.failure
            #expect(e == .trailingBytes(format: "batch part", count: extra))
        }
    }

    // MARK: Part rows

    @Test func truncatedRowsAreRefused() {
        let rows = PartRows.encode(Fixtures.rows)
        for n in 0..<rows.count {
            let e = outcome { () throws(CodecError) in try PartRows.decode(Array(rows[0..<n]), rowCount: 2) }.failure
            // Too short to hold two rows at all, or cut inside a row.
            if n < 36 {
                #expect(e == .lengthOutOfRange(field: "batch part row count", length: 2, limit: UInt64(n / 18)), "prefix \(n)")
            } else {
                #expect(e?.kind == .truncated, "prefix \(n)")
            }
        }
    }

    @Test func wrongRowCountIsRefused() {
        let rows = PartRows.encode(Fixtures.rows)
        #expect(outcome { () throws(CodecError) in try PartRows.decode(rows, rowCount: 0) }.failure
            == .trailingBytes(format: "batch part rows", count: 42))
        #expect(outcome { () throws(CodecError) in try PartRows.decode(rows, rowCount: 1) }.failure
            == .trailingBytes(format: "batch part rows", count: 20))
        #expect(outcome { () throws(CodecError) in try PartRows.decode(rows, rowCount: 3) }.failure?.kind == .lengthOutOfRange)
        #expect(outcome { () throws(CodecError) in try PartRows.decode(rows, rowCount: UInt64.max) }.failure?.kind == .lengthOutOfRange)
        #expect(outcome { () throws(CodecError) in try PartRows.decode([], rowCount: 1) }.failure?.kind == .lengthOutOfRange)
    }

    @Test func changedRowBytesFailOrDecodeToSomethingThatReencodesIdentically() {
        // Rows carry no checksum of their own (the frame's covers them), so a change may
        // still decode; then it must be a faithful decoding of the changed bytes.
        let rows = PartRows.encode(Fixtures.rows)
        var refusedLengthChanges = 0
        for offset in 0..<rows.count {
            for mask in Self.masks {
                var bad = rows
                bad[offset] ^= mask
                switch outcome({ () throws(CodecError) in try PartRows.decode(bad, rowCount: 2) }) {
                case .success(let decoded):
                    #expect(PartRows.encode(decoded) == bad, "offset \(offset) mask \(mask)")
                    #expect(decoded != Fixtures.rows)
                case .failure:
                    refusedLengthChanges += 1
                }
            }
        }
        // Changing any of the four length bytes always breaks the framing.
        #expect(refusedLengthChanges >= 4 * Self.masks.count)
    }
}
