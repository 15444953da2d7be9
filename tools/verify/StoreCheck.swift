import PersistClient
import PersistCodec
import PersistCore

// Library-ready: depends on PersistCore, PersistCodec, PersistClient (and, through
// StoreReader, PersistLocation).

/// What `StoreCheck` is asked to do.
struct CheckConfiguration: Sendable {
    /// The txns shard whose commits the data shards must match.
    var txnsShard: ShardID
    /// Whether a committed but unapplied transaction is a violation.
    var requireApplied = false
    /// Witnesses kept per kind of violation (all are counted).
    var maxWitnesses = 20
    /// How often a shard whose state moves while it is checked is read again before what
    /// was seen is reported.
    var rereads = 3
}

/// The outcome of `txn-verify check`, for people (`text`) and for programs (JSON).
struct CheckReport: Codable, Sendable {
    struct Summary: Codable, Sendable {
        /// Keys listed in consensus.
        var consensusKeys = 0
        /// Shard states read and checked for blob references.
        var shardsChecked = 0
        /// Blob references checked (parts and rollups).
        var blobsChecked = 0
        /// Data shards whose contents were compared with the replay of their commits.
        var dataShardsCompared = 0
        /// Distinct (key, value, time) triples compared.
        var rowsCompared = 0
        /// Batches the txns shard's history shows committed.
        var committedBatches = 0
        /// Committed batches at or beyond their data shard's upper.
        var unappliedCommits = 0
        /// Times whose commits could not be read (compacted away), compared only with what
        /// their parts record: diff sums, key bounds and row counts.
        var unverifiableTimes = 0
        /// How many of those had diff sums to compare.
        var sumCheckedTimes = 0
    }

    /// Something not checked, and why.
    struct Skip: Codable, Hashable, Sendable {
        var what: String
        var reason: String
    }

    /// A committed batch not yet applied to its data shard.
    struct Unapplied: Codable, Hashable, Sendable {
        var shard: String
        var shardName: String?
        var time: Timestamp
        /// The data shard's upper (`[t]`, or `[]` when closed).
        var upper: [Timestamp]
    }

    var ok: Bool
    var txnsShard: String
    var summary = Summary()
    var skipped: [Skip] = []
    /// The first `maxWitnesses` unapplied commits.
    var unapplied: [Unapplied] = []
    var violationCounts: [String: Int] = [:]
    var violations: [Violation] = []
    var violationsOmitted = 0

    /// The report for people: the summary, what was skipped, then each witness.
    var text: String {
        let s = summary
        var lines = [
            "txn-verify check: \(ok ? "OK" : "FAILED") (txns shard \(txnsShard))",
            "  consensus keys \(s.consensusKeys), shards checked \(s.shardsChecked), blobs checked \(s.blobsChecked)",
            "  data shards compared \(s.dataShardsCompared), rows compared \(s.rowsCompared), committed batches \(s.committedBatches)",
            "  unapplied commits \(s.unappliedCommits), times compared by part statistics only \(s.unverifiableTimes) (\(s.sumCheckedTimes) with diff sums)",
        ]
        for k in skipped { lines.append("  skipped \(k.what): \(k.reason)") }
        for u in unapplied {
            lines.append("  unapplied: shard \(u.shard)\(u.shardName.map { " (\"\($0)\")" } ?? "") time \(u.time), upper \(u.upper)")
        }
        if !violationCounts.isEmpty {
            lines.append("  violations: " + violationCounts.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        }
        for v in violations { lines.append("  " + v.text) }
        if violationsOmitted > 0 { lines.append("  ... and \(violationsOmitted) more violations not shown") }
        // Last, on one line, for scripts that keep only the final line.
        lines.append(
            "summary: \(ok ? "ok" : "FAILED"), \(s.shardsChecked) shards, \(s.blobsChecked) blobs, \(s.dataShardsCompared) data shards, "
                + "\(s.rowsCompared) rows, \(s.committedBatches) committed batches, \(s.unappliedCommits) unapplied, "
                + "\(s.unverifiableTimes) times by statistics, \(violationCounts.values.reduce(0, +)) violations")
        return lines.joined(separator: "\n")
    }
}

/// The white-box invariants of a store written by txn-wal (issue 7, item 4):
///
/// 1. every blob a shard's current state needs exists (`BlobReferences`);
/// 2. every data shard holds exactly the updates its committed transactions wrote, at
///    their commit times (`TxnsHistory`, `ShardReplay`).
///
/// Reads only. The store may be in use: a shard whose state moves while it is checked is
/// read again, and the txns shard is read after every data shard, so each data shard is
/// compared with commits that include all it has applied. Commits made meanwhile show up
/// as unapplied, so `requireApplied` belongs to a quiet store (after the crash test's
/// heal).
struct StoreCheck: Sendable {
    let reader: StoreReader
    let configuration: CheckConfiguration

