import Collections
import PersistCodec
import PersistCore

/// A data shard's registration interval in the txns shard: registered from `registerTs`,
/// until and including `forgetTs` if it was forgotten.
public struct DataRegistered: Hashable, Sendable {
    public var registerTs: Timestamp
    public var forgetTs: Timestamp?

    public func contains(_ t: Timestamp) -> Bool {
        registerTs <= t && forgetTs.map { t <= $0 } ?? true
    }
}

/// What the cache remembers of one data shard: its registrations and the times of its
/// committed writes, compacted to what reads and applies still need.
public struct DataTimes: Hashable, Sendable {
    /// Increasing, non-overlapping; only the last may be open. Never empty.
    public var registered: Deque<DataRegistered>
    /// Commit times, non-decreasing; each inside some registration.
    public var writes: Deque<Timestamp>

    var lastReg: DataRegistered {
        guard let last = registered.last else { preconditionFailure("a data shard always has a registration") }
        return last
    }

    /// The latest time at which the physical shard was (or will be) written by txn-wal:
    /// the last registration, its forget, or the last write.
    var latestPhysicalTs: Timestamp {
        var t = lastReg.registerTs
        if let f = lastReg.forgetTs { t = max(t, f) }
        if let w = writes.last { t = max(t, w) }
        return t
    }

    func validate() -> String? {
        var previousWrite: Timestamp?
        for w in writes {
            if let p = previousWrite, w < p { return "writes not sorted: \(p) then \(w)" }
            previousWrite = w
        }
        var previousForget: Timestamp?
        for r in registered {
            if let f = previousForget, r.registerTs < f { return "registration at \(r.registerTs) before the previous forget \(f)" }
            if let f = r.forgetTs, f < r.registerTs { return "forget \(f) before registration \(r.registerTs)" }
            previousForget = r.forgetTs ?? previousForget
        }
        guard !registered.isEmpty else { return "no registrations" }
        for w in writes {
            guard registered.contains(where: { $0.contains(w) }) || (lastReg.forgetTs == nil && w >= lastReg.registerTs) else {
                return "write at \(w) outside every registration"
            }
        }
        return nil
    }
}

/// One piece of outstanding work, in the order `applyLE` performs it.
public enum UnappliedWork: Hashable, Sendable {
    /// A registration or forget whose empty fill may not have happened.
    case registerForget
    /// Committed batches (raw txns-entry batch bytes, in commit order).
    case batch([[UInt8]])
}

/// The answer of `dataListenNext`: how a data-shard reader at logical progress `ts` moves on.
public enum DataListenNext: Hashable, Sendable {
    /// Read the physical data shard until its frontier reaches `t`; progress becomes `t`.
    case readDataTo(Timestamp)
    /// `[ts, t)` is known to hold nothing: advance logical progress to `t` without reading.
    case emitLogicalProgress(Timestamp)
    /// Caught up: wait for the txns shard to advance and ask again.
    case waitForTxnsProgress
}

/// A read token for a data shard at `asOf` (spec/txn-wal.md §2.6). `latestWrite` is the
/// latest txn write at or before `asOf` that may not be applied yet; `[asOf + 1, emptyTo)`
/// holds no unapplied writes, so it may be filled with an empty append.
public struct DataSnapshotPlan: Hashable, Sendable {
    public var dataID: ShardID
    public var latestWrite: Timestamp?
    public var asOf: Timestamp
    public var emptyTo: Timestamp

    func validate() -> String? {
        if let w = latestWrite, w > asOf { return "latest write \(w) is beyond as_of \(asOf)" }
        if asOf >= emptyTo { return "as_of \(asOf) is not before empty_to \(emptyTo)" }
        return nil
    }
}

/// The txns shard's contents were not what txn-wal writes: a bug, or something else wrote
/// to the txns shard.
public struct TxnsInvariantViolation: Error, Hashable, Sendable, CustomStringConvertible {
    public let description: String
}

/// The txns cache's state machine (spec/txn-wal.md §3.8): which data shards are
/// registered when, which committed batches are not yet applied (or not yet tidied), and
/// which registrations may still need their fill. Pure: fed decoded txns-shard updates
/// and progress frontiers.
public struct TxnsCacheState: Sendable {
    public let txnsID: ShardID
    /// The txns shard's since when this cache started: nothing before it is known.
    public let initTs: Timestamp
    /// The cache is complete for every time below this.
    public private(set) var progressExclusive: Timestamp
    private var nextBatchID: UInt64 = 0
    /// Unapplied (or applied but untidied) batches by id: ids grow with commit time.
    private(set) var unappliedBatches: OrderedDictionary<UInt64, (shard: ShardID, raw: [UInt8], ts: Timestamp)> = [:]
    private var batchIndex: [[UInt8]: UInt64] = [:]
    private(set) var datas: [ShardID: DataTimes] = [:]
    /// Registrations and forgets whose fill may not have happened, by time.
    private(set) var unappliedRegisters: Deque<(shard: ShardID, ts: Timestamp)> = []
    /// When set, the cache follows only this data shard.
    public let onlyDataID: ShardID?

