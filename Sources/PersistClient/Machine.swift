import Logging
import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// Background work a committed transition hands to whoever committed it.
struct RoutineMaintenance: Sendable {
    var gc: GCRequest?
    /// A rollup of this state is due.
    var rollupOf: ShardState?
}

/// The result of running a command through the CaS loop.
struct Applied<Result: Sendable>: Sendable {
    var result: Result
    /// The seqno of the state the result was computed against (committed or not).
    var seqno: SeqNo
    var committed: Bool
    var maintenance: RoutineMaintenance
}

/// A command's CaS could not be confirmed: it may or may not have committed.
struct IndeterminateCommit: Error {
    let underlying: StorageError
}

/// The CaS loop of one shard (spec/persist.md §3.4). Holds the process-wide cached state
/// of the shard, shared by all its handles; the lock guards only the synchronous
/// copy-and-install, never I/O. Every mutation is a pure command run against a copy of
/// the newest known state, then compare-and-set into consensus as a diff; on mismatch
/// the state is refreshed and the command re-run.
final class ShardMachine: Sendable {
    let versions: StateVersions
    let clock: any PersistClock
    let config: PersistConfig
    let hostname: String
    let logger: Logger
    private let state: Mutex<ShardState>

    init(versions: StateVersions, initial: ShardState, clock: any PersistClock, config: PersistConfig, hostname: String, logger: Logger) {
        self.versions = versions
        self.clock = clock
        self.config = config
        self.hostname = hostname
        self.logger = logger
        self.state = Mutex(initial)
    }

    var shard: ShardID { versions.shard }

    /// The newest state this process knows.
    var current: ShardState { state.withLock { $0 } }

    /// Installs `s` if it is newer than the cached state.
    func install(_ s: ShardState) {
        state.withLock { if s.seqno > $0.seqno { $0 = s } }
    }

    /// Refreshes the cached state from consensus, unless it already moved past `hint`.
    @discardableResult
    func refresh(ifNotNewerThan hint: SeqNo? = nil) async throws -> ShardState {
        let s = current
        if let hint, s.seqno > hint { return s }
        let fresh = try await versions.update(s)
        install(fresh)
        return current
    }

    /// Runs `command` until it commits or stops. A determinate CaS failure is retried; an
    /// indeterminate one is thrown as `IndeterminateCommit` for the caller to resolve.
    func apply<R: Sendable>(isWrite: Bool, _ command: (inout ShardState) -> Work<R>) async throws -> Applied<R> {
        while true {
            let s = current
            var next = s
            guard let nextSeqno = s.seqno.next else { throw ReadError.corrupt("shard \(shard) ran out of seqnos") }
            let now = clock.nowMilliseconds()
            next.seqno = nextSeqno
            next.walltimeMs = max(now, s.walltimeMs + 1)
            next.hostname = hostname
            next.applierVersion = config.applierVersion.description
            switch command(&next) {
            case .noOp(let r):
                return Applied(result: r, seqno: s.seqno, committed: false, maintenance: RoutineMaintenance())
            case .commit(let r):
                next.expire(nowMs: now)
                let gc = next.maybeAssignGC(isWrite: isWrite)
                let diff = StateDiff.between(s, next, applierVersion: config.applierVersion.description)
                let key = versions.consensusKey
                let consensus = versions.consensus
                let versioned = VersionedData(seqno: next.seqno, data: diff.encode())
                let outcome: CaSResult
                do {
                    outcome = try await Retry.determinate("consensus compare-and-set", config: config) { () async throws(StorageError) in
                        try await consensus.compareAndSet(key, expected: s.seqno, new: versioned)
                    }
                } catch .indeterminate(let e) {
                    throw IndeterminateCommit(underlying: e)
                } catch {
                    throw CancellationError()
                }
                switch outcome {
                case .committed:
                    install(next)
                    let rollup = next.rollupDue(threshold: config.rollupThreshold) != nil ? next : nil
                    return Applied(result: r, seqno: next.seqno, committed: true, maintenance: RoutineMaintenance(gc: gc, rollupOf: rollup))
                case .expectationMismatch:
                    try await refresh(ifNotNewerThan: s.seqno)
                }
            }
        }
    }

    /// `apply` for commands that are safe to re-run: an indeterminate failure is retried
    /// against refreshed state, with backoff.
    func applyIdempotent<R: Sendable>(isWrite: Bool = false, _ command: (inout ShardState) -> Work<R>) async throws -> Applied<R> {
        var backoff = Backoff(initial: config.initialBackoff, maximum: config.maxBackoff)
        var rng = SystemRandomNumberGenerator()
        while true {
            do {
                return try await apply(isWrite: isWrite, command)
            } catch let e as IndeterminateCommit {
                logger.debug("retrying an idempotent command after an indeterminate CaS", metadata: ["error": "\(e.underlying)"])
                try await Task.sleep(for: backoff.nextDelay(using: &rng))
                _ = try? await refresh()
            }
        }
    }

    /// Appends `batch` for `writer` (spec/persist.md §3.5): one idempotency token for the
    /// whole call, so that after an indeterminate CaS a retry recognises its own commit.
    func compareAndAppend(_ batch: HollowBatch, writer: WriterID, purpose: String) async throws -> (AppendOutcome, RoutineMaintenance) {
        let token = IdempotencyToken.random()
        var sawIndeterminate = false
        var backoff = Backoff(initial: config.initialBackoff, maximum: config.maxBackoff)
        var rng = SystemRandomNumberGenerator()
        let fanout = config.compactionMinInputs
        let lease = config.writerLeaseMilliseconds
        while true {
            let now = clock.nowMilliseconds()
            let applied: Applied<AppendOutcome>
            do {
                applied = try await apply(isWrite: true) { s in
                    s.compareAndAppend(batch, writer: writer, token: token, nowMs: now, leaseMs: lease, purpose: purpose, mergeFanout: fanout)
                }
            } catch let e as IndeterminateCommit {
                sawIndeterminate = true
                logger.debug("compare-and-append CaS was indeterminate; retrying with the same token", metadata: ["error": "\(e.underlying)"])
                try await Task.sleep(for: backoff.nextDelay(using: &rng))
                _ = try? await refresh()
                continue
            }
            if case .upperMismatch(_, let writerUpper) = applied.result, sawIndeterminate,
                batch.desc.upper.lessEqual(writerUpper)
            {
                // Our writer has since appended up to our upper but not with our token:
                // the earlier attempt's outcome cannot be told apart. Say so instead of
                // guessing.
                throw StorageError.indeterminate(
                    .failed, "compare-and-append on \(shard) may or may not have committed: the writer's token was replaced")
            }
            return (applied.result, applied.maintenance)
        }
    }
}