    /// The consensus key of the coordinator's shard-name table for `txnsShard` (the
    /// coordinator's `ShardNameStore` keeps it there).
    static func namesKey(txnsShard: ShardID) -> String { "txn-coordinator/\(txnsShard)/names" }

    /// Runs every check. Throws only what the store threw (`StorageError`) or
    /// cancellation; everything the stored data says is in the report.
    func run() async throws -> CheckReport {
        var run = CheckRun(reader: reader, configuration: configuration)
        try await run.checkAll()
        return run.report()
    }
}

/// The state of one check run.
private struct CheckRun {
    let reader: StoreReader
    let configuration: CheckConfiguration
    var findings: Findings
    var summary = CheckReport.Summary()
    var skipped: [CheckReport.Skip] = []
    var unapplied: [CheckReport.Unapplied] = []
    var names = ShardNameTable()
    /// The newest state read of each shard.
    var states: [ShardID: ShardState] = [:]

    init(reader: StoreReader, configuration: CheckConfiguration) {
        self.reader = reader
        self.configuration = configuration
        self.findings = Findings(cap: configuration.maxWitnesses)
    }

    var txns: ShardID { configuration.txnsShard }

    func report() -> CheckReport {
        CheckReport(
            ok: findings.isEmpty, txnsShard: txns.description, summary: summary, skipped: skipped, unapplied: unapplied,
            violationCounts: findings.countsByName, violations: findings.kept, violationsOmitted: findings.omitted)
    }

    mutating func skip(_ what: String, _ reason: String) {
        skipped.append(CheckReport.Skip(what: what, reason: reason))
    }

    func describe(_ shard: ShardID) -> String {
        names.name(of: shard).map { "\(shard) (\"\($0)\")" } ?? shard.description
    }

    func violation(_ check: Violation.Check, _ message: String, shard: ShardID? = nil) -> Violation {
        var v = Violation(check, message)
        v.shard = shard?.description
        v.shardName = shard.flatMap { names.name(of: $0) }
        return v
    }

    mutating func checkAll() async throws {
        let keys = try await reader.consensus.listKeys()
        summary.consensusKeys = keys.count
        let namesKey = StoreCheck.namesKey(txnsShard: txns)
        var shards: [ShardID] = []
        for key in keys {
            if let id = try? ShardID(parsing: key), id.description == key {
                shards.append(id)
            } else if key == namesKey {
                skip(key, "the shard-name table of the txns shard (read for shard names only)")
            } else {
                skip(key, "not a shard id")
            }
        }
        if keys.contains(namesKey) { try await readNames(namesKey) }
        for shard in shards {
            if let s = try await readState(shard) { states[shard] = s }
        }
        summary.shardsChecked = states.count
        for shard in shards.sorted() where states[shard] != nil { try await checkBlobs(shard) }
        try await checkReplay(shardsInConsensus: Set(shards), storeIsEmpty: keys.isEmpty)
    }

    // MARK: Reading

    mutating func readNames(_ key: String) async throws {
        guard let head = try await reader.head(key) else { return }
        do {
            names = try ShardNameTable.decode(head.data)
        } catch {
            var v = Violation(.stateUnreadable, "the shard-name table does not decode: \(error)")
            v.consensusKey = key
            v.seqno = head.seqno.rawValue
            findings.add(v)
        }
    }

    /// The shard's state, or nil (with a violation recorded when it cannot be read).
    mutating func readState(_ shard: ShardID) async throws -> ShardState? {
        do {
            return try await reader.state(shard)
        } catch let e as ReadError {
            findings.add(violation(.stateUnreadable, "the shard's state cannot be read: \(e)", shard: shard))
            return nil
        }
    }

    /// The shard's state if it can be read, without recording anything.
    func rereadState(_ shard: ShardID) async throws -> ShardState? {
        do {
            return try await reader.state(shard)
        } catch is ReadError {
            return nil
        }
    }

    // MARK: Blob references

    mutating func checkBlobs(_ shard: ShardID) async throws {
        guard var state = states[shard] else { return }
        var attempt = 1
        while true {
            let existing = try await reader.blobKeys(of: shard)
            let refs = BlobReferences.required(by: state)
            let missing = BlobReferences.missing(refs, existing: existing)
            // GC deletes only what newer states no longer need: if the state moved on
            // meanwhile, check the newer one.
            if !missing.isEmpty, attempt < configuration.rereads, let fresh = try await rereadState(shard),
                fresh.seqno != state.seqno
            {
                state = fresh
                attempt += 1
                continue
            }
            states[shard] = state
            summary.blobsChecked += refs.count
            for m in missing {
                var v = violation(.blobReference, "the shard's state needs this \(m.kind.rawValue), and it does not exist", shard: shard)
                v.seqno = state.seqno.rawValue
                v.blobKey = m.key
                findings.add(v)
            }
            return
        }
    }

