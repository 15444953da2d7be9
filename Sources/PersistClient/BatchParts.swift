import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation

/// Which updates of a fetched part a reader wants, and at what times (spec/persist.md
/// §5.3, §5.4, §6.1). Applied after the part's own rules (timestamp rewrite, truncation
/// to the registered description); see `BatchParts.applyReadRules`.
public enum FetchFilter: Hashable, Sendable {
    /// A snapshot as of `asOf`: updates after `asOf` are dropped and every remaining time
    /// becomes `asOf`, so the result accumulates to the collection's contents at `asOf`.
    case snapshot(asOf: Timestamp)
    /// The history up to `asOf`: updates after `asOf` are dropped and the rest keep their
    /// times (which are never below the shard's since, as compaction already advanced
    /// them). It accumulates to the same contents as `snapshot` but still says when each
    /// update happened.
    case history(asOf: Timestamp)
    /// One step of a listen that started at `asOf` and has emitted everything before
    /// `lower`: keeps an update iff `asOf < t` and `lower <= t` (a compacted batch may
    /// overlap what was already emitted). Times are left as they are.
    case listen(asOf: Timestamp, lower: Antichain)
    /// Input of a compaction to `since`: every time is advanced to `since`; nothing is
    /// dropped.
    case compaction(since: Antichain)
    /// No filtering and no time changes.
    case none

    /// Applies the filter to one update: returns false if the update is to be dropped,
    /// otherwise true after adjusting `update.time` as the filter requires.
    @inline(__always)
    func admit(_ update: inout Update) -> Bool {
        switch self {
        case .snapshot(let asOf):
            guard update.time <= asOf else { return false }
            update.time = asOf
            return true
        case .history(let asOf):
            return update.time <= asOf
        case .listen(let asOf, let lower):
            return asOf < update.time && lower.lessEqual(update.time)
        case .compaction(let since):
            update.time = since.advance(update.time)
            return true
        case .none:
            return true
        }
    }
}

/// A batch part encoded as a blob object, with the statistics its `HollowBatchPart`
/// records.
public struct EncodedPart: Sendable {
    /// The complete blob object (header and compressed rows).
    public var bytes: [UInt8]
    /// Number of rows encoded.
    public var rowCount: UInt64
    /// Key of the first and of the last row; empty when there are no rows.
    public var keyLower: [UInt8]
    public var keyUpper: [UInt8]
    /// Sum of the rows' diffs (wrapping, like consolidation).
    public var diffsSum: Int64

    /// The state's reference to this part once it is stored under the shard-relative
    /// `key`.
    public func hollow(key: String) -> HollowBatchPart {
        HollowBatchPart(
            key: key, encodedSizeBytes: UInt64(bytes.count), rowCount: rowCount, keyLower: keyLower,
            keyUpper: keyUpper, tsRewrite: nil, diffsSum: diffsSum)
    }
}

/// Batch parts as blob objects: key layout, encoding, decoding, and the rules that turn a
/// stored part into the updates a reader sees.
public enum BatchParts {
    // MARK: Keys

    /// A fresh shard-relative part key, `p/<writerKey>/<uuid>`, with a random UUID from
    /// `generator`. `writerKey` names who wrote the part (a writer id such as `w<uuid>`,
    /// or `compactor`) and must not contain `/`.
    public static func newPartKey(writerKey: String, using generator: inout some RandomNumberGenerator) -> String {
        "p/\(writerKey)/" + UUIDText.format(UUIDText.randomBytes(using: &generator))
    }

    /// A fresh shard-relative part key drawn from the system's secure generator.
    public static func newPartKey(writerKey: String) -> String {
        var g = SystemRandomNumberGenerator()
        return newPartKey(writerKey: writerKey, using: &g)
    }

    /// The full blob key of the shard-relative `partKey`: `<shard>/<partKey>`.
    public static func blobKey(shard: ShardID, partKey: String) -> String {
        "\(shard)/\(partKey)"
    }

    /// The blob key prefix under which every part written by `writerKey` to `shard` lives.
    public static func writerPrefix(shard: ShardID, writerKey: String) -> String {
        "\(shard)/p/\(writerKey)/"
    }

    // MARK: Encoding

    /// The part codec id recorded for `compression` (zstd's level is not recorded: it is
    /// not needed to decompress).
    public static func codecID(_ compression: Compression) -> PartCodecID {
        switch compression {
        case .none: return .none
        case .lz4: return .lz4
        case .zstd: return .zstd
        }
    }

    /// The decompressor for a recorded codec id.
    public static func compression(for codec: PartCodecID) -> Compression {
        switch codec {
        case .none: return .none
        case .lz4: return .lz4
        case .zstd: return .default
        }
    }

