import PersistCore

/// The time bounds of a batch: it holds exactly the updates originally written at times
/// `t` with `lower <= t < upper`, whose times may since have been advanced to `since`.
public struct BatchDescription: Hashable, Sendable {
    public var lower: Antichain
    public var upper: Antichain
    public var since: Antichain

    public init(lower: Antichain, upper: Antichain, since: Antichain = .minimum) {
        self.lower = lower
        self.upper = upper
        self.since = since
    }
}

/// One blob object of a batch, referenced by key rather than held in memory.
public struct HollowBatchPart: Hashable, Sendable {
    /// The blob key relative to the shard (everything after `<shard>/`).
    public var key: String
    /// Size of the blob object in bytes.
    public var encodedSizeBytes: UInt64
    /// Number of updates in the part.
    public var rowCount: UInt64
    /// The smallest and largest update key in the part: lets readers skip parts that
    /// cannot hold a key they want. Empty when the part is empty.
    public var keyLower: [UInt8]
    public var keyUpper: [UInt8]
    /// When set, every update in the part reads as if at `max(t, tsRewrite)` (a
    /// metadata-only retime of an uncommitted batch).
    public var tsRewrite: Timestamp?
    /// The sum of the part's diffs, when known.
    public var diffsSum: Int64?

    public init(
        key: String, encodedSizeBytes: UInt64, rowCount: UInt64, keyLower: [UInt8] = [],
        keyUpper: [UInt8] = [], tsRewrite: Timestamp? = nil, diffsSum: Int64? = nil
    ) {
        self.key = key
        self.encodedSizeBytes = encodedSizeBytes
        self.rowCount = rowCount
        self.keyLower = keyLower
        self.keyUpper = keyUpper
        self.tsRewrite = tsRewrite
        self.diffsSum = diffsSum
    }
}

/// A batch as the shard state records it: bounds, length and the keys of its parts.
public struct HollowBatch: Hashable, Sendable {
    public var desc: BatchDescription
    /// Total number of updates across all parts.
    public var rowCount: UInt64
    public var parts: [HollowBatchPart]

    public init(desc: BatchDescription, rowCount: UInt64, parts: [HollowBatchPart]) {
        self.desc = desc
        self.rowCount = rowCount
        self.parts = parts
    }
}

// MARK: - Encoding (a building block of batch handles and shard state)

extension ByteWriter {
    public mutating func writeBatchDescription(_ d: BatchDescription) {
        writeAntichain(d.lower)
        writeAntichain(d.upper)
        writeAntichain(d.since)
    }

    public mutating func writeHollowBatchPart(_ p: HollowBatchPart) {
        writeString(p.key)
        writeU64(p.encodedSizeBytes)
        writeU64(p.rowCount)
        writeLengthPrefixed(p.keyLower)
        writeLengthPrefixed(p.keyUpper)
        writeOptionalTimestamp(p.tsRewrite)
        if let s = p.diffsSum {
            writeU8(1)
            writeI64(s)
        } else {
            writeU8(0)
        }
    }

    public mutating func writeHollowBatch(_ b: HollowBatch) {
        writeBatchDescription(b.desc)
        writeU64(b.rowCount)
        writeVarint(UInt64(b.parts.count))
        for p in b.parts { writeHollowBatchPart(p) }
    }
}

extension ByteReader {
    /// Limits that keep a corrupt length from claiming absurd sizes.
    public static let maxBlobKeyLength = 4096
    public static let maxStatsKeyLength = 1 << 20

    public mutating func readBatchDescription() throws(CodecError) -> BatchDescription {
        let lower = try readAntichain("batch lower")
        let upper = try readAntichain("batch upper")
        let since = try readAntichain("batch since")
        guard lower.lessEqual(upper) else {
            throw .invalidValue(field: "batch description", reason: "lower \(lower) is beyond upper \(upper)")
        }
        return BatchDescription(lower: lower, upper: upper, since: since)
    }

    public mutating func readHollowBatchPart() throws(CodecError) -> HollowBatchPart {
        let key = try readString("part key", limit: Self.maxBlobKeyLength)
        guard !key.isEmpty else { throw .invalidValue(field: "part key", reason: "empty") }
        let size = try readU64("part size")
        let rows = try readU64("part row count")
        let keyLower = try readLengthPrefixed("part key lower", limit: Self.maxStatsKeyLength)
        let keyUpper = try readLengthPrefixed("part key upper", limit: Self.maxStatsKeyLength)
        guard !keyUpper.lexicographicallyPrecedes(keyLower) else {
            throw .invalidValue(field: "part key bounds", reason: "lower bound above upper bound")
        }
        let rewrite = try readOptionalTimestamp("part ts rewrite")
        let diffsSum: Int64?
        switch try readU8("part diffs sum") {
        case 0: diffsSum = nil
        case 1: diffsSum = try readI64("part diffs sum")
        case let tag: throw .invalidValue(field: "part diffs sum", reason: "optional tag \(tag)")
        }
        return HollowBatchPart(
            key: key, encodedSizeBytes: size, rowCount: rows, keyLower: keyLower,
            keyUpper: keyUpper, tsRewrite: rewrite, diffsSum: diffsSum)
    }

    public mutating func readHollowBatch() throws(CodecError) -> HollowBatch {
        let desc = try readBatchDescription()
        let rows = try readU64("batch row count")
        // A part takes at least 2 (non-empty key) + 8 + 8 + 1 + 1 + 1 + 1 bytes.
        let n = try readCount("batch part count", minItemSize: 22)
        var parts: [HollowBatchPart] = []
        parts.reserveCapacity(n)
        var sum: UInt64 = 0
        for _ in 0..<n {
            let p = try readHollowBatchPart()
            let (s, overflow) = sum.addingReportingOverflow(p.rowCount)
            guard !overflow else {
                throw .invalidValue(field: "batch row count", reason: "part row counts overflow")
            }
            sum = s
            parts.append(p)
        }
        guard sum == rows else {
            throw .invalidValue(field: "batch row count", reason: "batch says \(rows) rows, parts hold \(sum)")
        }
        return HollowBatch(desc: desc, rowCount: rows, parts: parts)
    }
}
