import PersistCodec
import PersistCore
import Testing

/// The coordinator's shard-name table: its invariants, its exact layout, round trips,
/// and refusal of every truncation, every flipped byte and every well-checksummed but
/// invalid table.
@Suite struct ShardNameTableTests {
    static func id(_ n: UInt8) throws -> ShardID { try ShardID(bytes: Array(repeating: n, count: 16)) }

    static func sample() throws -> ShardNameTable {
        var t = ShardNameTable()
        #expect(t.insert(name: "orders", id: try id(1)) == .inserted)
        #expect(t.insert(name: "stock/widgets", id: try id(2)) == .inserted)
        #expect(t.insert(name: "a.b:c-d_e", id: try id(3)) == .inserted)
        return t
    }

    /// The decoder's verdict on `bytes`, error included.
    func verdict(_ bytes: [UInt8]) -> Result<ShardNameTable, CodecError> {
        do { return .success(try ShardNameTable.decode(bytes)) } catch { return .failure(error) }
    }

    func failure(_ bytes: [UInt8]) -> CodecError? {
        if case .failure(let e) = verdict(bytes) { return e }
        return nil
    }

    /// Version-1 bytes of a table with `entries` as given (any order, any names), with a
    /// correct checksum: for building invalid tables the encoder refuses to produce.
    func handBuilt(_ entries: [(String, ShardID)], count: Int? = nil, trailing: [UInt8] = []) -> [UInt8] {
        var w = ByteWriter()
        w.writeBytes(ShardNameTable.magic)
        w.writeU8(1)
        w.writeVarint(UInt64(count ?? entries.count))
        for (name, id) in entries {
            w.writeString(name)
            w.writeShardID(id)
        }
        w.writeBytes(trailing)
        w.writeTrailingChecksum()
        return w.bytes
    }

    // MARK: Table semantics

    @Test func entriesAreOrderedByNameAndLookupsWorkBothWays() throws {
        let t = try Self.sample()
        #expect(t.entries.map(\.name) == ["a.b:c-d_e", "orders", "stock/widgets"])
        #expect(t.id(named: "orders") == (try Self.id(1)))
        #expect(t.name(of: try Self.id(2)) == "stock/widgets")
        #expect(t.id(named: "missing") == nil)
        #expect(t.name(of: try Self.id(9)) == nil)
        #expect(t.count == 3)
    }

    @Test func insertRefusesTakenNamesTakenIdsAndInvalidNames() throws {
        var t = try Self.sample()
        let before = t
        #expect(t.insert(name: "orders", id: try Self.id(7)) == .nameTaken(existing: try Self.id(1)))
        #expect(t.insert(name: "orders", id: try Self.id(1)) == .nameTaken(existing: try Self.id(1)))
        #expect(t.insert(name: "fresh", id: try Self.id(2)) == .idTaken(existingName: "stock/widgets"))
        for bad in ["", "has space", "tab\t", "é", String(repeating: "x", count: 257)] {
            #expect(t.insert(name: bad, id: try Self.id(8)) == .invalidName, "\(bad.debugDescription)")
        }
        #expect(t == before, "refused inserts change nothing")
        #expect(t.insert(name: String(repeating: "x", count: 256), id: try Self.id(8)) == .inserted)
    }

    @Test func theFailableInitializerChecksTheInvariants() throws {
        let a = ShardNameTable.Entry(name: "a", id: try Self.id(1))
        #expect(ShardNameTable([a, ShardNameTable.Entry(name: "b", id: try Self.id(2))])?.count == 2)
        #expect(ShardNameTable([a, ShardNameTable.Entry(name: "a", id: try Self.id(2))]) == nil)
        #expect(ShardNameTable([a, ShardNameTable.Entry(name: "b", id: try Self.id(1))]) == nil)
        #expect(ShardNameTable([ShardNameTable.Entry(name: "no space", id: try Self.id(1))]) == nil)
    }

    // MARK: Layout and round trips

    @Test func theLayoutIsMagicVersionCountEntriesAndChecksum() throws {
        var t = ShardNameTable()
        t.insert(name: "ab", id: try Self.id(0x11))
        let bytes = t.encode()
        #expect(Array(bytes[0..<4]) == Array("TWNT".utf8))
        #expect(bytes[4] == 1, "version")
        #expect(bytes[5] == 1, "entry count")
        #expect(Array(bytes[6..<9]) == [2, UInt8(ascii: "a"), UInt8(ascii: "b")])
        #expect(Array(bytes[9..<25]) == Array(repeating: 0x11, count: 16))
        #expect(bytes.count == 29)
        let crc = UInt32(bytes[25]) | UInt32(bytes[26]) << 8 | UInt32(bytes[27]) << 16 | UInt32(bytes[28]) << 24
        #expect(crc == CRC32C.checksum(Array(bytes[0..<25])))
        #expect(ShardNameTable().encode().count == 10, "an empty table is header, count and checksum")
    }

