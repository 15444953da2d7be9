/// Reads the encodings `ByteWriter` produces from untrusted bytes. Every read checks the
/// remaining length first and throws `CodecError.truncated` naming the field; lengths
/// read from the input are checked against what remains before anything is allocated.
public struct ByteReader {
    public let bytes: [UInt8]
    public private(set) var offset: Int
    public let end: Int

    /// Reads `bytes[range]` (the whole array by default).
    public init(_ bytes: [UInt8], range: Range<Int>? = nil) {
        let r = range ?? 0..<bytes.count
        precondition(r.lowerBound >= 0 && r.upperBound <= bytes.count, "range within bytes")
        self.bytes = bytes
        self.offset = r.lowerBound
        self.end = r.upperBound
    }

    public var remaining: Int { end - offset }
    public var isAtEnd: Bool { offset == end }

    @inline(__always)
    mutating func require(_ n: Int, _ field: String) throws(CodecError) {
        guard n <= end - offset else {
            throw .truncated(field: field, needed: n, available: end - offset)
        }
    }

    public mutating func readU8(_ field: String) throws(CodecError) -> UInt8 {
        try require(1, field)
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func readU16(_ field: String) throws(CodecError) -> UInt16 {
        try readLittleEndian(field)
    }

    public mutating func readU32(_ field: String) throws(CodecError) -> UInt32 {
        try readLittleEndian(field)
    }

    public mutating func readU64(_ field: String) throws(CodecError) -> UInt64 {
        try readLittleEndian(field)
    }

    public mutating func readI64(_ field: String) throws(CodecError) -> Int64 {
        Int64(bitPattern: try readLittleEndian(field) as UInt64)
    }

    @inline(__always)
    mutating func readLittleEndian<T: FixedWidthInteger>(_ field: String) throws(CodecError) -> T {
        let size = MemoryLayout<T>.size
        try require(size, field)
        let v = bytes.withUnsafeBytes { raw in
            raw.loadUnaligned(fromByteOffset: offset, as: T.self)
        }
        offset += size
        return T(littleEndian: v)
    }

    /// Unsigned LEB128, at most 10 bytes; rejects overflow and over-long encodings.
    public mutating func readVarint(_ field: String) throws(CodecError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        var index = 0
        while true {
            guard offset < end else {
                throw .truncated(field: field, needed: index + 1, available: index)
            }
            let b = bytes[offset]
            offset += 1
            if shift == 63 && b > 1 {
                throw .invalidValue(field: field, reason: "varint overflows 64 bits")
            }
            result |= UInt64(b & 0x7F) << shift
            index += 1
            if b & 0x80 == 0 {
                if b == 0 && index > 1 {
                    throw .invalidValue(field: field, reason: "over-long varint encoding")
                }
                return result
            }
            shift += 7
        }
    }

    /// A varint count checked against `limit` and against the bytes that remain (each
    /// counted item occupies at least `minItemSize` bytes), so a corrupt count can never
    /// cause a huge allocation.
    public mutating func readCount(_ field: String, minItemSize: Int = 1, limit: Int = Int.max)
        throws(CodecError) -> Int
    {
        let n = try readVarint(field)
        let byRemaining = UInt64(remaining / max(minItemSize, 1))
        let cap = min(UInt64(limit), byRemaining)
        guard n <= cap else {
            throw .lengthOutOfRange(field: field, length: n, limit: cap)
        }
        return Int(n)
    }

    public mutating func readBytes(_ count: Int, _ field: String) throws(CodecError) -> [UInt8] {
        try require(count, field)
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    /// Skips `count` bytes and returns their range, without copying.
    public mutating func skip(_ count: Int, _ field: String) throws(CodecError) -> Range<Int> {
        try require(count, field)
        defer { offset += count }
        return offset..<offset + count
    }

    /// A varint length followed by that many bytes.
    public mutating func readLengthPrefixed(_ field: String, limit: Int = Int.max)
        throws(CodecError) -> [UInt8]
    {
        let n = try readCount(field, limit: limit)
        return try readBytes(n, field)
    }

    /// A varint length followed by that many bytes of valid UTF-8.
    public mutating func readString(_ field: String, limit: Int = Int.max) throws(CodecError)
        -> String
    {
        let raw = try readLengthPrefixed(field, limit: limit)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw .invalidValue(field: field, reason: "not valid UTF-8")
        }
        return s
    }

    /// Throws unless every byte has been consumed.
    public func expectEnd(_ format: String) throws(CodecError) {
        guard offset == end else { throw .trailingBytes(format: format, count: end - offset) }
    }
}

extension ByteReader {
    /// Checks that `bytes` ends with a 4-byte little-endian CRC32C of everything before it,
    /// and returns a reader over the checked bytes (without the checksum).
    public static func verifyingTrailingChecksum(_ bytes: [UInt8], format: String, minimumBody: Int = 0)
        throws(CodecError) -> ByteReader
    {
        guard bytes.count >= minimumBody + 4 else {
            throw .truncated(field: format, needed: minimumBody + 4, available: bytes.count)
        }
        let bodyEnd = bytes.count - 4
        var tail = ByteReader(bytes, range: bodyEnd..<bytes.count)
        let stored = try tail.readU32("\(format) checksum")
        let computed = bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[0..<bodyEnd])) }
        guard stored == computed else {
            throw .checksumMismatch(format: format, stored: stored, computed: computed)
        }
        return ByteReader(bytes, range: 0..<bodyEnd)
    }
}
