import PersistCodec
import PersistCore
import Testing

/// Pins the durable formats. The expected bytes were derived by hand from the layouts
/// documented on each encoder (and cross-checked with an independent encoder outside
/// this package). If one of these fails, a stored format changed: that needs a new
/// format version and a decoder for the old one, not a new constant here.
@Suite struct GoldenBytesTests {
    static let handleHex = """
        54574248010f1e2d3c4b5a49688776655443322110b0b1b2b3b4b5b6b7b8b9ba\
        bbbcbdbebf010500000000000000010900000000000000010000000000000000\
        0500000000000000020b702f77312f706172742d302c01000000000000030000\
        00000000000161016301070000000000000001feffffffffffffff0b702f7731\
        2f706172742d31780000000000000002000000000000000000000070ef3f34
        """

    static let keyHex = "7330663165326433632d346235612d343936382d383737362d363535343433333232313130"

    static let registerValueHex = "01010f1e2d3c4b5a496887766554433221100068e5cf8b01000075a1bbac"

    static let appendValueHex = """
        01020f1e2d3c4b5a496887766554433221102a0000000000000054574248010f\
        1e2d3c4b5a49688776655443322110b0b1b2b3b4b5b6b7b8b9babbbcbdbebf01\
        0500000000000000010900000000000000010000000000000000050000000000\
        0000020b702f77312f706172742d302c01000000000000030000000000000001\
        61016301070000000000000001feffffffffffffff0b702f77312f706172742d\
        31780000000000000002000000000000000000000070ef3f3483fadc33
        """

    static let rowsHex = "026b31027631050000000000000001000000000000000200ff000600000000000000ffffffffffffffff"

    static let frameHex = """
        545742500100000002000000000000002a000000000000002a00000000000000\
        07adcbb0f94cbfdd026b31027631050000000000000001000000000000000200\
        ff000600000000000000ffffffffffffffff
        """

    @Test func batchHandle() throws {
        let bytes = Fixtures.handle.encode()
        #expect(hexString(bytes) == Self.handleHex)
        #expect(try TransmittableBatch.decode(hexBytes(Self.handleHex)) == Fixtures.handle)

        // Field by field, as documented: magic | version | shard | batch id | hollow batch | crc.
        #expect(bytes.count == 159)
        #expect(Array(bytes[0..<4]) == Array("TWBH".utf8))
        #expect(bytes[4] == 1)
        #expect(Array(bytes[5..<21]) == Fixtures.shard.bytes)
        #expect(Array(bytes[21..<37]) == Fixtures.batchID)
        // Description: three tagged antichains {5}, {9}, {0}.
        #expect(bytes[37] == 1 && le(bytes, at: 38, as: UInt64.self) == 5)
        #expect(bytes[46] == 1 && le(bytes, at: 47, as: UInt64.self) == 9)
        #expect(bytes[55] == 1 && le(bytes, at: 56, as: UInt64.self) == 0)
        #expect(le(bytes, at: 64, as: UInt64.self) == 5)  // batch row count
        #expect(bytes[72] == 2)  // part count varint
        // Part 0: key, size, rows, key bounds, ts rewrite, diffs sum.
        #expect(bytes[73] == 11 && Array(bytes[74..<85]) == Array("p/w1/part-0".utf8))
        #expect(le(bytes, at: 85, as: UInt64.self) == 300)
        #expect(le(bytes, at: 93, as: UInt64.self) == 3)
        #expect(Array(bytes[101..<105]) == [1, UInt8(ascii: "a"), 1, UInt8(ascii: "c")])
        #expect(bytes[105] == 1 && le(bytes, at: 106, as: UInt64.self) == 7)
        #expect(bytes[114] == 1 && le(bytes, at: 115, as: Int64.self) == -2)
        // Part 1: no statistics, no rewrite, no sum.
        #expect(bytes[123] == 11 && Array(bytes[124..<135]) == Array("p/w1/part-1".utf8))
        #expect(le(bytes, at: 135, as: UInt64.self) == 120)
        #expect(le(bytes, at: 143, as: UInt64.self) == 2)
        #expect(Array(bytes[151..<155]) == [0, 0, 0, 0])
        // Trailer: CRC32C of the 155 preceding bytes.
        #expect(le(bytes, at: 155, as: UInt32.self) == CRC32C.checksum(Array(bytes[0..<155])))
        #expect(le(bytes, at: 155, as: UInt32.self) == 0x343F_EF70)
    }