    // MARK: Replay

    /// What reading a data shard's side of the replay gave.
    enum DataSide {
        /// Its state, and its contents read from that state, times kept.
        case contents(ShardState, [Update])
        /// It has no state in consensus.
        case noState
        /// It is not compared; `skip` says why (and any violation is recorded).
        case skipped(String)
    }

    mutating func checkReplay(shardsInConsensus: Set<ShardID>, storeIsEmpty: Bool) async throws {
        guard shardsInConsensus.contains(txns) else {
            if storeIsEmpty {
                skip("replay", "the store is empty")
            } else {
                findings.add(violation(.stateUnreadable, "the txns shard has no state in consensus (is --txns-shard right?)", shard: txns))
            }
            return
        }
        // Every data shard is read before the txns shard, so that every commit a data
        // shard's state has applied is in the txns state read: the txns upper is at or
        // beyond every data upper (a data shard ahead of it was written outside txn-wal,
        // and its updates there show up as unexpected).
        var data: [ShardID: DataSide] = [:]
        for shard in shardsInConsensus.subtracting([txns]).sorted() { data[shard] = try await readDataSide(shard) }
        guard let txnsState = try await readState(txns) else {
            skip("replay", "the txns shard's state cannot be read (see state_unreadable)")
            return
        }
        guard txnsState.trace.since == .minimum else {
            skip(
                "replay",
                "the txns shard's since is \(txnsState.trace.since): its history before that is consolidated, so commits that tidy retracted cannot be recovered"
            )
            return
        }
        let txnsRows: [Update]
        do {
            switch try await reader.contents(of: txnsState) {
            case .rows(let rows): txnsRows = rows
            case .missing(let keys):
                skip("replay", "\(keys.count) parts of the txns shard are missing (see blob_reference)")
                return
            }
        } catch let e as ReadError {
            findings.add(violation(.stateUnreadable, "the txns shard's contents cannot be read: \(e)", shard: txns))
            skip("replay", "the txns shard's contents cannot be read")
            return
        }
        let history = TxnsHistory(updates: txnsRows)
        for a in history.anomalies {
            var v = a
            if let s = v.shard, let id = try? ShardID(parsing: s) { v.shardName = names.name(of: id) }
            findings.add(v)
        }
        summary.committedBatches = history.commits.count
        let byShard = history.commitsByShard
        var dataShards = history.shards.union(names.entries.map(\.id))
        dataShards.remove(txns)
        for shard in shardsInConsensus.subtracting(dataShards).subtracting([txns]).sorted() {
            skip(shard.description, "no txns entry and no name refer to it: blob references checked only")
        }
        for shard in dataShards.sorted() {
            let commits = byShard[shard] ?? []
            switch data[shard] ?? .noState {
            case .noState:
                if commits.isEmpty {
                    skip(describe(shard), "named but has no state (never initialized): nothing to compare")
                } else {
                    findings.add(violation(.replay, "\(commits.count) batches were committed to the shard, but it has no state", shard: shard))
                }
            case .skipped(let reason):
                skip(describe(shard), reason)
            case .contents(let state, let rows):
                try await replay(shard, state: state, actual: rows, commits: commits)
            }
        }
    }

    /// A replay finding about one (key, value, time) of a data shard.
    func rowViolation(_ message: String, _ m: ShardReplay.Mismatch, shard: ShardID, seqno: SeqNo) -> Violation {
        var v = violation(.replay, message, shard: shard)
        v.seqno = seqno.rawValue
        v.key = ByteText.render(m.key)
        v.value = ByteText.render(m.value)
        v.time = m.time
        v.expectedDiff = m.expected
        v.actualDiff = m.actual
        return v
    }

    /// The data shard's contents, from a state whose parts all exist (read again if the
    /// state moves on while its parts are fetched).
    mutating func readDataSide(_ shard: ShardID) async throws -> DataSide {
        guard var state = states[shard] else { return .noState }
        guard state.trace.since == .minimum else {
            return .skipped("its since is \(state.trace.since): times were forwarded, so contents cannot be compared at commit times")
        }
        for _ in 0..<max(1, configuration.rereads) {
            let read: StoreReader.PartsRead
            do {
                read = try await reader.contents(of: state)
            } catch let e as ReadError {
                findings.add(violation(.stateUnreadable, "the shard's contents cannot be read: \(e)", shard: shard))
                return .skipped("its contents cannot be read")
            }
            if case .rows(let rows) = read { return .contents(state, rows) }
            guard let fresh = try await rereadState(shard), fresh.seqno != state.seqno, fresh.trace.since == .minimum else { break }
            state = fresh
        }
        return .skipped("parts of its trace are missing (see blob_reference)")
    }