    public init(txnsID: ShardID, initTs: Timestamp, onlyDataID: ShardID? = nil) {
        self.txnsID = txnsID
        self.initTs = initTs
        self.progressExclusive = 0
        self.onlyDataID = onlyDataID
    }

    // MARK: Feeding

    /// Applies the txns-shard updates of one progress step and moves progress on. Entries
    /// are ordered by their embedded timestamps, which compaction never moves.
    public mutating func pushEntries(_ entries: [(entry: TxnsEntry, time: Timestamp, diff: Int64)], progress: Timestamp)
        throws(TxnsInvariantViolation)
    {
        let sorted = entries.enumerated().sorted { a, b in
            (a.element.entry.ts, a.offset) < (b.element.entry.ts, b.offset)
        }.map(\.element)
        let firstUnappliedBefore = unappliedBatches.values.first?.ts
        for (entry, time, diff) in sorted {
            guard diff == 1 || diff == -1 else { throw violation("txns shard diff \(diff) for \(entry.shard)") }
            switch entry {
            case .register(let d, let ts):
                try pushRegister(d, ts: ts, diff: diff, time: time)
            case .append(let d, let ts, let raw):
                try pushAppend(d, raw: raw, ts: ts, diff: diff)
            }
        }
        // A retraction that raises the first unapplied batch time lets *every* shard drop
        // writes below it, not only the shard retracted from. Compacting only that shard (as
        // upstream does) leaves stale writes behind when one txn wrote several shards and
        // a later write exists: `validate()` then fails ("writes ... not compacted").
        if let before = firstUnappliedBefore, unappliedBatches.values.first.map({ $0.ts > before }) ?? true {
            for d in Array(datas.keys) { compactDataTimes(d) }
        }
        progressExclusive = max(progressExclusive, progress)
    }

    private func violation(_ s: String) -> TxnsInvariantViolation { TxnsInvariantViolation(description: s) }

    mutating func pushRegister(_ d: ShardID, ts: Timestamp, diff: Int64, time: Timestamp) throws(TxnsInvariantViolation) {
        if let only = onlyDataID, only != d { return }
        // An update not moved forward by compaction may still lack its fill.
        if ts == time { unappliedRegisters.append((d, ts)) }
        if diff == 1 {
            var times = datas[d] ?? DataTimes(registered: [], writes: [])
            if let last = times.registered.last, last.forgetTs == nil {
                throw violation("\(d) registered at \(ts) while registered since \(last.registerTs)")
            }
            times.registered.append(DataRegistered(registerTs: ts, forgetTs: nil))
            datas[d] = times
        } else {
            guard var times = datas[d], var last = times.registered.last, last.forgetTs == nil else {
                throw violation("\(d) forgotten at \(ts) while not registered")
            }
            last.forgetTs = ts
            times.registered[times.registered.count - 1] = last
            datas[d] = times
        }
    }

    mutating func pushAppend(_ d: ShardID, raw: [UInt8], ts: Timestamp, diff: Int64) throws(TxnsInvariantViolation) {
        if let only = onlyDataID, only != d { return }
        if diff == 1 {
            let id = nextBatchID
            nextBatchID += 1
            guard batchIndex.updateValue(id, forKey: raw) == nil else { throw violation("batch committed twice to \(d) at \(ts)") }
            unappliedBatches[id] = (d, raw, ts)
            guard var times = datas[d], times.registered.last?.forgetTs == nil, !times.registered.isEmpty else {
                throw violation("batch committed to \(d) at \(ts) while it is not registered")
            }
            times.writes.append(ts)
            datas[d] = times
        } else {
            guard let id = batchIndex.removeValue(forKey: raw) else {
                throw violation("retraction of a batch of \(d) at \(ts) that is not outstanding")
            }
            unappliedBatches[id] = nil
        }
        compactDataTimes(d)
    }

