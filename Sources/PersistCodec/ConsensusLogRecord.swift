import PersistCore

/// A record of LogConsensus's append-only segment files.
///
/// On disk every record is framed as: payload length u32 LE | CRC32C of the payload u32 LE
/// | payload. The payload is: kind u8 | key (varint length + UTF-8 bytes) | seqno u64 LE
/// | for versions only: data (varint length + bytes).
///
/// Recovery is independent of record order: a version record is identified by
/// (key, seqno), and a truncation record only raises a key's low watermark, so records
/// may be copied forward into newer segments when old segments are reclaimed.
public enum ConsensusLogRecord: Hashable, Sendable {
    /// A version committed by compare-and-set.
    case version(key: [UInt8], VersionedData)
    /// Every version of `key` with seqno below `below` is deleted.
    case truncation(key: [UInt8], below: SeqNo)

    static let versionKind: UInt8 = 1
    static let truncationKind: UInt8 = 2
    /// Length and checksum.
    public static let frameOverhead = 8
    /// Upper bound on a payload, far above any consensus value persist writes, so that a
    /// corrupt length can never ask for gigabytes.
    public static let maxPayloadLength = 256 << 20
    public static let maxKeyLength = 64 << 10

    public var key: [UInt8] {
        switch self {
        case .version(let k, _), .truncation(let k, _): return k
        }
    }

    /// Appends the framed record to `out`.
    public func encode(into out: inout [UInt8]) {
        var w = ByteWriter(capacity: 32 + key.count + (dataCount ?? 0))
        w.writeU32(0)  // length, patched below
        w.writeU32(0)  // checksum, patched below
        switch self {
        case .version(let key, let v):
            w.writeU8(Self.versionKind)
            w.writeLengthPrefixed(key)
            w.writeU64(v.seqno.rawValue)
            w.writeLengthPrefixed(v.data)
        case .truncation(let key, let below):
            w.writeU8(Self.truncationKind)
            w.writeLengthPrefixed(key)
            w.writeU64(below.rawValue)
        }
        let payloadLength = w.count - Self.frameOverhead
        w.patchU32(UInt32(payloadLength), at: 0)
        let crc = w.bytes.withUnsafeBytes {
            CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[Self.frameOverhead...]))
        }
        w.patchU32(crc, at: 4)
        out.append(contentsOf: w.bytes)
    }

    /// The framed record as a new array.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        encode(into: &out)
        return out
    }

    private var dataCount: Int? {
        if case .version(_, let v) = self { return v.data.count }
        return nil
    }

    /// The result of reading one frame at an offset.
    public enum ReadResult: Equatable, Sendable {
        /// A valid record occupying `length` bytes from the offset.
        case record(ConsensusLogRecord, length: Int)
        /// No bytes left: a clean end.
        case end
        /// The bytes from the offset are not a valid record (torn write or corruption).
        case invalid(CodecError)
    }

    /// Reads the framed record starting at `offset` in `bytes[..<end]`.
    public static func read(_ bytes: [UInt8], at offset: Int, end: Int) -> ReadResult {
        guard offset < end else { return .end }
        var r = ByteReader(bytes, range: offset..<end)
        do throws(CodecError) {
            let length = Int(try r.readU32("log record length"))
            let stored = try r.readU32("log record checksum")
            guard length <= maxPayloadLength else {
                throw CodecError.lengthOutOfRange(
                    field: "log record length", length: UInt64(length), limit: UInt64(maxPayloadLength))
            }
            let payload = try r.skip(length, "log record payload")
            let computed = bytes.withUnsafeBytes {
                CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[payload]))
            }
            guard computed == stored else {
                throw CodecError.checksumMismatch(format: "log record", stored: stored, computed: computed)
            }
            let record = try decodePayload(bytes, payload)
            return .record(record, length: frameOverhead + length)
        } catch {
            return .invalid(error)
        }
    }

    static func decodePayload(_ bytes: [UInt8], _ range: Range<Int>) throws(CodecError) -> ConsensusLogRecord {
        var r = ByteReader(bytes, range: range)
        let kind = try r.readU8("log record kind")
        let key = try r.readLengthPrefixed("log record key", limit: maxKeyLength)
        guard String(validating: key, as: UTF8.self) != nil else {
            throw .invalidValue(field: "log record key", reason: "not valid UTF-8")
        }
        let raw = try r.readU64("log record seqno")
        guard let seqno = SeqNo(raw) else {
            throw .invalidValue(field: "log record seqno", reason: "\(raw) exceeds Int64.max")
        }
        let record: ConsensusLogRecord
        switch kind {
        case versionKind:
            let data = try r.readLengthPrefixed("log record data")
            record = .version(key: key, VersionedData(seqno: seqno, data: data))
        case truncationKind:
            record = .truncation(key: key, below: seqno)
        default:
            throw .invalidValue(field: "log record kind", reason: "unknown kind \(kind)")
        }
        try r.expectEnd("log record")
        return record
    }
}

/// The header at the start of every LogConsensus segment file.
///
/// Layout (20 bytes): magic `TWCL`(4) | version u8 | reserved u8 u16 (0) |
/// segment id u64 LE | CRC32C of the preceding 16 bytes u32 LE.
public struct ConsensusLogSegmentHeader: Hashable, Sendable {
    public static let magic: [UInt8] = [0x54, 0x57, 0x43, 0x4C]
    public static let currentVersion: UInt8 = 1
    public static let size = 20
    static let format = "consensus log segment header"

    public var segmentID: UInt64

    public init(segmentID: UInt64) { self.segmentID = segmentID }

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: Self.size)
        w.writeBytes(Self.magic)
        w.writeU8(Self.currentVersion)
        w.writeU8(0)
        w.writeU16(0)
        w.writeU64(segmentID)
        w.writeTrailingChecksum()
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> ConsensusLogSegmentHeader {
        guard bytes.count >= size else {
            throw .truncated(field: format, needed: size, available: bytes.count)
        }
        var r = ByteReader(bytes, range: 0..<size)
        let magic = try r.readBytes(4, "segment magic")
        guard magic == Self.magic else { throw .badMagic(format: format, found: magic) }
        let version = try r.readU8("segment version")
        guard version == currentVersion else {
            throw .unsupportedVersion(format: format, version: Int(version))
        }
        var checked = try ByteReader.verifyingTrailingChecksum(Array(bytes[0..<size]), format: format)
        _ = try checked.skip(5, "segment header")
        let reserved = try checked.readBytes(3, "segment reserved")
        guard reserved == [0, 0, 0] else {
            throw .invalidValue(field: "segment reserved", reason: "must be zero, is \(reserved)")
        }
        return ConsensusLogSegmentHeader(segmentID: try checked.readU64("segment id"))
    }
}