    @Test func tablesRoundTrip() throws {
        #expect(try ShardNameTable.decode(ShardNameTable().encode()) == ShardNameTable())
        let t = try Self.sample()
        #expect(try ShardNameTable.decode(t.encode()) == t)
    }

    @Test func insertionOrderDoesNotChangeTheBytes() throws {
        var a = ShardNameTable()
        var b = ShardNameTable()
        for (n, i) in [("x", 1), ("b", 2), ("m", 3)] { a.insert(name: n, id: try Self.id(UInt8(i))) }
        for (n, i) in [("m", 3), ("x", 1), ("b", 2)] { b.insert(name: n, id: try Self.id(UInt8(i))) }
        #expect(a.encode() == b.encode())
    }

    @Test func seededRandomTablesRoundTrip() throws {
        var rng = SeededGenerator(seed: 0x5EED_7AB1E)
        let alphabet = Array("abcXYZ019_-./:".utf8)
        for round in 0..<200 {
            var t = ShardNameTable()
            let n = Int.random(in: 0...20, using: &rng)
            for _ in 0..<n {
                let len = Int.random(in: 1...40, using: &rng)
                let name = String(decoding: (0..<len).map { _ in alphabet[Int.random(in: 0..<alphabet.count, using: &rng)] }, as: UTF8.self)
                t.insert(name: name, id: ShardID(using: &rng))
            }
            let decoded = try ShardNameTable.decode(t.encode())
            #expect(decoded == t, "round \(round)")
            #expect(decoded.encode() == t.encode(), "round \(round)")
        }
    }

    // MARK: Corruption

    @Test func everyTruncationIsRefused() throws {
        let bytes = try Self.sample().encode()
        for n in 0..<bytes.count {
            let e = failure(Array(bytes[0..<n]))
            switch (n, e) {
            case (0..<4, .badMagic?): break
            case (4..<10, .truncated?): break
            case (10..., .checksumMismatch?): break
            default: Issue.record("prefix \(n): \(String(describing: e))")
            }
        }
    }

    @Test func everyFlippedByteIsRefused() throws {
        let bytes = try Self.sample().encode()
        for offset in 0..<bytes.count {
            for mask: UInt8 in [0x01, 0x80, 0xFF] {
                var bad = bytes
                bad[offset] ^= mask
                let e = failure(bad)
                switch (offset, e) {
                case (0..<4, .badMagic?): break
                case (4, .unsupportedVersion(_, let v)?): #expect(v == Int(1 ^ mask))
                case (5..., .checksumMismatch?): break
                default: Issue.record("offset \(offset) mask \(mask): \(String(describing: e))")
                }
            }
        }
    }

    @Test func checksummedButInvalidTablesAreRefusedWithTheReason() throws {
        let (a, b) = (try Self.id(1), try Self.id(2))
        #expect(try ShardNameTable.decode(handBuilt([("a", a), ("b", b)])).count == 2, "the hand builder is sound")

        func expectInvalid(_ bytes: [UInt8], _ field: String, _ fragment: String, _ comment: Comment) {
            guard case .invalidValue(let f, let reason)? = failure(bytes) else {
                Issue.record("\(comment): \(String(describing: failure(bytes)))")
                return
            }
            #expect(f == field, comment)
            #expect(reason.contains(fragment), "\(comment): \(reason)")
        }
        expectInvalid(handBuilt([("b", a), ("a", b)]), "shard name", "out of order", "unsorted")
        expectInvalid(handBuilt([("a", a), ("a", b)]), "shard name", "out of order or repeated", "repeated name")
        expectInvalid(handBuilt([("a", a), ("b", a)]), "shard name table id", "named both", "repeated id")
        expectInvalid(handBuilt([("bad name", a)]), "shard name", "not a valid shard name", "invalid name")

        guard case .trailingBytes? = failure(handBuilt([("a", a)], trailing: [0])) else {
            Issue.record("trailing bytes")
            return
        }
        guard case .lengthOutOfRange? = failure(handBuilt([("a", a)], count: 5)) else {
            Issue.record("count beyond the bytes")
            return
        }
        guard case .unsupportedVersion(_, 2)? = failure([0x54, 0x57, 0x4E, 0x54, 2, 0, 0, 0, 0, 0]) else {
            Issue.record("version 2")
            return
        }
    }

    @Test func seededGarbageNeverTraps() {
        var rng = SeededGenerator(seed: 42)
        var refused = 0
        for _ in 0..<2000 {
            let n = Int.random(in: 0...64, using: &rng)
            var bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if Bool.random(using: &rng), bytes.count >= 5 {
                bytes.replaceSubrange(0..<5, with: ShardNameTable.magic + [1])
            }
            if case .failure = verdict(bytes) { refused += 1 }
        }
        #expect(refused == 2000, "random bytes essentially never carry a valid checksum")
    }
}
