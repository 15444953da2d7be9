import PersistCompression

/// Tuning of the shard layer. Defaults follow the reference system where they matter for
/// behaviour (rollup threshold, leases, compaction heuristics) and are smaller where its
/// choice was driven by S3 (part size).
public struct PersistConfig: Sendable {
    /// A batch builder cuts a part once its encoded rows reach this many bytes.
    public var blobTargetSizeBytes: Int = 8 << 20
    /// Part uploads a batch builder keeps in flight before `add` waits.
    public var batchBuilderMaxOutstandingParts: Int = 2
    /// The codec of parts written on the write path (batch builders, and so every
    /// `compareAndAppend`), and of compaction outputs smaller than
    /// `compactionDenseMinBytes`. Such parts are young: the next merge of their level
    /// usually rewrites them soon, so compressing them cheaply matters more than how small
    /// they get. On batch-part rows lz4 compresses about 1.6x as fast as zstd level 1
    /// and decompresses about 2x as fast, for parts roughly 1.6x as large.
    public var compression: Compression = .lz4
    /// The codec of compaction outputs whose merge inputs add up to at least
    /// `compactionDenseMinBytes`. Large merges happen rarely and their output stays in the
    /// trace (and in storage) for a long time, read by every snapshot that covers it, so a
    /// denser codec pays for its extra CPU there.
    public var compactionCompression: Compression = .zstd(level: 1)
    /// The threshold between the two compaction codecs: the sum of the input parts'
    /// stored (encoded, compressed) sizes, `HollowBatchPart.encodedSizeBytes`. Merges of
    /// at least this many bytes are written with `compactionCompression`, smaller ones
    /// with `compression`. 0 (or less) sends every compaction output to the dense codec.
    public var compactionDenseMinBytes: Int = 8 << 20
    /// A rollup is written after this many seqnos without one.
    public var rollupThreshold: UInt64 = 128
    /// How many recent diffs a state fetch scans before falling back to the head's rollup.
    public var recentLiveDiffsLimit: Int = 3840
    /// Leased readers and writers are expired by any committer once their last heartbeat
    /// is older than their lease.
    public var readerLeaseMilliseconds: UInt64 = 15 * 60 * 1000
    public var writerLeaseMilliseconds: UInt64 = 60 * 60 * 1000
    /// Compaction of a merge request is skipped unless its inputs have at least this many
    /// batches, parts, or updates.
    public var compactionMinInputs: Int = 8
    public var compactionMinParts: Int = 8
    public var compactionMinUpdates: UInt64 = 1024
    /// Whether handles run compaction themselves after appends.
    public var compactionEnabled: Bool = true
    /// Maximum concurrent blob deletions during garbage collection.
    public var gcDeleteConcurrency: Int = 32
    /// Blob and consensus retries back off from this delay, doubling up to `maxBackoff`.
    public var initialBackoff: Duration = .milliseconds(4)
    public var maxBackoff: Duration = .seconds(16)
    /// A listening reader moves its since (and seqno hold) forward at most this often:
    /// each move is a state transition of the shard.
    public var readerDowngradeIntervalMilliseconds: UInt64 = 30_000
    /// Polling interval while waiting for a shard's upper to advance.
    public var pollInterval: Duration = .milliseconds(20)
    /// Batch parts of at most `partCacheMaxPartBytes` that this client wrote or fetched
    /// are kept in memory, up to this many bytes in all, and read again from there (a
    /// listener on a shard this process appends to, compaction of recent batches, repeated
    /// reads of a shard). 0 turns it off.
    public var partCacheBytes: Int = 32 << 20
    public var partCacheMaxPartBytes: Int = 256 << 10
    /// The code version recorded in state and checked when state is read.
    public var applierVersion: SemanticVersion = .current

    public init() {}
}

/// `major.minor.patch`, as written into state by the code that wrote it.
public struct SemanticVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var major: Int
    public var minor: Int
    public var patch: Int

    public init(_ major: Int, _ minor: Int, _ patch: Int) {
        self.major = major
        self.minor = minor
        self.patch = patch
    }

    /// This build's version.
    public static let current = SemanticVersion(0, 1, 0)

    public init?(_ text: String) {
        let parts = text.split(separator: ".").map { Int($0) }
        guard parts.count == 3, let a = parts[0], let b = parts[1], let c = parts[2], a >= 0, b >= 0, c >= 0 else {
            return nil
        }
        self.init(a, b, c)
    }

    public var description: String { "\(major).\(minor).\(patch)" }

    public static func < (a: SemanticVersion, b: SemanticVersion) -> Bool {
        (a.major, a.minor, a.patch) < (b.major, b.minor, b.patch)
    }

    /// Whether state written by `writer` may be read by this code: anything older, or
    /// newer by at most one minor version of the same major.
    public func canRead(writtenBy writer: SemanticVersion) -> Bool {
        if writer <= self { return true }
        return writer.major == major && writer.minor <= minor + 1
    }
}
