/// Appends little-endian integers, LEB128 varints and length-prefixed byte strings to a
/// growing buffer. The write side of every format in this module.
public struct ByteWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public var count: Int { bytes.count }

    public mutating func writeU8(_ v: UInt8) { bytes.append(v) }

    public mutating func writeU16(_ v: UInt16) { writeLittleEndian(v) }
    public mutating func writeU32(_ v: UInt32) { writeLittleEndian(v) }
    public mutating func writeU64(_ v: UInt64) { writeLittleEndian(v) }
    public mutating func writeI64(_ v: Int64) { writeLittleEndian(UInt64(bitPattern: v)) }

    @inline(__always)
    mutating func writeLittleEndian<T: FixedWidthInteger>(_ v: T) {
        var le = v.littleEndian
        withUnsafeBytes(of: &le) { bytes.append(contentsOf: $0) }
    }

    /// Unsigned LEB128: 7 bits per byte, low bits first, high bit set on all but the last.
    public mutating func writeVarint(_ v: UInt64) {
        var v = v
        while v >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    public mutating func writeBytes(_ b: some Sequence<UInt8>) { bytes.append(contentsOf: b) }

    /// A varint length followed by the bytes.
    public mutating func writeLengthPrefixed(_ b: [UInt8]) {
        writeVarint(UInt64(b.count))
        bytes.append(contentsOf: b)
    }

    /// A varint length followed by the UTF-8 bytes of `s`.
    public mutating func writeString(_ s: String) {
        writeVarint(UInt64(s.utf8.count))
        bytes.append(contentsOf: s.utf8)
    }

    /// Appends the CRC32C of everything written so far, little-endian.
    public mutating func writeTrailingChecksum() {
        writeU32(CRC32C.checksum(bytes))
    }

    /// Overwrites 4 bytes at `offset` with `v`, little-endian (for back-patched fields).
    public mutating func patchU32(_ v: UInt32, at offset: Int) {
        let le = v.littleEndian
        for i in 0..<4 { bytes[offset + i] = UInt8(truncatingIfNeeded: le >> (8 * UInt32(i))) }
    }
}