    /// Keeps only what reads and applies of `d` still need: the latest write and
    /// registration, everything unapplied, and the registrations holding kept writes.
    mutating func compactDataTimes(_ d: ShardID) {
        guard var times = datas[d] else { return }
        if let u = unappliedBatches.values.first?.ts {
            while times.writes.count > 1, let front = times.writes.first, front < u { times.writes.removeFirst() }
        } else {
            while times.writes.count > 1 { times.writes.removeFirst() }
        }
        let candidates = [unappliedRegisters.first?.ts, times.writes.first].compactMap { $0 }
        if let m = candidates.min() {
            while times.registered.count > 1, let front = times.registered.first {
                if let f = front.forgetTs, f >= m { break }
                guard front.forgetTs != nil else { break }
                times.registered.removeFirst()
            }
        } else {
            while times.registered.count > 1 { times.registered.removeFirst() }
        }
        datas[d] = times
    }

    // MARK: Questions

    /// Whether `d` is registered now. `ts` must be the current progress.
    public func registeredAtProgress(_ d: ShardID, _ ts: Timestamp) -> Bool {
        precondition(ts == progressExclusive, "registeredAtProgress(\(ts)) asked at progress \(progressExclusive)")
        guard let times = datas[d] else { return false }
        return times.lastReg.forgetTs == nil
    }

    /// Every shard registered now, ascending. `ts` must be the current progress.
    public func allRegisteredAtProgress(_ ts: Timestamp) -> [ShardID] {
        precondition(onlyDataID == nil, "needs a full cache")
        precondition(ts == progressExclusive, "allRegisteredAtProgress(\(ts)) asked at progress \(progressExclusive)")
        return datas.filter { $0.value.lastReg.forgetTs == nil }.keys.sorted()
    }

    /// The plan for reading `d` at `asOf` (spec §3.9). Requires progress beyond `asOf`.
    public func dataSnapshot(_ d: ShardID, asOf: Timestamp) -> DataSnapshotPlan {
        precondition(progressExclusive > asOf, "data snapshot at \(asOf) with progress \(progressExclusive)")
        let emptyTo = max(asOf + 1, initTs)
        guard let times = datas[d] else { return DataSnapshotPlan(dataID: d, latestWrite: nil, asOf: asOf, emptyTo: emptyTo) }
        let u = unappliedBatches.values.first?.ts ?? progressExclusive
        let latest = times.writes.last { $0 <= asOf && $0 >= u }
        let plan = DataSnapshotPlan(dataID: d, latestWrite: latest, asOf: asOf, emptyTo: emptyTo)
        precondition(plan.validate() == nil, plan.validate() ?? "")
        return plan
    }

    /// How a reader of `d` at logical progress `ts` moves on (spec §3.9).
    public func dataListenNext(_ d: ShardID, _ ts: Timestamp) -> DataListenNext {
        precondition(progressExclusive >= ts, "listen at \(ts) beyond progress \(progressExclusive)")
        precondition(ts >= initTs, "listen at \(ts) before the cache's init_ts \(initTs)")
        guard let times = datas[d] else { return ts < progressExclusive ? .readDataTo(progressExclusive) : .waitForTxnsProgress }
        let p = times.latestPhysicalTs
        let r = times.lastReg
        if ts >= progressExclusive { return .waitForTxnsProgress }
        if ts <= p { return .readDataTo(p + 1) }
        if r.forgetTs == nil {
            precondition(r.contains(ts), "open registration \(r) does not contain \(ts)")
            return .emitLogicalProgress(progressExclusive)
        }
        precondition(ts > r.registerTs, "listen at \(ts) not after the forgotten registration \(r)")
        return .readDataTo(progressExclusive)
    }

    /// The earliest time of outstanding work (batches or registration fills); progress
    /// when there is none. The txns shard's since must never pass it.
    public func minUnappliedTs() -> Timestamp {
        precondition(onlyDataID == nil, "needs a full cache")
        let batch = unappliedBatches.values.first?.ts
        let register = unappliedRegisters.first?.ts
        return [batch, register].compactMap { $0 }.min() ?? progressExclusive
    }

    /// Outstanding work in time order; at equal times registrations come first. Batches of
    /// one shard at one time are grouped, in commit order.
    public func unapplied() -> [(shard: ShardID, work: UnappliedWork, ts: Timestamp)] {
        precondition(onlyDataID == nil, "needs a full cache")
        var groups: [(ts: Timestamp, shard: ShardID, raws: [[UInt8]])] = []
        var index: [Pair: Int] = [:]
        for (_, b) in unappliedBatches {
            let key = Pair(ts: b.ts, shard: b.shard)
            if let i = index[key] {
                groups[i].raws.append(b.raw)
            } else {
                index[key] = groups.count
                groups.append((b.ts, b.shard, [b.raw]))
            }
        }
        groups.sort { ($0.ts, $0.shard) < ($1.ts, $1.shard) }
        var out: [(ShardID, UnappliedWork, Timestamp)] = []
        var gi = 0
        var ri = unappliedRegisters.startIndex
        while gi < groups.count || ri < unappliedRegisters.endIndex {
            if ri < unappliedRegisters.endIndex, gi >= groups.count || unappliedRegisters[ri].ts <= groups[gi].ts {
                out.append((unappliedRegisters[ri].shard, .registerForget, unappliedRegisters[ri].ts))
                ri += 1
            } else {
                out.append((groups[gi].shard, .batch(groups[gi].raws), groups[gi].ts))
                gi += 1
            }
        }
        return out
    }

