import PersistClient
import PersistCodec
import PersistCore

// Library-ready: pure, no I/O (PersistCore, PersistCodec, PersistClient).

/// The comparison of one data shard with the replay of what was committed to it.
///
/// Expected contents: every committed batch's updates, each at its commit time.
/// Actual contents: the data shard's updates with their own times (not forwarded to a
/// read time). Both are compared, consolidated, at the times below `bound`, the data
/// shard's upper: commits at or beyond it are not applied yet. (The caller reads the txns
/// shard after the data shard, so every commit the data shard has applied is known.)
struct ShardReplay: Sendable {
    /// What became of reading one committed batch.
    enum BatchRows: Sendable {
        /// Its updates, retimed to the commit time.
        case rows([Update])
        /// Some of its parts no longer exist (compaction merged the batch into another and
        /// GC deleted them): its updates are unknown.
        case unavailable
    }

    /// An applied commit and what reading it gave.
    struct AppliedCommit: Sendable {
        var commit: TxnsHistory.Commit
        var rows: BatchRows
    }

    /// A `(key, value, time)` whose expected and actual diffs differ.
    struct Mismatch: Hashable, Sendable {
        var key: [UInt8]
        var value: [UInt8]
        var time: Timestamp
        var expected: Int64
        var actual: Int64
    }

    /// A time whose updates could not be compared one by one, where the sums of diffs
    /// (which consolidation and compaction preserve) differ.
    struct SumMismatch: Hashable, Sendable {
        var time: Timestamp
        var expected: Int64
        var actual: Int64
    }

    /// A time compared by statistics only that holds more distinct updates than the
    /// batches committed at it have rows.
    struct CountMismatch: Hashable, Sendable {
        var time: Timestamp
        var maxRows: UInt64
        var actualRows: Int
    }

    /// Distinct `(key, value, time)` triples compared.
    private(set) var rowsCompared = 0
    private(set) var mismatches: [Mismatch] = []
    /// Times whose commits could not all be read, so the updates at them were compared
    /// only with what the commits' parts record (diff sums, key bounds, row counts).
    private(set) var unverifiableTimes: [Timestamp] = []
    /// How many of those had a diff sum to compare (every part at the time recorded one).
    private(set) var sumCheckedTimes = 0
    private(set) var sumMismatches: [SumMismatch] = []
    /// Updates at those times whose key no batch committed at that time covers (by the
    /// key bounds its parts record); `expected` is 0.
    private(set) var strayRows: [Mismatch] = []
    private(set) var countMismatches: [CountMismatch] = []

    /// Compares `actual` (the data shard's updates) with `applied` (its commits below
    /// `bound`; others are ignored) at the times below `bound` (nil: no bound).
    init(actual: [Update], applied: [AppliedCommit], bound: Timestamp?) {
        func inBounds(_ t: Timestamp) -> Bool { bound.map { t < $0 } ?? true }
        var expected: [Update] = []
        var unverifiable: Set<Timestamp> = []
        var expectedSums: [Timestamp: Int64?] = [:]
        for a in applied where inBounds(a.commit.ts) {
            switch a.rows {
            case .rows(let rows):
                expected += rows.map { Update(key: $0.key, value: $0.value, time: a.commit.ts, diff: $0.diff) }
            case .unavailable:
                unverifiable.insert(a.commit.ts)
            }
            // Every commit at a time counts towards that time's sum, read or not.
            let sum = a.commit.handle.batch.parts.reduce(Int64?(0)) { acc, p in
                guard let acc, let d = p.diffsSum else { return nil }
                return acc &+ d
            }
            let previous = expectedSums[a.commit.ts] ?? Int64?(0)
            expectedSums[a.commit.ts] = previous.flatMap { p in sum.map { p &+ $0 } }
        }
        var actualRows = actual.filter { inBounds($0.time) }
        Consolidation.consolidate(&actualRows)
        Consolidation.consolidate(&expected)

        // The times that cannot be compared row by row are checked against what the
        // committed parts record about themselves: diff sums (which consolidation and
        // compaction preserve), key bounds and row counts.
        var ranges: [Timestamp: [(lower: [UInt8], upper: [UInt8])]] = [:]
        var maxRows: [Timestamp: UInt64] = [:]
        for a in applied where unverifiable.contains(a.commit.ts) {
            for p in a.commit.handle.batch.parts where p.rowCount > 0 {
                ranges[a.commit.ts, default: []].append((p.keyLower, p.keyUpper))
                maxRows[a.commit.ts, default: 0] &+= p.rowCount
            }
        }
        var actualSums: [Timestamp: Int64] = [:]
        var actualCounts: [Timestamp: Int] = [:]
        for u in actualRows where unverifiable.contains(u.time) {
            actualSums[u.time, default: 0] &+= u.diff
            actualCounts[u.time, default: 0] += 1
            let covered = ranges[u.time, default: []].contains { r in
                !u.key.lexicographicallyPrecedes(r.lower) && !r.upper.lexicographicallyPrecedes(u.key)
            }
            if !covered { strayRows.append(Mismatch(key: u.key, value: u.value, time: u.time, expected: 0, actual: u.diff)) }
        }
        unverifiableTimes = unverifiable.sorted()
        for t in unverifiableTimes {
            let rows = actualCounts[t] ?? 0
            if UInt64(rows) > maxRows[t] ?? 0 {
                countMismatches.append(CountMismatch(time: t, maxRows: maxRows[t] ?? 0, actualRows: rows))
            }
            guard let e = expectedSums[t] ?? nil else { continue }
            sumCheckedTimes += 1
            let a = actualSums[t] ?? 0
            if a != e { sumMismatches.append(SumMismatch(time: t, expected: e, actual: a)) }
        }

        // Row by row everywhere else: a merge of two sorted, consolidated lists.
        let exp = expected.filter { !unverifiable.contains($0.time) }
        let act = actualRows.filter { !unverifiable.contains($0.time) }
        var i = 0
        var j = 0
        while i < exp.count || j < act.count {
            rowsCompared += 1
            if j == act.count || (i < exp.count && Consolidation.precedes(exp[i], act[j])) {
                mismatches.append(Mismatch(key: exp[i].key, value: exp[i].value, time: exp[i].time, expected: exp[i].diff, actual: 0))
                i += 1
            } else if i == exp.count || Consolidation.precedes(act[j], exp[i]) {
                mismatches.append(Mismatch(key: act[j].key, value: act[j].value, time: act[j].time, expected: 0, actual: act[j].diff))
                j += 1
            } else {
                if exp[i].diff != act[j].diff {
                    mismatches.append(
                        Mismatch(key: exp[i].key, value: exp[i].value, time: exp[i].time, expected: exp[i].diff, actual: act[j].diff))
                }
                i += 1
                j += 1
            }
        }
        // Earliest first: the first divergence is usually the informative one.
        mismatches.sort { a, b in
            if a.time != b.time { return a.time < b.time }
            if a.key != b.key { return a.key.lexicographicallyPrecedes(b.key) }
            return a.value.lexicographicallyPrecedes(b.value)
        }
    }
}
