import PersistCore

/// A batch that has been written to blob but not yet linked into its shard, in a form
/// that can be handed to another handle or process (txn-wal stores these in its txns
/// shard). Whoever receives it may link it with a compare-and-append, or delete its parts.
///
/// Every handle carries a random `batchID`, so two handles over identical data still
/// encode to different bytes: the txns shard relies on every committed entry being
/// byte-unique so that retracting one never cancels another.
public struct TransmittableBatch: Hashable, Sendable {
    public var shard: ShardID
    /// 16 random bytes that make this handle's encoding unique.
    public var batchID: [UInt8]
    public var batch: HollowBatch

    public init(shard: ShardID, batchID: [UInt8], batch: HollowBatch) {
        precondition(batchID.count == 16, "a batch id has 16 bytes")
        self.shard = shard
        self.batchID = batchID
        self.batch = batch
    }

    /// A handle with a fresh random batch id.
    public init(shard: ShardID, batch: HollowBatch, using generator: inout some RandomNumberGenerator) {
        self.init(shard: shard, batchID: UUIDText.randomBytes(using: &generator), batch: batch)
    }
}

extension TransmittableBatch {
    static let format = "batch handle"
    /// `TWBH`.
    public static let magic: [UInt8] = [0x54, 0x57, 0x42, 0x48]
    public static let currentVersion: UInt8 = 1

    /// Layout (version 1): magic(4) | version u8 | shard(16) | batch id(16) |
    /// hollow batch | CRC32C u32 of everything before it.
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 96 + batch.parts.count * 80)
        w.writeBytes(Self.magic)
        w.writeU8(Self.currentVersion)
        w.writeShardID(shard)
        w.writeBytes(batchID)
        w.writeHollowBatch(batch)
        w.writeTrailingChecksum()
        return w.bytes
    }

    /// Decodes and verifies a handle. Throws `CodecError` for any truncation, corruption
    /// or unknown version.
    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> TransmittableBatch {
        try checkHeader(bytes, magic: magic, version: currentVersion, format: format)
        var r = try ByteReader.verifyingTrailingChecksum(bytes, format: format, minimumBody: 37)
        _ = try r.skip(5, "batch handle header")
        let shard = try r.readShardID("batch handle shard")
        let id = try r.readBytes(16, "batch handle id")
        let batch = try r.readHollowBatch()
        try r.expectEnd(format)
        return TransmittableBatch(shard: shard, batchID: id, batch: batch)
    }
}