    /// Encodes `updates`, in the order given, as one part object compressed with
    /// `compression`. The caller passes rows that are already sorted and consolidated
    /// (`Consolidation.consolidate`): the key bounds are taken from the first and last
    /// row. Throws only if the compressor refuses the input (e.g. lz4 beyond 2 GiB).
    public static func encode(_ updates: [Update], compression: Compression) throws(CompressionError) -> EncodedPart {
        let rows = PartRows.encode(updates)
        let stored = try compression.compress(rows)
        let bytes = BatchPartFrame.encode(
            codec: codecID(compression), rowCount: UInt64(updates.count), uncompressedLength: rows.count,
            storedPayload: stored)
        var sum: Int64 = 0
        for u in updates { sum &+= u.diff }
        return EncodedPart(
            bytes: bytes, rowCount: UInt64(updates.count), keyLower: updates.first?.key ?? [],
            keyUpper: updates.last?.key ?? [], diffsSum: sum)
    }

    /// Decodes a part object read from blob key `key` (used in error messages only):
    /// verifies the frame, decompresses with the codec its header names to exactly the
    /// recorded size (at most `maxUncompressedLength`), and decodes exactly the recorded
    /// number of rows. Any failure is `ReadError.corrupt` naming the part and the cause.
    public static func decode(
        _ bytes: [UInt8], key: String,
        maxUncompressedLength: UInt64 = UInt64(Compression.maxDecompressedSize)
    ) throws(ReadError) -> [Update] {
        let frame: BatchPartFrame
        do {
            frame = try BatchPartFrame.decode(bytes, maxUncompressedLength: maxUncompressedLength)
        } catch {
            throw .corrupt("batch part \(key): \(error)")
        }
        let rows: [UInt8]
        do {
            rows = try compression(for: frame.header.codec).decompress(
                frame.payload, decompressedSize: Int(clamping: frame.header.uncompressedLength))
        } catch {
            throw .corrupt("batch part \(key): payload does not decompress: \(error)")
        }
        do {
            return try PartRows.decode(rows, rowCount: frame.header.rowCount)
        } catch {
            throw .corrupt("batch part \(key): rows do not decode: \(error)")
        }
    }

    // MARK: Reading

    /// Turns the rows stored in `part` of a batch registered in state with description
    /// `batch` into what a reader with `filter` sees. In order:
    ///
    /// 1. If the part has a timestamp rewrite `r`, every time becomes `max(t, r)`.
    /// 2. If the batch was never compacted (`batch.since` is `{0}`), updates outside the
    ///    registered `[batch.lower, batch.upper)` are dropped. A batch may be appended at
    ///    a narrower interval than it was written for (its registered description is then
    ///    truncated); this drops the rows the shard did not accept. For a batch that was
    ///    not truncated it drops nothing: the builder only admits times in
    ///    `[lower, upper)`, and a rewrite to `r` with `lower <= r < newUpper` keeps every
    ///    time inside the widened `[lower, newUpper)`. A compacted batch is exempt because
    ///    its times were advanced to its since, which may lie beyond its upper.
    /// 3. `filter` drops and retimes updates (see `FetchFilter`).
    ///
    /// The result is in stored order and not consolidated.
    public static func applyReadRules(
        _ updates: consuming [Update], part: HollowBatchPart, batch: BatchDescription, filter: FetchFilter
    ) -> [Update] {
        var rows = updates
        let truncate = batch.since == .minimum
        var write = 0
        for read in rows.indices {
            var u = rows[read]
            if let r = part.tsRewrite, u.time < r { u.time = r }
            if truncate && !(batch.lower.lessEqual(u.time) && !batch.upper.lessEqual(u.time)) { continue }
            guard filter.admit(&u) else { continue }
            rows[write] = u
            write += 1
        }
        rows.removeLast(rows.count - write)
        return rows
    }

    /// Reads `part` of `batch` (the description registered in state) from `blob`,
    /// decodes it and applies `applyReadRules` with `filter`.
    ///
    /// Blob errors are retried until the read succeeds. Throws `ReadError.missingBlob` if
    /// the object does not exist, `ReadError.corrupt` if it does not decode or holds a
    /// different number of rows than `part` records, and `CancellationError` if the task
    /// is cancelled while retrying.
    public static func fetch(
        blob: any Blob, shard: ShardID, part: HollowBatchPart, batch: BatchDescription, filter: FetchFilter,
        config: PersistConfig
    ) async throws -> [Update] {
        let key = blobKey(shard: shard, partKey: part.key)
        let stored = try await Retry.external("fetch batch part", config: config) {
            () async throws(StorageError) -> [UInt8]? in
            try await blob.get(key)
        }
        guard let stored else { throw ReadError.missingBlob(key: key) }
        let rows = try decode(stored, key: key)
        guard UInt64(rows.count) == part.rowCount else {
            throw ReadError.corrupt("batch part \(key): holds \(rows.count) rows, state records \(part.rowCount)")
        }
        return applyReadRules(rows, part: part, batch: batch, filter: filter)
    }
}
