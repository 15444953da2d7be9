import PersistCore

/// One entry of the txns shard, the write-ahead log of transactions (spec/txn-wal.md §5).
///
/// In the txns shard an entry is stored as an update whose key is the data shard's id
/// text (`s<uuid>`) and whose value is the versioned, checksummed encoding below. The
/// value repeats the shard id so that a decoder can verify key and value belong together.
public enum TxnsEntry: Hashable, Sendable {
    /// The data shard is registered (writable through txns) from `ts` on.
    case register(shard: ShardID, ts: Timestamp)
    /// A batch for the data shard was committed at `ts`. `batch` is an encoded
    /// `TransmittableBatch` for the same shard.
    case append(shard: ShardID, ts: Timestamp, batch: [UInt8])

    /// The data shard this entry is about.
    public var shard: ShardID {
        switch self {
        case .register(let s, _), .append(let s, _, _): return s
        }
    }

    /// The timestamp the entry carries (its own, independent of the update's time).
    public var ts: Timestamp {
        switch self {
        case .register(_, let t), .append(_, let t, _): return t
        }
    }
}

extension TxnsEntry {
    static let format = "txns entry"
    public static let currentVersion: UInt8 = 1
    static let registerKind: UInt8 = 1
    static let appendKind: UInt8 = 2
    /// version + kind + shard + ts.
    static let fixedSize = 1 + 1 + 16 + 8

    /// The update key: UTF-8 of the shard id's text form.
    public var encodedKey: [UInt8] { Array(shard.description.utf8) }

    /// The update value. Layout (version 1): version u8 | kind u8 (1 register, 2 append) |
    /// shard(16) | ts u64 LE | batch handle bytes (append only) | CRC32C u32 LE of all
    /// preceding bytes.
    public var encodedValue: [UInt8] {
        var w = ByteWriter(capacity: Self.fixedSize + 4 + (batchBytes?.count ?? 0))
        w.writeU8(Self.currentVersion)
        switch self {
        case .register: w.writeU8(Self.registerKind)
        case .append: w.writeU8(Self.appendKind)
        }
        w.writeShardID(shard)
        w.writeU64(ts)
        if let b = batchBytes { w.writeBytes(b) }
        w.writeTrailingChecksum()
        return w.bytes
    }

    var batchBytes: [UInt8]? {
        if case .append(_, _, let b) = self { return b }
        return nil
    }

    /// Decodes an entry from its update key and value, verifying the checksum, that the
    /// key names the same shard as the value, and (for appends) that the batch handle is
    /// itself valid and belongs to that shard.
    public static func decode(key: [UInt8], value: [UInt8]) throws(CodecError) -> TxnsEntry {
        var r = try ByteReader.verifyingTrailingChecksum(value, format: format, minimumBody: fixedSize)
        let version = try r.readU8("txns entry version")
        guard version == currentVersion else {
            throw .unsupportedVersion(format: format, version: Int(version))
        }
        let kind = try r.readU8("txns entry kind")
        let shard = try r.readShardID("txns entry shard")
        let ts = try r.readU64("txns entry timestamp")
        guard let keyText = String(validating: key, as: UTF8.self),
            let keyShard = try? ShardID(parsing: keyText)
        else {
            throw .invalidValue(field: "txns entry key", reason: "not a shard id")
        }
        guard keyShard == shard else {
            throw .invalidValue(field: "txns entry key", reason: "key \(keyShard) but value names \(shard)")
        }
        // Updates consolidate on the key's bytes, so only the canonical (lowercase) text
        // is accepted: an entry must re-encode to exactly the key it was read from.
        guard key.elementsEqual(shard.description.utf8) else {
            throw .invalidValue(field: "txns entry key", reason: "shard id text is not in canonical lowercase form")
        }
        switch kind {
        case registerKind:
            try r.expectEnd(format)
            return .register(shard: shard, ts: ts)
        case appendKind:
            let batch = Array(r.bytes[r.offset..<r.end])
            guard !batch.isEmpty else {
                throw .invalidValue(field: "txns entry batch", reason: "append without a batch")
            }
            let handle = try TransmittableBatch.decode(batch)
            guard handle.shard == shard else {
                throw .invalidValue(field: "txns entry batch", reason: "batch belongs to \(handle.shard), entry to \(shard)")
            }
            return .append(shard: shard, ts: ts, batch: batch)
        default:
            throw .invalidValue(field: "txns entry kind", reason: "unknown kind \(kind)")
        }
    }

    /// Whether a part whose key statistics are `[keyLower, keyUpper]` may hold entries
    /// for `shard`. May say yes wrongly, never no wrongly; parts without statistics
    /// (empty bounds) always say yes.
    public static func partMayContain(shard: ShardID, keyLower: [UInt8], keyUpper: [UInt8]) -> Bool {
        if keyLower.isEmpty && keyUpper.isEmpty { return true }
        let k = Array(shard.description.utf8)
        return !k.lexicographicallyPrecedes(keyLower) && !keyUpper.lexicographicallyPrecedes(k)
    }
}
