import PersistCodec
import PersistCore

/// Why a diff could not be applied to a state: it was computed from another state.
/// Applying diffs fetched from consensus to the state they follow never fails; this
/// error means corruption or a bug, and the caller refetches from a rollup.
struct DiffMismatch: Error, CustomStringConvertible {
    let description: String
}

extension StateDiff {
    /// The diff that turns `old` into `new` (consecutive seqnos).
    static func between(_ old: ShardState, _ new: ShardState, applierVersion: String) -> StateDiff {
        var d = StateDiff(
            applierVersion: applierVersion, seqnoFrom: old.seqno, seqnoTo: new.seqno, walltimeMs: new.walltimeMs,
            latestRollupKey: new.latestRollup?.rollup.key ?? "")
        if old.hostname != new.hostname { d.hostname = ValueChange(old: old.hostname, new: new.hostname) }
        if old.lastGCReq != new.lastGCReq { d.lastGCReq = ValueChange(old: old.lastGCReq, new: new.lastGCReq) }
        d.rollups = changes(old.rollups, new.rollups)
        d.leasedReaders = changes(old.leasedReaders, new.leasedReaders)
        d.criticalReaders = changes(old.criticalReaders, new.criticalReaders)
        d.writers = changes(old.writers, new.writers)
        if old.trace.since != new.trace.since { d.traceSince = ValueChange(old: old.trace.since, new: new.trace.since) }
        if old.trace.upper != new.trace.upper { d.traceUpper = ValueChange(old: old.trace.upper, new: new.trace.upper) }
        let oldBatches = Set(old.trace.batches)
        let newBatches = Set(new.trace.batches)
        d.insertedBatches = new.trace.batches.filter { !oldBatches.contains($0) }
        d.deletedBatches = old.trace.batches.filter { !newBatches.contains($0) }
        return d
    }

    static func changes<K: Comparable & Hashable & Sendable, V: Hashable & Sendable>(_ old: [K: V], _ new: [K: V])
        -> [MapChange<K, V>]
    {
        var out: [MapChange<K, V>] = []
        for k in Set(old.keys).union(new.keys).sorted() {
            switch (old[k], new[k]) {
            case (nil, let n?): out.append(.insert(k, n))
            case (let o?, nil): out.append(.delete(k, o))
            case (let o?, let n?) where o != n: out.append(.update(k, old: o, new: n))
            default: break
            }
        }
        return out
    }

    /// Applies this diff to `state`, which must be at `seqnoFrom`; every recorded old
    /// value is checked. On success `state` is at `seqnoTo`.
    func apply(to state: inout ShardState) throws(DiffMismatch) {
        guard state.seqno == seqnoFrom else {
            throw DiffMismatch(description: "diff \(seqnoFrom)->\(seqnoTo) applied to state \(state.seqno)")
        }
        var s = state
        s.seqno = seqnoTo
        s.walltimeMs = walltimeMs
        s.applierVersion = applierVersion
        if let c = hostname { try Self.check(s.hostname == c.old, "hostname"); s.hostname = c.new }
        if let c = lastGCReq { try Self.check(s.lastGCReq == c.old, "last gc req"); s.lastGCReq = c.new }
        try Self.apply(rollups, to: &s.rollups, "rollups")
        try Self.apply(leasedReaders, to: &s.leasedReaders, "leased readers")
        try Self.apply(criticalReaders, to: &s.criticalReaders, "critical readers")
        try Self.apply(writers, to: &s.writers, "writers")
        if let c = traceSince { try Self.check(s.trace.since == c.old, "since"); s.trace.since = c.new }
        if let c = traceUpper { try Self.check(s.trace.upper == c.old, "upper"); s.trace.upper = c.new }
        if !insertedBatches.isEmpty || !deletedBatches.isEmpty {
            let deleted = Set(deletedBatches)
            let remaining = s.trace.batches.filter { !deleted.contains($0) }
            try Self.check(remaining.count + deletedBatches.count == s.trace.batches.count, "deleted batches are present")
            s.trace.batches = (remaining + insertedBatches).sorted { a, b in
                // Contiguous, non-empty intervals: lower bounds order them.
                guard let la = a.desc.lower.element else { return false }
                guard let lb = b.desc.lower.element else { return true }
                return la < lb
            }
        }
        do {
            try s.trace.validate()
        } catch {
            throw DiffMismatch(description: "trace after diff \(seqnoTo): \(error)")
        }
        state = s
    }

    static func check(_ condition: Bool, _ what: String) throws(DiffMismatch) {
        if !condition { throw DiffMismatch(description: "diff does not match the state: \(what)") }
    }

    static func apply<K: Hashable, V: Equatable>(_ changes: [MapChange<K, V>], to map: inout [K: V], _ what: String)
        throws(DiffMismatch)
    {
        for c in changes {
            switch c {
            case .insert(let k, let v):
                try check(map[k] == nil, "\(what): insert of a present key")
                map[k] = v
            case .update(let k, let old, let new):
                try check(map[k] == old, "\(what): update from another value")
                map[k] = new
            case .delete(let k, let old):
                try check(map[k] == old, "\(what): delete of another value")
                map[k] = nil
            }
        }
    }
}
