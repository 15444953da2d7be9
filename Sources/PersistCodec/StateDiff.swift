import PersistCore

/// A change to one entry of a keyed field of the shard state. Updates and deletes carry
/// the old value, so that applying a diff to the wrong state is detected, not silently
/// merged.
public enum MapChange<Key: Hashable & Sendable, Value: Hashable & Sendable>: Hashable, Sendable {
    case insert(Key, Value)
    case update(Key, old: Value, new: Value)
    case delete(Key, Value)
}

/// A change to a single-valued field.
public struct ValueChange<Value: Hashable & Sendable>: Hashable, Sendable {
    public var old: Value
    public var new: Value

    public init(old: Value, new: Value) {
        self.old = old
        self.new = new
    }
}

/// The difference between consecutive shard states, stored in consensus as the version
/// at `seqnoTo` (spec/persist.md §3.2). The trace is diffed as a set of batches: an
/// append inserts one, a compaction deletes its inputs and inserts its output.
public struct StateDiff: Hashable, Sendable {
    public var applierVersion: String
    public var seqnoFrom: SeqNo
    public var seqnoTo: SeqNo
    public var walltimeMs: UInt64
    /// The key of the newest rollup as of `seqnoTo`, so any diff leads to a full state.
    public var latestRollupKey: String
    public var hostname: ValueChange<String>?
    public var lastGCReq: ValueChange<SeqNo>?
    public var rollups: [MapChange<SeqNo, HollowRollup>]
    public var leasedReaders: [MapChange<LeasedReaderID, LeasedReaderState>]
    public var criticalReaders: [MapChange<CriticalReaderID, CriticalReaderState>]
    public var writers: [MapChange<WriterID, WriterState>]
    public var traceSince: ValueChange<Antichain>?
    public var traceUpper: ValueChange<Antichain>?
    public var insertedBatches: [HollowBatch]
    public var deletedBatches: [HollowBatch]

    public init(
        applierVersion: String, seqnoFrom: SeqNo, seqnoTo: SeqNo, walltimeMs: UInt64, latestRollupKey: String,
        hostname: ValueChange<String>? = nil, lastGCReq: ValueChange<SeqNo>? = nil,
        rollups: [MapChange<SeqNo, HollowRollup>] = [],
        leasedReaders: [MapChange<LeasedReaderID, LeasedReaderState>] = [],
        criticalReaders: [MapChange<CriticalReaderID, CriticalReaderState>] = [],
        writers: [MapChange<WriterID, WriterState>] = [], traceSince: ValueChange<Antichain>? = nil,
        traceUpper: ValueChange<Antichain>? = nil, insertedBatches: [HollowBatch] = [],
        deletedBatches: [HollowBatch] = []
    ) {
        self.applierVersion = applierVersion
        self.seqnoFrom = seqnoFrom
        self.seqnoTo = seqnoTo
        self.walltimeMs = walltimeMs
        self.latestRollupKey = latestRollupKey
        self.hostname = hostname
        self.lastGCReq = lastGCReq
        self.rollups = rollups
        self.leasedReaders = leasedReaders
        self.criticalReaders = criticalReaders
        self.writers = writers
        self.traceSince = traceSince
        self.traceUpper = traceUpper
        self.insertedBatches = insertedBatches
        self.deletedBatches = deletedBatches
    }
}
