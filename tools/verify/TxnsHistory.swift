import PersistClient
import PersistCodec
import PersistCore

// Library-ready: pure, no I/O (PersistCore, PersistCodec, PersistClient).

/// What the txns shard's history says was committed: every batch appended to a data
/// shard, at its commit time, whether or not tidy has retracted its entry since.
///
/// Built from the txns shard's updates with their own times (never forwarded), because
/// tidy retracts applied entries: the consolidated contents would have lost them.
struct TxnsHistory: Sendable {
    /// A batch committed for a data shard at `ts`.
    struct Commit: Hashable, Sendable {
        var shard: ShardID
        var ts: Timestamp
        var handle: TransmittableBatch
    }

    /// Every commit, ordered by shard, then time.
    var commits: [Commit] = []
    /// Every data shard an entry names (registrations included).
    var shards: Set<ShardID> = []
    /// Distinct entries seen (register and append, retracted or not).
    var entryCount = 0
    /// Entries that break the rules of the txns shard.
    var anomalies: [Violation] = []

    /// The history in `updates`, which must be the txns shard's updates with their own
    /// times (any order, consolidated or not).
    ///
    /// The rules checked, per distinct entry (update key and value): it decodes; its diffs
    /// sum to 0 or 1; an append is added once (+1, at a time equal to the commit time it
    /// records) and retracted at most once, later; a registration is added once per
    /// register time and removed at most once, later.
    init(updates: [Update]) {
        var rows = updates
        Consolidation.consolidate(&rows)
        var start = 0
        while start < rows.count {
            var end = start + 1
            while end < rows.count && rows[end].key == rows[start].key && rows[end].value == rows[start].value { end += 1 }
            entryCount += 1
            read(entry: rows[start..<end])
            start = end
        }
        commits.sort { ($0.shard, $0.ts) < ($1.shard, $1.ts) }
    }

    /// Commits grouped by data shard.
    var commitsByShard: [ShardID: [Commit]] { Dictionary(grouping: commits, by: \.shard) }

    /// Checks and records one entry from its consolidated updates (same key and value,
    /// ascending times).
    private mutating func read(entry updates: ArraySlice<Update>) {
        guard let first = updates.first else { return }
        let entry: TxnsEntry
        do {
            entry = try TxnsEntry.decode(key: first.key, value: first.value)
        } catch {
            var v = Violation(.txnsHistory, "a txns shard entry does not decode: \(error)")
            v.key = ByteText.render(first.key)
            v.time = first.time
            anomalies.append(v)
            return
        }
        shards.insert(entry.shard)
        let additions = updates.filter { $0.diff > 0 }
        let removals = updates.filter { $0.diff < 0 }
        let total = updates.reduce(Int64(0)) { $0 &+ $1.diff }
        let kind: String
        switch entry {
        case .register: kind = "registration"
        case .append: kind = "commit"
        }
        func anomaly(_ message: String, at time: Timestamp?, diff: Int64? = nil) {
            var v = Violation(.txnsHistory, message)
            v.shard = entry.shard.description
            v.time = time
            v.actualDiff = diff
            anomalies.append(v)
        }
        guard additions.count == 1, let added = additions.first, added.diff == 1, total == 0 || total == 1 else {
            anomaly(
                "the \(kind) entry for time \(entry.ts) has additions \(additions.map { "\($0.diff)@\($0.time)" }) and removals \(removals.map { "\($0.diff)@\($0.time)" }); expected one +1 and at most one later -1",
                at: additions.first?.time ?? first.time, diff: total)
            return
        }
        if let removed = removals.first, removed.time <= added.time {
            anomaly("the \(kind) entry added at \(added.time) is retracted at \(removed.time), not later", at: removed.time)
        }
        guard case .append(let shard, let ts, let bytes) = entry else { return }
        guard ts == added.time else {
            anomaly("a commit entry records time \(ts) but was written at \(added.time)", at: added.time)
            return
        }
        do {
            commits.append(Commit(shard: shard, ts: ts, handle: try TransmittableBatch.decode(bytes)))
        } catch {
            // TxnsEntry.decode already verified the handle; this is unreachable in practice.
            anomaly("a commit entry's batch handle does not decode: \(error)", at: ts)
        }
    }
}