    /// Compares one data shard (`state`, its contents `actual`) with its `commits`.
    mutating func replay(_ shard: ShardID, state: ShardState, actual: [Update], commits: [TxnsHistory.Commit]) async throws {
        // Listed after the shard's and the txns shard's states were read: a part of a
        // commit they show that is not listed has been deleted since it was committed.
        let listed = try await reader.blobKeys(of: shard)
        let upper = state.trace.upper
        let applied = commits.filter { !upper.lessEqual($0.ts) }
        for c in commits where upper.lessEqual(c.ts) { try await noteUnapplied(c, upper: upper, listed: listed) }

        var readCommits: [ShardReplay.AppliedCommit] = []
        let reads: [StoreReader.PartsRead]
        do {
            reads = try await reader.rowsOfEach(applied.map(\.handle.batch), shard: shard, listed: listed)
        } catch let e as ReadError {
            findings.add(violation(.stateUnreadable, "a committed batch cannot be read: \(e)", shard: shard))
            skip(describe(shard), "a committed batch cannot be read")
            return
        }
        for (c, read) in zip(applied, reads) {
            switch read {
            case .rows(let rows): readCommits.append(.init(commit: c, rows: .rows(rows)))
            // Gone because compaction merged it (or, if the state still needs the part,
            // already reported as a missing blob).
            case .missing: readCommits.append(.init(commit: c, rows: .unavailable))
            }
        }
        let result = ShardReplay(actual: actual, applied: readCommits, bound: upper.element)
        summary.dataShardsCompared += 1
        summary.rowsCompared += result.rowsCompared
        summary.unverifiableTimes += result.unverifiableTimes.count
        summary.sumCheckedTimes += result.sumCheckedTimes
        for m in result.mismatches {
            let message: String
            switch (m.expected, m.actual) {
            case (_, 0): message = "a committed update is missing from the data shard"
            case (0, _): message = "the data shard holds an update no commit wrote"
            default: message = "the data shard holds a committed update with another diff"
            }
            findings.add(rowViolation(message, m, shard: shard, seqno: state.seqno))
        }
        for m in result.strayRows {
            findings.add(rowViolation(
                "at a time whose committed batches were compacted away, the shard holds an update outside all their key bounds",
                m, shard: shard, seqno: state.seqno))
        }
        for m in result.countMismatches {
            var v = violation(
                .replay,
                "at a time whose committed batches were compacted away, the shard holds \(m.actualRows) distinct updates, more than their \(m.maxRows) rows",
                shard: shard)
            v.seqno = state.seqno.rawValue
            v.time = m.time
            findings.add(v)
        }
        for m in result.sumMismatches {
            var v = violation(
                .replay, "at a time whose committed batches were compacted away, the shard's diffs do not add up to the commits'",
                shard: shard)
            v.seqno = state.seqno.rawValue
            v.time = m.time
            v.expectedDiff = m.expected
            v.actualDiff = m.actual
            findings.add(v)
        }
    }

    /// Records a commit at or beyond its data shard's upper; its parts must still exist,
    /// or applying it can never finish.
    mutating func noteUnapplied(_ c: TxnsHistory.Commit, upper: Antichain, listed: Set<String>) async throws {
        summary.unappliedCommits += 1
        if unapplied.count < configuration.maxWitnesses {
            unapplied.append(.init(shard: c.shard.description, shardName: names.name(of: c.shard), time: c.ts, upper: upper.elements))
        }
        if configuration.requireApplied {
            var v = violation(.unapplied, "a committed batch is not applied (its time is not below the shard's upper \(upper))", shard: c.shard)
            v.time = c.ts
            findings.add(v)
        }
        let missing = c.handle.batch.parts.map { BatchParts.blobKey(shard: c.shard, partKey: $0.key) }.filter { !listed.contains($0) }
        guard !missing.isEmpty else { return }
        // Applied (and compacted away) since the shard's state was read?
        if let fresh = try await rereadState(c.shard), !fresh.trace.upper.lessEqual(c.ts) { return }
        for key in missing {
            var v = violation(.blobReference, "a committed, unapplied batch needs this part, and it does not exist", shard: c.shard)
            v.time = c.ts
            v.blobKey = key
            findings.add(v)
        }
    }
}
