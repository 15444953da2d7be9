import PersistCodec
import PersistCore

/// Whether a command's change to the next state should be committed (a new seqno), or
/// the command ends here with nothing written.
enum Work<Result> {
    case commit(Result)
    case noOp(Result)
}

/// The outcome of appending a batch, as decided against one version of the state.
enum AppendOutcome: Equatable, Sendable {
    case appended(mergeRequests: [MergeRequest])
    /// This writer's most recent successful append carried the same token: an earlier,
    /// indeterminate attempt of this very call committed.
    case alreadyCommitted
    case upperMismatch(shardUpper: Antichain, writerUpper: Antichain)
    case invalid(InvalidUsage)
}

/// The answer to a critical reader's compare-and-downgrade.
public enum SinceDowngradeResult: Hashable, Sendable {
    /// The token matched; the reader's since is now this (at least the requested one,
    /// unless it was already further ahead).
    case downgraded(since: Antichain)
    /// The token did not match: another holder of this id moved it on.
    case opaqueMismatch(actual: UInt64, since: Antichain)
}

/// Garbage collection assigned by a committed transition.
struct GCRequest: Hashable, Sendable {
    var newSeqnoSince: SeqNo
}

/// The state transitions of a shard (spec/persist.md §3-§6), as pure functions over the
/// *next* state (already a copy of the current one with its seqno advanced). No I/O.
extension ShardState {
    /// The shard's since: every reader's since is at or beyond it.
    var since: Antichain { trace.since }
    var upper: Antichain { trace.upper }

    /// The oldest seqno any leased reader may still read parts of; GC keeps everything
    /// reachable from states at or after it.
    var seqnoSince: SeqNo {
        leasedReaders.values.reduce(seqno) { min($0, $1.seqno) }
    }

