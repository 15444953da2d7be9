import PersistCore

/// A rollup: the full state at some seqno, written to blob.
public struct HollowRollup: Hashable, Sendable {
    /// The blob key relative to the shard (`r/<seqno>/<uuid>`).
    public var key: String
    public var encodedSizeBytes: UInt64

    public init(key: String, encodedSizeBytes: UInt64) {
        self.key = key
        self.encodedSizeBytes = encodedSizeBytes
    }
}

/// What the shard remembers about a writer: enough to make its last compare-and-append
/// idempotent, and a lease.
public struct WriterState: Hashable, Sendable {
    public var lastHeartbeatMs: UInt64
    public var leaseDurationMs: UInt64
    /// The token and upper of the writer's most recent successful compare-and-append.
    public var mostRecentWriteToken: IdempotencyToken
    public var mostRecentWriteUpper: Antichain
    public var purpose: String

    public init(
        lastHeartbeatMs: UInt64, leaseDurationMs: UInt64, mostRecentWriteToken: IdempotencyToken,
        mostRecentWriteUpper: Antichain, purpose: String
    ) {
        self.lastHeartbeatMs = lastHeartbeatMs
        self.leaseDurationMs = leaseDurationMs
        self.mostRecentWriteToken = mostRecentWriteToken
        self.mostRecentWriteUpper = mostRecentWriteUpper
        self.purpose = purpose
    }
}

/// A leased reader: a since capability and a seqno hold, both dropped when the lease
/// lapses without a heartbeat.
public struct LeasedReaderState: Hashable, Sendable {
    /// The oldest state version the reader may still fetch parts of (GC holds it).
    public var seqno: SeqNo
    public var since: Antichain
    public var lastHeartbeatMs: UInt64
    public var leaseDurationMs: UInt64
    public var purpose: String

    public init(seqno: SeqNo, since: Antichain, lastHeartbeatMs: UInt64, leaseDurationMs: UInt64, purpose: String) {
        self.seqno = seqno
        self.since = since
        self.lastHeartbeatMs = lastHeartbeatMs
        self.leaseDurationMs = leaseDurationMs
        self.purpose = purpose
    }
}

/// A critical reader: a since capability that never expires, fenced by an opaque token.
public struct CriticalReaderState: Hashable, Sendable {
    public var since: Antichain
    public var opaque: UInt64
    public var opaqueCodec: String
    public var purpose: String

    public init(since: Antichain, opaque: UInt64, opaqueCodec: String, purpose: String) {
        self.since = since
        self.opaque = opaque
        self.opaqueCodec = opaqueCodec
        self.purpose = purpose
    }
}

/// The shard's batches: contiguous, in time order, from `{0}` to `upper`.
public struct TraceState: Hashable, Sendable {
    public var since: Antichain
    public var upper: Antichain
    /// Non-empty intervals, each batch's upper the next one's lower.
    public var batches: [HollowBatch]

    public init(since: Antichain = .minimum, upper: Antichain = .minimum, batches: [HollowBatch] = []) {
        self.since = since
        self.upper = upper
        self.batches = batches
    }
}

/// The whole state of a shard at one seqno (spec/persist.md §3.1, without schemas).
public struct ShardState: Hashable, Sendable {
    public var shardID: ShardID
    public var seqno: SeqNo
    /// Strictly increasing across versions (the committer's clock, or previous + 1).
    public var walltimeMs: UInt64
    public var hostname: String
    /// The version of the code that wrote this state.
    public var applierVersion: String
    /// Names of the key and value codecs; opening with others is an error.
    public var keyCodec: String
    public var valueCodec: String
    /// The seqno_since at the last garbage collection assigned.
    public var lastGCReq: SeqNo
    public var rollups: [SeqNo: HollowRollup]
    public var leasedReaders: [LeasedReaderID: LeasedReaderState]
    public var criticalReaders: [CriticalReaderID: CriticalReaderState]
    public var writers: [WriterID: WriterState]
    public var trace: TraceState

    public init(
        shardID: ShardID, seqno: SeqNo, walltimeMs: UInt64, hostname: String, applierVersion: String,
        keyCodec: String, valueCodec: String, lastGCReq: SeqNo = .minimum, rollups: [SeqNo: HollowRollup] = [:],
        leasedReaders: [LeasedReaderID: LeasedReaderState] = [:],
        criticalReaders: [CriticalReaderID: CriticalReaderState] = [:], writers: [WriterID: WriterState] = [:],
        trace: TraceState = TraceState()
    ) {
        self.shardID = shardID
        self.seqno = seqno
        self.walltimeMs = walltimeMs
        self.hostname = hostname
        self.applierVersion = applierVersion
        self.keyCodec = keyCodec
        self.valueCodec = valueCodec
        self.lastGCReq = lastGCReq
        self.rollups = rollups
        self.leasedReaders = leasedReaders
        self.criticalReaders = criticalReaders
        self.writers = writers
        self.trace = trace
    }
}
