import CCRC32C

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum on every persisted
/// record and frame. Uses the CPU's CRC32C instruction (SSE4.2 on x86-64, the CRC
/// extension on AArch64) when it has one, and portable table code otherwise; both give
/// identical results.
public enum CRC32C {
    /// Whether `update` (and so `checksum`) runs on the CPU's CRC32C instruction in this
    /// process. Decided once, on first use; `false` means the table code is used.
    public static let isHardwareAccelerated: Bool = txnwal_crc32c_hw_available() != 0

    /// The CRC32C of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBytes { checksum($0) }
    }

    /// The CRC32C of the bytes in `buffer`.
    public static func checksum(_ buffer: UnsafeRawBufferPointer) -> UInt32 {
        ~update(0xFFFF_FFFF, buffer)
    }

    /// Continues a running CRC32C: `finish(update(update(start, a), b))` equals the
    /// checksum of `a` followed by `b`.
    public static let start: UInt32 = 0xFFFF_FFFF
    public static func finish(_ state: UInt32) -> UInt32 { ~state }

    /// Feeds `buffer` into a running (pre-inverted) CRC state.
    public static func update(_ state: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        isHardwareAccelerated ? updateWithHardware(state, buffer) : updateWithTables(state, buffer)
    }

    /// `update` on the CPU's CRC32C instruction. Only valid when `isHardwareAccelerated`
    /// is true (it would execute an instruction the CPU lacks otherwise).
    static func updateWithHardware(_ state: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        txnwal_crc32c_update(state, buffer.baseAddress, buffer.count)
    }

    /// `update` computed with lookup tables, on any CPU: same contract and results as
    /// `update`. Public so benchmarks can compare it with the hardware path; `update` is
    /// what callers want.
    public static func updateWithTables(_ state: UInt32, _ buffer: UnsafeRawBufferPointer) -> UInt32 {
        // Slicing-by-8: eight input bytes per step through eight 256-entry tables.
        tables.withUnsafeBufferPointer { t in
            var crc = state
            var p = 0
            let n = buffer.count
            while n - p >= 8 {
                let word = UInt64(littleEndian: buffer.loadUnaligned(fromByteOffset: p, as: UInt64.self))
                let lo = UInt32(truncatingIfNeeded: word) ^ crc
                let hi = UInt32(truncatingIfNeeded: word >> 32)
                crc = t[7 &* 256 &+ Int(lo & 0xFF)]
                    ^ t[6 &* 256 &+ Int((lo >> 8) & 0xFF)]
                    ^ t[5 &* 256 &+ Int((lo >> 16) & 0xFF)]
                    ^ t[4 &* 256 &+ Int(lo >> 24)]
                    ^ t[3 &* 256 &+ Int(hi & 0xFF)]
                    ^ t[2 &* 256 &+ Int((hi >> 8) & 0xFF)]
                    ^ t[1 &* 256 &+ Int((hi >> 16) & 0xFF)]
                    ^ t[Int(hi >> 24)]
                p &+= 8
            }
            while p < n {
                crc = t[Int((crc ^ UInt32(buffer[p])) & 0xFF)] ^ (crc >> 8)
                p &+= 1
            }
            return crc
        }
    }

    /// tables[k*256 + b] is the CRC contribution of byte `b` followed by `k` zero bytes.
    static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for b in 0..<256 {
            var c = UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[b] = c
        }
        for k in 1..<8 {
            for b in 0..<256 {
                let prev = t[(k - 1) * 256 + b]
                t[k * 256 + b] = t[Int(prev & 0xFF)] ^ (prev >> 8)
            }
        }
        return t
    }()
}