    var latestRollup: (seqno: SeqNo, rollup: HollowRollup)? {
        rollups.max { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    // MARK: Writes

    mutating func compareAndAppend(
        _ batch: HollowBatch, writer: WriterID, token: IdempotencyToken, nowMs: UInt64, leaseMs: UInt64,
        purpose: String, mergeFanout: Int
    ) -> Work<AppendOutcome> {
        let desc = batch.desc
        guard desc.lower.lessEqual(desc.upper) else {
            return .noOp(.invalid(.invalidBounds(lower: desc.lower, upper: desc.upper)))
        }
        if desc.lower == desc.upper && !batch.parts.isEmpty {
            return .noOp(.invalid(.invalidEmptyTimeInterval(lower: desc.lower, upper: desc.upper)))
        }
        var w = writers[writer] ?? WriterState(
            lastHeartbeatMs: nowMs, leaseDurationMs: leaseMs, mostRecentWriteToken: Self.noToken,
            mostRecentWriteUpper: .minimum, purpose: purpose)
        if w.mostRecentWriteToken == token {
            return .noOp(.alreadyCommitted)
        }
        guard trace.upper == desc.lower else {
            return .noOp(.upperMismatch(shardUpper: trace.upper, writerUpper: w.mostRecentWriteUpper))
        }
        trace.push(batch)
        w.mostRecentWriteToken = token
        w.mostRecentWriteUpper = desc.upper
        w.lastHeartbeatMs = max(w.lastHeartbeatMs, nowMs)
        writers[writer] = w
        return .commit(.appended(mergeRequests: trace.mergeRequests(fanout: mergeFanout)))
    }

    /// The token a newly registered writer has: never equal to a real one.
    static let noToken = IdempotencyToken(bytes: [UInt8](repeating: 0, count: 16)) ?? IdempotencyToken.random()

    /// Applies a compaction result iff its exact inputs are still in the trace.
    mutating func applyMergeResult(inputs: [HollowBatch], output: HollowBatch) -> Work<Bool> {
        trace.applyMerge(inputs: inputs, output: output) ? .commit(true) : .noOp(false)
    }

    mutating func expireWriter(_ id: WriterID) -> Work<Bool> {
        writers.removeValue(forKey: id) == nil ? .noOp(false) : .commit(true)
    }

    // MARK: Leased readers

    /// Registers a leased reader holding the shard's since (or, with
    /// `useCriticalSince`, the meet of the critical readers' sinces when there are any)
    /// and the seqno of this transition.
    mutating func registerLeasedReader(
        _ id: LeasedReaderID, nowMs: UInt64, leaseMs: UInt64, purpose: String, useCriticalSince: Bool
    ) -> Work<LeasedReaderState> {
        var since = trace.since
        if useCriticalSince, !criticalReaders.isEmpty {
            since = criticalReaders.values.reduce(Antichain.empty) { $0.meet($1.since) }.join(trace.since)
        }
        let state = LeasedReaderState(seqno: seqno, since: since, lastHeartbeatMs: nowMs, leaseDurationMs: leaseMs, purpose: purpose)
        leasedReaders[id] = state
        return .commit(state)
    }

    /// Extends the reader's lease. Commits even when the reader is gone, so that the
    /// answer ("expired") is linearized with everything else.
    mutating func heartbeatLeasedReader(_ id: LeasedReaderID, nowMs: UInt64) -> Work<Bool> {
        guard var r = leasedReaders[id] else { return .commit(false) }
        r.lastHeartbeatMs = max(r.lastHeartbeatMs, nowMs)
        leasedReaders[id] = r
        return .commit(true)
    }

    /// Moves the reader's since forward (never back) and its seqno hold to
    /// `outstandingSeqno` (never back), and recomputes the shard since. Returns the
    /// reader's since, or nil if the reader has expired.
    mutating func downgradeSince(
        _ id: LeasedReaderID, to newSince: Antichain, outstandingSeqno: SeqNo, nowMs: UInt64
    ) -> Work<Antichain?> {
        guard var r = leasedReaders[id] else { return .commit(nil) }
        r.seqno = max(r.seqno, min(outstandingSeqno, seqno))
        r.lastHeartbeatMs = max(r.lastHeartbeatMs, nowMs)
        if !newSince.lessEqual(r.since) { r.since = newSince }
        leasedReaders[id] = r
        recomputeSince()
        return .commit(r.since)
    }

    mutating func expireLeasedReader(_ id: LeasedReaderID) -> Work<Bool> {
        leasedReaders.removeValue(forKey: id) == nil ? .noOp(false) : .commit(true)
    }

    // MARK: Critical readers

    /// Registers (or re-attaches to) a critical reader. A new one starts at the shard's
    /// since with `initialOpaque`; an existing one keeps its since and token.
    mutating func registerCriticalReader(_ id: CriticalReaderID, initialOpaque: UInt64, opaqueCodec: String, purpose: String)
        -> Work<CriticalReaderState>
    {
        if var existing = criticalReaders[id] {
            if existing.purpose == purpose { return .noOp(existing) }
            existing.purpose = purpose
            criticalReaders[id] = existing
            return .commit(existing)
        }
        let state = CriticalReaderState(since: trace.since, opaque: initialOpaque, opaqueCodec: opaqueCodec, purpose: purpose)
        criticalReaders[id] = state
        return .commit(state)
    }

    /// Fenced since downgrade: applies only if the stored token is `expected`. Commits
    /// either way, so that a mismatch answer is linearized too.
    mutating func compareAndDowngradeSince(
        _ id: CriticalReaderID, expected: UInt64, newOpaque: UInt64, newSince: Antichain
    ) -> Work<SinceDowngradeResult?> {
        guard var r = criticalReaders[id] else { return .noOp(nil) }
        guard r.opaque == expected else { return .commit(.opaqueMismatch(actual: r.opaque, since: r.since)) }
        r.opaque = newOpaque
        if r.since.lessEqual(newSince) { r.since = newSince }
        criticalReaders[id] = r
        recomputeSince()
        return .commit(.downgraded(since: r.since))
    }

    mutating func expireCriticalReader(_ id: CriticalReaderID) -> Work<Bool> {
        criticalReaders.removeValue(forKey: id) == nil ? .noOp(false) : .commit(true)
    }

    /// The shard since is the meet of every reader's since; with no readers it stays.
    /// It never goes back.
    mutating func recomputeSince() {
        var meet = Antichain.empty
        var any = false
        for r in leasedReaders.values {
            meet = meet.meet(r.since)
            any = true
        }
        for r in criticalReaders.values {
            meet = meet.meet(r.since)
            any = true
        }
        if any { trace.since = trace.since.join(meet) }
    }

    // MARK: Rollups and GC

    /// Records a rollup of the state at `seqno`. Returns whether this rollup is the one
    /// recorded (false: another one is, and the caller should delete its blob).
    /// A rollup older than the latest one is of no use and is refused too.
    mutating func addRollup(at seqno: SeqNo, _ rollup: HollowRollup) -> Work<Bool> {
        if let existing = rollups[seqno] { return .noOp(existing == rollup) }
        if let latest = latestRollup?.seqno, seqno < latest { return .noOp(false) }
        rollups[seqno] = rollup
        return .commit(true)
    }

    /// Forgets rollups that GC has deleted or is about to. The latest rollup stays.
    mutating func removeRollups(_ remove: [(SeqNo, HollowRollup)]) -> Work<Int> {
        let latest = latestRollup?.seqno
        var removed = 0
        for (s, r) in remove where s != latest && rollups[s] == r {
            rollups[s] = nil
            removed += 1
        }
        return removed == 0 ? .noOp(0) : .commit(removed)
    }

    /// Drops leased readers and writers whose lease ran out before `nowMs`.
    mutating func expire(nowMs: UInt64) {
        leasedReaders = leasedReaders.filter { Self.leaseEnd($0.value.lastHeartbeatMs, $0.value.leaseDurationMs) >= nowMs }
        writers = writers.filter { Self.leaseEnd($0.value.lastHeartbeatMs, $0.value.leaseDurationMs) >= nowMs }
    }

    /// When a lease runs out; a lease too long to add up never does.
    static func leaseEnd(_ heartbeat: UInt64, _ lease: UInt64) -> UInt64 {
        let (end, overflow) = heartbeat.addingReportingOverflow(lease)
        return overflow ? .max : end
    }

    /// The most seqnos one garbage collection is asked to cover.
    static let maxGCStep: UInt64 = 128_000

    /// Assigns garbage collection to this transition when enough seqnos have passed since
    /// the last one (a threshold that grows slowly with the seqno). Prefers writers, so
    /// readers are not slowed down, unless there are no writers.
    mutating func maybeAssignGC(isWrite: Bool) -> GCRequest? {
        let since = seqnoSince
        guard since > lastGCReq else { return nil }
        // log2 of the seqno rounded up to a power of two: grows slowly as the shard ages.
        let s = seqno.rawValue
        let threshold = s <= 1 ? 1 : max(1, UInt64.bitWidth - (s - 1).leadingZeroBitCount)
        guard since.rawValue - lastGCReq.rawValue >= UInt64(threshold) else { return nil }
        guard isWrite || writers.isEmpty else { return nil }
        // Bounded steps, so one GC never has an unbounded amount of history to walk.
        let capped = min(since, SeqNo(lastGCReq.rawValue &+ Self.maxGCStep) ?? since)
        lastGCReq = capped
        return GCRequest(newSeqnoSince: capped)
    }

    /// The seqno of this state if a rollup of it is due: `threshold` or more seqnos since
    /// the latest one. (Each process writes one rollup of a shard at a time, so a due
    /// rollup handed out while another is being written is simply skipped.)
    func rollupDue(threshold: UInt64) -> SeqNo? {
        let latest = latestRollup?.seqno.rawValue ?? 0
        let behind = seqno.rawValue - min(latest, seqno.rawValue)
        guard threshold > 0, behind >= threshold else { return nil }
        return seqno
    }
}