    struct Pair: Hashable {
        let ts: Timestamp
        let shard: ShardID
    }

    /// The most recent outstanding batch, optionally only among `shards`.
    func latestUnappliedBatch(in shards: Set<ShardID>? = nil) -> (shard: ShardID, ts: Timestamp)? {
        for (_, b) in unappliedBatches.reversed() where shards?.contains(b.shard) ?? true { return (b.shard, b.ts) }
        return nil
    }

    /// The retractions of `tidy` that are still outstanding as of `expectedTxnsUpper`
    /// (which the cache must have reached): a retraction is written once, never twice.
    public func filterRetractions(_ tidy: Tidy, expectedTxnsUpper: Timestamp) -> [(raw: [UInt8], ts: Timestamp, shard: ShardID)] {
        precondition(onlyDataID == nil, "needs a full cache")
        precondition(progressExclusive >= expectedTxnsUpper, "filtering retractions beyond the cache's progress")
        return tidy.retractions.keys.sorted { $0.lexicographicallyPrecedes($1) }.compactMap { raw in
            guard batchIndex[raw] != nil, let r = tidy.retractions[raw] else { return nil }
            return (raw, r.ts, r.shard)
        }
    }

    /// Forgets registration fills up to `ts`: this handle performed them.
    public mutating func markRegisterApplied(_ ts: Timestamp) {
        while let first = unappliedRegisters.first, first.ts <= ts { unappliedRegisters.removeFirst() }
    }

    /// Checks the internal invariants; nil when they hold.
    public func validate() -> String? {
        guard batchIndex.count == unappliedBatches.count else { return "batch index and unapplied batches differ in size" }
        var previous: Timestamp?
        for (id, b) in unappliedBatches {
            guard batchIndex[b.raw] == id else { return "batch index disagrees for batch \(id)" }
            if let p = previous, b.ts < p { return "unapplied batch times not sorted: \(p) then \(b.ts)" }
            previous = b.ts
        }
        var previousRegister: Timestamp?
        for r in unappliedRegisters {
            if let p = previousRegister, r.ts < p { return "unapplied registrations not sorted" }
            previousRegister = r.ts
        }
        let minUnapplied = onlyDataID == nil ? minUnappliedTs() : nil
        for (d, times) in datas {
            if let e = times.validate() { return "\(d): \(e)" }
            if let m = minUnapplied, times.writes.count > 1, let first = times.writes.first, first < m {
                return "\(d): writes before \(m) were not compacted"
            }
            if let firstBatch = unappliedBatches.values.first(where: { $0.shard == d }), let first = times.writes.first,
                first > firstBatch.ts
            {
                return "\(d): first write \(first) after its first unapplied batch \(firstBatch.ts)"
            }
            if let firstReg = unappliedRegisters.first(where: { $0.shard == d }), let reg = times.registered.first,
                reg.registerTs > firstReg.ts
            {
                return "\(d): first registration \(reg.registerTs) after its first unapplied registration \(firstReg.ts)"
            }
        }
        return nil
    }

    var unappliedBatchCount: Int { unappliedBatches.count }
}

/// Retractions of applied batches, to be written to the txns shard by some later commit
/// (spec/txn-wal.md §2.3): raw batch bytes -> (commit time, data shard). Doing it late,
/// twice, or never is safe.
public struct Tidy: Sendable, Equatable {
    public var retractions: [[UInt8]: (ts: Timestamp, shard: ShardID)]

    public init() { retractions = [:] }

    public var isEmpty: Bool { retractions.isEmpty }

    public mutating func merge(_ other: Tidy) {
        retractions.merge(other.retractions) { a, _ in a }
    }

    public static func == (a: Tidy, b: Tidy) -> Bool {
        a.retractions.count == b.retractions.count
            && a.retractions.allSatisfy { k, v in b.retractions[k].map { $0.ts == v.ts && $0.shard == v.shard } ?? false }
    }
}