    @Test func txnsEntryRegister() throws {
        let entry = Fixtures.register
        #expect(hexString(entry.encodedKey) == Self.keyHex)
        #expect(entry.encodedKey == Array(Fixtures.shardText.utf8))
        let value = entry.encodedValue
        #expect(hexString(value) == Self.registerValueHex)
        #expect(try TxnsEntry.decode(key: hexBytes(Self.keyHex), value: hexBytes(Self.registerValueHex)) == entry)

        // version | kind | shard | ts | crc.
        #expect(value.count == 30)
        #expect(value[0] == 1)
        #expect(value[1] == 1)
        #expect(Array(value[2..<18]) == Fixtures.shard.bytes)
        #expect(le(value, at: 18, as: UInt64.self) == 0x0000_018B_CFE5_6800)
        #expect(le(value, at: 26, as: UInt32.self) == CRC32C.checksum(Array(value[0..<26])))
        #expect(le(value, at: 26, as: UInt32.self) == 0xACBB_A175)
    }

    @Test func txnsEntryAppend() throws {
        let entry = Fixtures.append
        #expect(hexString(entry.encodedKey) == Self.keyHex)
        let value = entry.encodedValue
        #expect(hexString(value) == Self.appendValueHex)
        #expect(try TxnsEntry.decode(key: hexBytes(Self.keyHex), value: hexBytes(Self.appendValueHex)) == entry)

        // version | kind | shard | ts | batch handle bytes | crc.
        #expect(value.count == 26 + 159 + 4)
        #expect(value[0] == 1)
        #expect(value[1] == 2)
        #expect(Array(value[2..<18]) == Fixtures.shard.bytes)
        #expect(le(value, at: 18, as: UInt64.self) == 42)
        #expect(hexString(value[26..<185]) == Self.handleHex)
        #expect(le(value, at: 185, as: UInt32.self) == CRC32C.checksum(Array(value[0..<185])))
        #expect(le(value, at: 185, as: UInt32.self) == 0x33DC_FA83)
    }

    @Test func partRows() throws {
        let rows = PartRows.encode(Fixtures.rows)
        #expect(hexString(rows) == Self.rowsHex)
        #expect(try PartRows.decode(hexBytes(Self.rowsHex), rowCount: 2) == Fixtures.rows)
        // key (len+bytes) | value (len+bytes) | time u64 | diff i64, per row.
        #expect(rows.count == 42)
        #expect(Array(rows[0..<6]) == [2, UInt8(ascii: "k"), UInt8(ascii: "1"), 2, UInt8(ascii: "v"), UInt8(ascii: "1")])
        #expect(le(rows, at: 6, as: UInt64.self) == 5)
        #expect(le(rows, at: 14, as: Int64.self) == 1)
        #expect(Array(rows[22..<26]) == [2, 0x00, 0xFF, 0])
        #expect(le(rows, at: 26, as: UInt64.self) == 6)
        #expect(le(rows, at: 34, as: Int64.self) == -1)
    }

    @Test func batchPartFrame() throws {
        let bytes = Fixtures.frame
        #expect(hexString(bytes) == Self.frameHex)
        let decoded = try BatchPartFrame.decode(hexBytes(Self.frameHex))
        #expect(decoded.header == BatchPartHeader(
            codec: .none, rowCount: 2, uncompressedLength: 42, payloadLength: 42, payloadChecksum: 0xB0CB_AD07))
        #expect(hexString(decoded.payload) == Self.rowsHex)
        #expect(try PartRows.decode(decoded.payload, rowCount: decoded.header.rowCount) == Fixtures.rows)

        // magic | version | codec | reserved | rows | uncompressed | stored | payload crc |
        // header crc | payload.
        #expect(bytes.count == BatchPartHeader.size + 42)
        #expect(Array(bytes[0..<4]) == Array("TWBP".utf8))
        #expect(bytes[4] == 1)
        #expect(bytes[5] == PartCodecID.none.rawValue)
        #expect(le(bytes, at: 6, as: UInt16.self) == 0)
        #expect(le(bytes, at: 8, as: UInt64.self) == 2)
        #expect(le(bytes, at: 16, as: UInt64.self) == 42)
        #expect(le(bytes, at: 24, as: UInt64.self) == 42)
        #expect(le(bytes, at: 32, as: UInt32.self) == CRC32C.checksum(Array(bytes[40...])))
        #expect(le(bytes, at: 36, as: UInt32.self) == CRC32C.checksum(Array(bytes[0..<36])))
        #expect(le(bytes, at: 36, as: UInt32.self) == 0xDDBF_4CF9)
        #expect(hexString(bytes[40...]) == Self.rowsHex)
    }

    @Test func codecIDsAreStable() {
        #expect(PartCodecID.none.rawValue == 0)
        #expect(PartCodecID.lz4.rawValue == 1)
        #expect(PartCodecID.zstd.rawValue == 2)
        #expect(BatchPartHeader.magic == Array("TWBP".utf8))
        #expect(TransmittableBatch.magic == Array("TWBH".utf8))
        #expect(BatchPartHeader.currentVersion == 1)
        #expect(TransmittableBatch.currentVersion == 1)
        #expect(TxnsEntry.currentVersion == 1)
    }
}
