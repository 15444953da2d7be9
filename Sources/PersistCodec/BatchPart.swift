import PersistCore

/// How a batch part's payload is compressed. The raw value is stored in the part header.
public enum PartCodecID: UInt8, Hashable, Sendable, CaseIterable {
    case none = 0
    case lz4 = 1
    case zstd = 2
}

/// The fixed header of a batch part blob object (DESIGN.md §4).
///
/// Layout (version 1, 40 bytes, integers little-endian):
/// magic `TWBP`(4) | version u8 | codec u8 | reserved u16 (0) | row count u64 |
/// uncompressed payload length u64 | stored payload length u64 |
/// CRC32C of the stored payload u32 | CRC32C of the preceding 36 header bytes u32.
/// The stored payload follows the header; nothing follows the payload.
public struct BatchPartHeader: Hashable, Sendable {
    public static let magic: [UInt8] = [0x54, 0x57, 0x42, 0x50]
    public static let currentVersion: UInt8 = 1
    public static let size = 40
    static let format = "batch part"

    public var codec: PartCodecID
    public var rowCount: UInt64
    public var uncompressedLength: UInt64
    public var payloadLength: UInt64
    public var payloadChecksum: UInt32

    public init(
        codec: PartCodecID, rowCount: UInt64, uncompressedLength: UInt64, payloadLength: UInt64,
        payloadChecksum: UInt32
    ) {
        self.codec = codec
        self.rowCount = rowCount
        self.uncompressedLength = uncompressedLength
        self.payloadLength = payloadLength
        self.payloadChecksum = payloadChecksum
    }
}

/// A whole batch part object: header plus stored (possibly compressed) payload.
/// Compression itself lives in PersistCompression; this type only frames and verifies.
public struct BatchPartFrame: Sendable {
    public var header: BatchPartHeader
    /// The object bytes; the payload is `bytes[payloadRange]`.
    public var bytes: [UInt8]
    public var payloadRange: Range<Int> { BatchPartHeader.size..<bytes.count }

    /// The stored payload, copied out.
    public var payload: [UInt8] { Array(bytes[payloadRange]) }

    /// Frames a stored payload (already compressed with `codec`).
    public static func encode(
        codec: PartCodecID, rowCount: UInt64, uncompressedLength: Int, storedPayload: [UInt8]
    ) -> [UInt8] {
        var w = ByteWriter(capacity: BatchPartHeader.size + storedPayload.count)
        w.writeBytes(BatchPartHeader.magic)
        w.writeU8(BatchPartHeader.currentVersion)
        w.writeU8(codec.rawValue)
        w.writeU16(0)
        w.writeU64(rowCount)
        w.writeU64(UInt64(uncompressedLength))
        w.writeU64(UInt64(storedPayload.count))
        w.writeU32(CRC32C.checksum(storedPayload))
        w.writeTrailingChecksum()
        w.writeBytes(storedPayload)
        return w.bytes
    }

    /// Parses and verifies a part object: magic, version, header checksum, codec, the
    /// exact total length, and the payload checksum. `maxUncompressedLength` bounds what
    /// the header may claim, since callers size their decompression buffer from it.
    public static func decode(_ bytes: [UInt8], maxUncompressedLength: UInt64 = 1 << 32)
        throws(CodecError) -> BatchPartFrame
    {
        let format = BatchPartHeader.format
        var r = ByteReader(bytes)
        let magic = try r.readBytes(min(4, bytes.count), "batch part magic")
        guard magic == BatchPartHeader.magic else { throw .badMagic(format: format, found: magic) }
        let version = try r.readU8("batch part version")
        guard version == BatchPartHeader.currentVersion else {
            throw .unsupportedVersion(format: format, version: Int(version))
        }
        guard bytes.count >= BatchPartHeader.size else {
            throw .truncated(field: "batch part header", needed: BatchPartHeader.size, available: bytes.count)
        }
        var h = try ByteReader.verifyingTrailingChecksum(
            Array(bytes[0..<BatchPartHeader.size]), format: "batch part header")
        _ = try h.skip(5, "batch part header")
        let codecRaw = try h.readU8("batch part codec")
        guard let codec = PartCodecID(rawValue: codecRaw) else {
            throw .invalidValue(field: "batch part codec", reason: "unknown codec id \(codecRaw)")
        }
        let reserved = try h.readU16("batch part reserved")
        guard reserved == 0 else {
            throw .invalidValue(field: "batch part reserved", reason: "must be zero, is \(reserved)")
        }
        let rows = try h.readU64("batch part row count")
        let uncompressed = try h.readU64("batch part uncompressed length")
        let stored = try h.readU64("batch part payload length")
        let payloadCRC = try h.readU32("batch part payload checksum")
        guard uncompressed <= maxUncompressedLength else {
            throw .lengthOutOfRange(field: "batch part uncompressed length", length: uncompressed, limit: maxUncompressedLength)
        }
        if codec == .none && stored != uncompressed {
            throw .invalidValue(field: "batch part payload length", reason: "uncompressed part stores \(stored) of \(uncompressed) bytes")
        }
        let available = UInt64(bytes.count - BatchPartHeader.size)
        guard stored <= available else {
            throw .truncated(field: "batch part payload", needed: Int(clamping: stored), available: Int(available))
        }
        guard stored == available else {
            throw .trailingBytes(format: format, count: Int(available - stored))
        }
        let computed = bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[BatchPartHeader.size...]))
        }
        guard computed == payloadCRC else {
            throw .checksumMismatch(format: "batch part payload", stored: payloadCRC, computed: computed)
        }
        let header = BatchPartHeader(
            codec: codec, rowCount: rows, uncompressedLength: uncompressed, payloadLength: stored,
            payloadChecksum: payloadCRC)
        return BatchPartFrame(header: header, bytes: bytes)
    }
}

/// The uncompressed payload of a batch part: its updates, one after another.
/// Each row is key (varint length + bytes), value (varint length + bytes),
/// time u64 LE, diff i64 LE.
public enum PartRows {
    public static func encode(_ updates: [Update]) -> [UInt8] {
        var size = 0
        for u in updates { size += u.key.count + u.value.count + 20 }
        var w = ByteWriter(capacity: size)
        for u in updates {
            w.writeLengthPrefixed(u.key)
            w.writeLengthPrefixed(u.value)
            w.writeU64(u.time)
            w.writeI64(u.diff)
        }
        return w.bytes
    }

    /// Decodes exactly `rowCount` rows that must consume all of `bytes`.
    public static func decode(_ bytes: [UInt8], rowCount: UInt64) throws(CodecError) -> [Update] {
        var r = ByteReader(bytes)
        // Each row takes at least 18 bytes (two empty lengths, time, diff).
        guard rowCount <= UInt64(bytes.count / 18) else {
            throw .lengthOutOfRange(field: "batch part row count", length: rowCount, limit: UInt64(bytes.count / 18))
        }
        var out: [Update] = []
        out.reserveCapacity(Int(rowCount))
        for _ in 0..<rowCount {
            let k = try r.readLengthPrefixed("row key")
            let v = try r.readLengthPrefixed("row value")
            let t = try r.readU64("row time")
            let d = try r.readI64("row diff")
            out.append(Update(key: k, value: v, time: t, diff: d))
        }
        try r.expectEnd("batch part rows")
        return out
    }
}
