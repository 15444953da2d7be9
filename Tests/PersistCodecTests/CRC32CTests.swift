import PersistCodec
import PersistCore
import Testing

@Suite struct CRC32CTests {
    /// Bit-at-a-time CRC-32C, straight from the definition (reflected, polynomial
    /// 0x82F63B78, initial and final inversion): the reference for the table-driven code.
    static func reference(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 {
                crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
            }
        }
        return ~crc
    }

    @Test func knownVectors() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
        #expect(CRC32C.checksum([]) == 0)
        // The reference agrees with the published vectors, so it is a fair oracle.
        #expect(Self.reference(Array("123456789".utf8)) == 0xE306_9283)
        #expect(Self.reference((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    }

    @Test func agreesWithBitwiseReference() {
        var g = SeededGenerator(seed: 200)
        for length in 0...300 {
            for _ in 0..<3 {
                let bytes = Fixtures.randomBytes(length, using: &g)
                #expect(CRC32C.checksum(bytes) == Self.reference(bytes), "length \(length)")
            }
        }
    }

    @Test func unalignedBuffersAgreeWithReference() {
        // The eight-byte loop reads unaligned words; start the buffer at every offset.
        var g = SeededGenerator(seed: 201)
        let bytes = Fixtures.randomBytes(200, using: &g)
        bytes.withUnsafeBytes { raw in
            for start in 0..<16 {
                for end in [start, start + 1, start + 7, start + 8, start + 9, start + 63, 200] {
                    let slice = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                    #expect(CRC32C.checksum(slice) == Self.reference(Array(bytes[start..<end])))
                }
            }
        }
    }

    @Test func incrementalEqualsOneShotAtEverySplit() {
        var g = SeededGenerator(seed: 202)
        let bytes = Fixtures.randomBytes(97, using: &g)
        let whole = CRC32C.checksum(bytes)
        bytes.withUnsafeBytes { raw in
            for split in 0...bytes.count {
                var state = CRC32C.start
                state = CRC32C.update(state, UnsafeRawBufferPointer(rebasing: raw[0..<split]))
                state = CRC32C.update(state, UnsafeRawBufferPointer(rebasing: raw[split...]))
                #expect(CRC32C.finish(state) == whole, "split at \(split)")
            }
            // Many small pieces too.
            var state = CRC32C.start
            var p = 0
            while p < bytes.count {
                let n = min(Int.random(in: 1...11, using: &g), bytes.count - p)
                state = CRC32C.update(state, UnsafeRawBufferPointer(rebasing: raw[p..<p + n]))
                p += n
            }
            #expect(CRC32C.finish(state) == whole)
        }
    }

    @Test func detectsEverySingleBitFlip() {
        var g = SeededGenerator(seed: 203)
        let bytes = Fixtures.randomBytes(64, using: &g)
        let crc = CRC32C.checksum(bytes)
        for i in 0..<bytes.count {
            for bit in 0..<8 {
                var flipped = bytes
                flipped[i] ^= 1 << UInt8(bit)
                #expect(CRC32C.checksum(flipped) != crc)
            }
        }
    }
}
