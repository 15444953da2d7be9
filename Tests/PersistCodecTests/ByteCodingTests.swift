import PersistCodec
import PersistCore
import Testing

@Suite struct ByteCodingTests {
    @Test func fixedWidthIntegersAreLittleEndian() {
        var w = ByteWriter()
        w.writeU8(0xAB)
        w.writeU16(0x0102)
        w.writeU32(0x0304_0506)
        w.writeU64(0x0708_090A_0B0C_0D0E)
        w.writeI64(-2)
        #expect(w.bytes == [
            0xAB,
            0x02, 0x01,
            0x06, 0x05, 0x04, 0x03,
            0x0E, 0x0D, 0x0C, 0x0B, 0x0A, 0x09, 0x08, 0x07,
            0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        ])
        #expect(w.count == 23)
    }

    @Test func fixedWidthIntegersRoundTrip() throws {
        var g = SeededGenerator(seed: 100)
        var w = ByteWriter()
        var expected: [(UInt8, UInt16, UInt32, UInt64, Int64)] = [
            (0, 0, 0, 0, 0), (.max, .max, .max, .max, .max), (1, 1, 1, 1, .min), (0x80, 0x8000, 0x8000_0000, 1 << 63, -1),
        ]
        for _ in 0..<200 {
            expected.append((
                UInt8.random(in: 0...255, using: &g), UInt16.random(in: 0...UInt16.max, using: &g),
                UInt32.random(in: 0...UInt32.max, using: &g), g.next(), Int64(bitPattern: g.next())
            ))
        }
        for (a, b, c, d, e) in expected {
            w.writeU8(a); w.writeU16(b); w.writeU32(c); w.writeU64(d); w.writeI64(e)
        }
        var r = ByteReader(w.bytes)
        for (a, b, c, d, e) in expected {
            #expect(try r.readU8("a") == a)
            #expect(try r.readU16("b") == b)
            #expect(try r.readU32("c") == c)
            #expect(try r.readU64("d") == d)
            #expect(try r.readI64("e") == e)
        }
        #expect(r.isAtEnd)
        try r.expectEnd("ints")
    }

    @Test func readingPastTheEndIsTruncation() {
        let three: [UInt8] = [1, 2, 3]
        var r = ByteReader(three)
        #expect(outcome { () throws(CodecError) in try r.readU32("word") }.failure
            == .truncated(field: "word", needed: 4, available: 3))
        // A failed read consumes nothing.
        #expect(r.offset == 0)
        #expect(outcome { () throws(CodecError) in try r.readU64("x") }.failure
            == .truncated(field: "x", needed: 8, available: 3))
        #expect(outcome { () throws(CodecError) in try r.readI64("x") }.failure?.kind == .truncated)
        #expect(outcome { () throws(CodecError) in try r.readBytes(4, "blob") }.failure
            == .truncated(field: "blob", needed: 4, available: 3))
        #expect(outcome { () throws(CodecError) in try r.skip(4, "gap") }.failure?.kind == .truncated)
        #expect(try! r.readU16("half") == 0x0201)
        #expect(outcome { () throws(CodecError) in try r.readU16("half") }.failure
            == .truncated(field: "half", needed: 2, available: 1))
        #expect(try! r.readU8("last") == 3)
        #expect(outcome { () throws(CodecError) in try r.readU8("more") }.failure
            == .truncated(field: "more", needed: 1, available: 0))
    }

    @Test func varintEdgeValuesHaveExpectedBytes() throws {
        let cases: [(UInt64, [UInt8])] = [
            (0, [0x00]),
            (1, [0x01]),
            (127, [0x7F]),
            (128, [0x80, 0x01]),
            (300, [0xAC, 0x02]),
            (16383, [0xFF, 0x7F]),
            (16384, [0x80, 0x80, 0x01]),
            (UInt64(1) << 63, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]),
            (UInt64.max, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
        ]
        for (value, bytes) in cases {
            var w = ByteWriter()
            w.writeVarint(value)
            #expect(w.bytes == bytes, "\(value)")
            var r = ByteReader(bytes)
            #expect(try r.readVarint("v") == value)
            #expect(r.isAtEnd)
        }
    }

    @Test func varintRoundTripsAcrossBitLengths() throws {
        var g = SeededGenerator(seed: 101)
        for bits in 0...64 {
            for _ in 0..<20 {
                let value: UInt64 = bits == 0 ? 0 : (g.next() >> UInt64(64 - bits)) | (UInt64(1) << UInt64(bits - 1))
                var w = ByteWriter()
                w.writeVarint(value)
                #expect(w.count == max(1, (bits + 6) / 7))
                w.writeU8(0xEE)  // Something after it: the reader must stop at the right byte.
                var r = ByteReader(w.bytes)
                #expect(try r.readVarint("v") == value)
                #expect(try r.readU8("sentinel") == 0xEE)
            }
        }
    }

    @Test func overlongVarintsAreRejected() {
        let overlong: [[UInt8]] = [
            [0x80, 0x00],  // zero in two bytes
            [0xFF, 0x00],  // 127 in two bytes
            [0x81, 0x80, 0x00],
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00],  // zero in ten bytes
        ]
        for bytes in overlong {
            var r = ByteReader(bytes)
            let e = outcome { () throws(CodecError) in try r.readVarint("n") }.failure
            #expect(e?.kind == .invalidValue, "\(bytes)")
            #expect(e?.subject == "n")
        }
    }

    @Test func varintsBeyond64BitsAreRejected() {
        let tooBig: [[UInt8]] = [
            // Tenth byte may only hold the top bit.
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x02],
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7F],
            // Eleven bytes.
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x81, 0x00],
        ]
        for bytes in tooBig {
            var r = ByteReader(bytes)
            let e = outcome { () throws(CodecError) in try r.readVarint("n") }.failure
            #expect(e?.kind == .invalidValue, "\(bytes)")
        }
        // An endless run of continuation bytes stops at the tenth byte, not at the end.
        var r = ByteReader([UInt8](repeating: 0x80, count: 1000))
        #expect(outcome { () throws(CodecError) in try r.readVarint("n") }.failure?.kind == .invalidValue)
        #expect(r.offset <= 10)
    }

    @Test func truncatedVarintIsTruncation() {
        for bytes: [UInt8] in [[], [0x80], [0xFF, 0xFF], [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80]] {
            var r = ByteReader(bytes)
            #expect(outcome { () throws(CodecError) in try r.readVarint("n") }.failure?.kind == .truncated, "\(bytes)")
        }
    }

    @Test func readCountRefusesCountsBeyondRemainingBytes() throws {
        // Count 3 with exactly 3 bytes left is fine, 4 is not.
        var ok = ByteReader([0x03, 1, 2, 3])
        #expect(try ok.readCount("items") == 3)
        var bad = ByteReader([0x04, 1, 2, 3])
        #expect(outcome { () throws(CodecError) in try bad.readCount("items") }.failure
            == .lengthOutOfRange(field: "items", length: 4, limit: 3))
        // Items of at least 4 bytes: 6 remaining bytes fit only one item.
        var sized = ByteReader([0x02, 0, 0, 0, 0, 0, 0])
        #expect(outcome { () throws(CodecError) in try sized.readCount("items", minItemSize: 4) }.failure
            == .lengthOutOfRange(field: "items", length: 2, limit: 1))
        var sizedOK = ByteReader([0x01, 0, 0, 0, 0, 0, 0])
        #expect(try sizedOK.readCount("items", minItemSize: 4) == 1)
        // An explicit limit applies even when the bytes would allow more.
        var limited = ByteReader([0x05] + [UInt8](repeating: 0, count: 10))
        #expect(outcome { () throws(CodecError) in try limited.readCount("items", limit: 4) }.failure
            == .lengthOutOfRange(field: "items", length: 5, limit: 4))
        // A huge count never reaches an allocation.
        var w = ByteWriter()
        w.writeVarint(UInt64.max)
        var huge = ByteReader(w.bytes)
        #expect(outcome { () throws(CodecError) in try huge.readCount("items") }.failure?.kind == .lengthOutOfRange)
        // Zero is always allowed, even at the end.
        var zero = ByteReader([0x00])
        #expect(try zero.readCount("items", minItemSize: 100) == 0)
    }

    @Test func lengthPrefixedAndStringsRoundTrip() throws {
        var g = SeededGenerator(seed: 102)
        var w = ByteWriter()
        let blobs = (0..<50).map { _ in Fixtures.randomBytes(Int.random(in: 0...300, using: &g), using: &g) }
        let strings = (0..<50).map { _ in Fixtures.randomKey(using: &g) } + [""]
        for b in blobs { w.writeLengthPrefixed(b) }
        for s in strings { w.writeString(s) }
        var r = ByteReader(w.bytes)
        for b in blobs { #expect(try r.readLengthPrefixed("blob") == b) }
        for s in strings {
            let read = try r.readString("s")
            #expect(Array(read.utf8) == Array(s.utf8))
        }
        try r.expectEnd("strings")
    }

    @Test func lengthPrefixedRespectsLimitAndRemaining() {
        var over = ByteReader([0x05, 1, 2, 3])
        #expect(outcome { () throws(CodecError) in try over.readLengthPrefixed("b") }.failure?.kind == .lengthOutOfRange)
        var limited = ByteReader([0x03, 1, 2, 3])
        #expect(outcome { () throws(CodecError) in try limited.readLengthPrefixed("b", limit: 2) }.failure
            == .lengthOutOfRange(field: "b", length: 3, limit: 2))
    }

    @Test func invalidUTF8IsRejected() {
        for bad: [UInt8] in [[0xFF], [0xC3], [0xE6, 0x97], [0xED, 0xA0, 0x80], [0xC0, 0x80]] {
            var r = ByteReader([UInt8(bad.count)] + bad)
            let e = outcome { () throws(CodecError) in try r.readString("name") }.failure
            #expect(e?.kind == .invalidValue, "\(bad)")
            #expect(e?.subject == "name")
        }
    }

    @Test func expectEndReportsTrailingBytes() throws {
        var r = ByteReader([1, 2, 3])
        _ = try r.readU8("x")
        #expect(outcome { () throws(CodecError) in try r.expectEnd("thing") }.failure
            == .trailingBytes(format: "thing", count: 2))
    }

    @Test func readerOverASubrangeStaysInside() throws {
        let bytes: [UInt8] = [9, 9, 1, 2, 3, 4, 9, 9]
        var r = ByteReader(bytes, range: 2..<6)
        #expect(r.remaining == 4)
        #expect(try r.readU32("word") == 0x0403_0201)
        #expect(r.isAtEnd)
        #expect(outcome { () throws(CodecError) in try r.readU8("past") }.failure?.kind == .truncated)
        var s = ByteReader(bytes, range: 2..<6)
        #expect(try s.skip(3, "skip") == 2..<5)
        #expect(try s.readU8("last") == 4)
    }

    @Test func patchOverwritesInPlace() {
        var w = ByteWriter()
        w.writeU8(1)
        w.writeU32(0)
        w.writeU8(2)
        w.patchU32(0xDEAD_BEEF, at: 1)
        #expect(w.bytes == [1, 0xEF, 0xBE, 0xAD, 0xDE, 2])
    }

    @Test func trailingChecksumIsVerified() throws {
        var w = ByteWriter()
        w.writeString("hello")
        w.writeU64(77)
        w.writeTrailingChecksum()
        let bytes = w.bytes
        #expect(le(bytes, at: bytes.count - 4, as: UInt32.self) == CRC32C.checksum(Array(bytes.dropLast(4))))
        var r = try ByteReader.verifyingTrailingChecksum(bytes, format: "thing")
        #expect(r.remaining == bytes.count - 4)
        #expect(try r.readString("s") == "hello")
        #expect(try r.readU64("n") == 77)
        try r.expectEnd("thing")

        var bad = bytes
        bad[0] ^= 1
        let e = outcome { () throws(CodecError) in try ByteReader.verifyingTrailingChecksum(bad, format: "thing") }.failure
        #expect(e == .checksumMismatch(
            format: "thing", stored: le(bytes, at: bytes.count - 4),
            computed: CRC32C.checksum(Array(bad.dropLast(4)))))
        // Shorter than the checksum plus the minimum body.
        #expect(outcome { () throws(CodecError) in try ByteReader.verifyingTrailingChecksum([1, 2, 3], format: "thing") }.failure
            == .truncated(field: "thing", needed: 4, available: 3))
        #expect(outcome { () throws(CodecError) in
            try ByteReader.verifyingTrailingChecksum(bytes, format: "thing", minimumBody: bytes.count)
        }.failure == .truncated(field: "thing", needed: bytes.count + 4, available: bytes.count))
    }

    @Test func antichainAndOptionalEncodings() throws {
        var w = ByteWriter()
        w.writeAntichain(.empty)
        w.writeAntichain(Antichain(0x0102))
        w.writeOptionalTimestamp(nil)
        w.writeOptionalTimestamp(UInt64.max)
        w.writeShardID(Fixtures.shard)
        #expect(w.bytes == [0x00, 0x01, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0x00, 0x01]
            + [UInt8](repeating: 0xFF, count: 8) + Fixtures.shard.bytes)
        var r = ByteReader(w.bytes)
        #expect(try r.readAntichain("a") == .empty)
        #expect(try r.readAntichain("a") == Antichain(0x0102))
        #expect(try r.readOptionalTimestamp("t") == nil)
        #expect(try r.readOptionalTimestamp("t") == UInt64.max)
        #expect(try r.readShardID("s") == Fixtures.shard)
        #expect(r.isAtEnd)

        for tag: UInt8 in [2, 0x80, 0xFF] {
            var ra = ByteReader([tag] + [UInt8](repeating: 0, count: 8))
            #expect(outcome { () throws(CodecError) in try ra.readAntichain("frontier") }.failure?.kind == .invalidValue)
            var rt = ByteReader([tag] + [UInt8](repeating: 0, count: 8))
            #expect(outcome { () throws(CodecError) in try rt.readOptionalTimestamp("time") }.failure?.kind == .invalidValue)
        }
        var short = ByteReader([UInt8](repeating: 0, count: 15))
        #expect(outcome { () throws(CodecError) in try short.readShardID("id") }.failure
            == .truncated(field: "id", needed: 16, available: 15))
    }
}
