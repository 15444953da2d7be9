import Logging
import PersistClient
import PersistCodec
import PersistCore
import TxnWAL

/// The single task that owns the coordinator's `TxnsHandle` (which is not thread-safe)
/// and runs the queued jobs one step at a time: commit groups, registrations, read
/// preparation, compaction and status.
///
/// After a commit is durable it answers the callers, then applies the commit, and keeps
/// the returned tidy to write along with the next txns write.
final class CoordinatorWorker {
    let core: CoordinatorCore
    let txns: TxnsHandle
    /// Registration times, fed from the txns cache: complete below its progress once
    /// `syncRegistrations` has run.
    private var registrations = RegistrationHistory()
    /// Retractions of applied batches, written with the next commit.
    private var pendingTidy = Tidy()
    /// Everything committed at or before this time has been applied by this worker.
    private var appliedThrough: Timestamp?
    /// The largest since this coordinator has compacted the txns shard to.
    private var compactedTo: Timestamp = 0

    private init(core: CoordinatorCore, txns: TxnsHandle) {
        self.core = core
        self.txns = txns
    }

    /// Opens the txns shard (creating it if needed) and recovers: applies every write
    /// committed before the txns shard's current upper.
    static func open(core: CoordinatorCore) async throws -> CoordinatorWorker {
        let txns = try await TxnsHandle.open(
            client: core.client, txnsID: core.txnsID, initTs: 0, logger: core.logger,
            metrics: TxnsMetrics(factory: core.metricsFactory), keepRegistrationUpdates: true)
        let worker = CoordinatorWorker(core: core, txns: txns)
        worker.syncRegistrations()
        let (upper, _) = try await worker.frontiers()
        try await txns.readCache.updateGe(upper)
        try await worker.apply(through: upper - 1)
        core.logger.info("txn coordinator recovered", metadata: ["txns_upper": "\(upper)"])
        return worker
    }

    /// Runs jobs until the coordinator shuts down, then releases the handles.
    func run() async {
        while let step = await core.nextStep() {
            core.metrics.queueDepth(core.queueDepth)
            switch step {
            case .single(.commit(let job)):
                await commit([job])
            case .single(let job):
                await run(job)
            case .group(let jobs):
                var commits: [CommitJob] = []
                for job in jobs {
                    if case .commit(let c) = job { commits.append(c) } else { await run(job) }
                }
                await commit(commits)
            }
        }
        await release()
    }

    private func run(_ job: CoordinatorJob) async {
        switch job {
        case .commit(let c):
            await commit([c])
        case .register(let ids, let at, let reply):
            reply.resume(returning: await attempt("registering shards") { try await self.register(ids, at: at) })
        case .forget(let ids, let at, let reply):
            reply.resume(returning: await attempt("forgetting shards") { try await self.forget(ids, at: at) })
        case .prepareRead(let id, let asOf, let reply):
            reply.resume(returning: await attempt("preparing a read of \(id)") { try await self.prepareRead(id, asOf: asOf) })
        case .compact(let since, let reply):
            reply.resume(returning: await attempt("compacting") { try await self.compact(since: since) })
        case .view(let reply):
            reply.resume(returning: await attempt("reading the coordinator's status") { try await self.view() })
        }
    }

    private func attempt<T>(_ operation: String, _ body: () async throws -> T) async -> Result<T, CoordinatorError> {
        do {
            return .success(try await body())
        } catch {
            let e = CoordinatorError.from(error, during: operation)
            if e.code == .storage { core.logger.warning("\(operation) failed", metadata: ["error": "\(e)"]) }
            return .failure(e)
        }
    }

    // MARK: Time

    /// The txns shard's upper and since, read from consensus now.
    private func frontiers() async throws -> (upper: Timestamp, since: Timestamp) {
        guard let f = try await core.client.frontiers(of: core.txnsID), let upper = f.upper.element else {
            throw CoordinatorError(.storage, "the txns shard \(core.txnsID) is closed or not open")
        }
        return (upper, f.since.element ?? upper)
    }

    private func pickTimestamp(after closed: Timestamp? = nil) -> Timestamp {
        CoordinatorRules.pick(
            nowMilliseconds: core.clock.nowMilliseconds(), txnsUpper: max(closed ?? 0, txns.readCache.progress))
    }

    private func closedError(_ at: Timestamp, _ closed: TimestampClosed) -> CoordinatorError {
        CoordinatorError(.timestampClosed, "timestamp \(at) is already closed", nextUsable: closed.nextUsable)
    }

    // MARK: Apply

    /// Applies everything committed at or before `t` (which must be below the txns upper)
    /// unless that is done already, keeping the tidy for the next commit.
    private func apply(through t: Timestamp) async throws {
        if let done = appliedThrough, done >= t { return }
        let start = ContinuousClock.now
        do {
            pendingTidy.merge(try await txns.applyLE(t))
            appliedThrough = t
            core.metrics.applied(ok: true, since: start)
        } catch {
            core.metrics.applied(ok: false, since: start)
            throw error
        }
    }

    /// After an operation at `ts` that applied everything up to it.
    private func noteApplied(through ts: Timestamp, tidy: Tidy) {
        pendingTidy.merge(tidy)
        appliedThrough = max(appliedThrough ?? ts, ts)
    }

    // MARK: Commit

    /// Commits `jobs` as one transaction at one timestamp. With a single job that names
    /// its timestamp, only that timestamp is tried.
    private func commit(_ jobs: [CommitJob]) async {
        guard !jobs.isEmpty else { return }
        if let hook = core.hooks.beforeCommitGroup { await hook(jobs.count) }
        core.metrics.commitGroup(size: jobs.count)
        let explicit = jobs.count == 1 ? jobs[0].at : nil
        var live: [CommitJob]
        do {
            live = try await admitRegistered(jobs)
        } catch {
            Self.answer(jobs, .failure(CoordinatorError.from(error, during: "checking registrations")))
            return
        }
        guard !live.isEmpty else { return }
        var ts = explicit ?? pickTimestamp()
        var txn = makeTxn(live)
        while true {
            do {
                switch try await txn.commitAt(txns, ts) {
                case .success:
                    pendingTidy = Tidy()
                    await Failpoints.hitAsync(.coordinatorBeforeReply)
                    Self.answer(live, .success(ts))
                    if let hook = core.hooks.afterCommitBeforeApply { await hook(ts) }
                    await Failpoints.hitAsync(.coordinatorBeforeApply)
                    await applyCommitted(ts)
                    return
                case .failure(let closed):
                    if let explicit {
                        Self.answer(live, .failure(closedError(explicit, closed)))
                        return
                    }
                    core.metrics.timestampRetried()
                    ts = pickTimestamp(after: closed.nextUsable)
                }
            } catch TxnsUsageError.notRegistered(let shard, let at) {
                // Another coordinator forgot a shard after the check above.
                let error = Self.notRegistered(shard, at: at)
                Self.answer(live.filter { $0.shards.contains(shard) }, .failure(error))
                live.removeAll { $0.shards.contains(shard) }
                guard !live.isEmpty else { return }
                txn = makeTxn(live)
            } catch {
                Self.answer(live, .failure(CoordinatorError.from(error, during: "committing at \(ts)")))
                return
            }
        }
    }

    private func applyCommitted(_ ts: Timestamp) async {
        do {
            try await apply(through: ts)
        } catch {
            // Committed and answered: a later read, registration or restart applies it.
            core.logger.warning("applying a commit failed", metadata: ["ts": "\(ts)", "error": "\(error)"])
        }
        // Keeps the cache's list of registration updates short (it only holds new ones).
        syncRegistrations()
    }

    /// Moves the registration updates the txns cache has read into `registrations`; after
    /// this the history is complete below the cache's progress.
    private func syncRegistrations() {
        registrations.record(txns.readCache.takeRegistrationUpdates())
    }

    /// The jobs whose shards are all registered; the others are answered `notRegistered`.
    /// A miss is checked again against the txns shard's latest state, as the cache may
    /// not yet know a registration made by another coordinator.
    private func admitRegistered(_ jobs: [CommitJob]) async throws -> [CommitJob] {
        var split = partition(jobs)
        if !split.rejected.isEmpty {
            let (upper, _) = try await frontiers()
            try await txns.readCache.updateGe(upper)
            split = partition(jobs)
        }
        let progress = txns.readCache.progress
        for (job, shard) in split.rejected {
            job.reply.resume(returning: .failure(Self.notRegistered(shard, at: progress)))
        }
        return split.ok
    }

    private func partition(_ jobs: [CommitJob]) -> (ok: [CommitJob], rejected: [(CommitJob, ShardID)]) {
        let state = txns.readCache.state
        let progress = txns.readCache.progress
        return CoordinatorRules.partitionByRegistration(jobs, shards: \.shards) { state.registeredAtProgress($0, progress) }
    }

    private func makeTxn(_ jobs: [CommitJob]) -> Txn {
        var txn = txns.begin()
        for job in jobs {
            for w in Self.writesToCommit(job) {
                for row in w.rows { txn.write(w.shard, key: row.key, value: row.value, diff: row.diff) }
            }
        }
        txn.tidy(pendingTidy)
        return txn
    }

    /// A job's writes. With the deliberate bug `commit-first-shard-only` switched on
    /// (`TestBugs`, servers only), just those to the job's first shard: the others are
    /// silently dropped and the commit is still answered as a success.
    private static func writesToCommit(_ job: CommitJob) -> [ResolvedWrites] {
        guard TestBugs.isEnabled(.commitFirstShardOnly), let first = job.writes.first?.shard else { return job.writes }
        return job.writes.filter { $0.shard == first }
    }

    private static func answer(_ jobs: [CommitJob], _ result: Result<Timestamp, CoordinatorError>) {
        for job in jobs { job.reply.resume(returning: result) }
    }

    static func notRegistered(_ shard: ShardID, at t: Timestamp) -> CoordinatorError {
        CoordinatorError(.notRegistered, "shard \(shard) is not registered (txns shard at \(t))")
    }

    /// Writes the pending tidy alone at `ts`, or (to close `ts` for a read) an empty
    /// commit. False if `ts` was already closed.
    private func commitTidy(at ts: Timestamp) async throws -> Result<Void, TimestampClosed> {
        var txn = txns.begin()
        txn.tidy(pendingTidy)
        switch try await txn.commitAt(txns, ts) {
        case .success:
            pendingTidy = Tidy()
            return .success(())
        case .failure(let closed):
            return .failure(closed)
        }
    }

    // MARK: Registration

    private func register(_ ids: [ShardID], at: Timestamp?) async throws -> Timestamp {
        var writers: [WriteHandle] = []
        for id in ids { writers.append(try await core.client.openWriter(shard: id, purpose: "txn-coordinator")) }
        var ts = at ?? pickTimestamp()
        while true {
            switch try await txns.register(at: ts, writers) {
            case .success(let tidy):
                noteApplied(through: ts, tidy: tidy)
                return ts
            case .failure(let closed):
                if let at { throw closedError(at, closed) }
                core.metrics.timestampRetried()
                ts = pickTimestamp(after: closed.nextUsable)
            }
        }
    }

    private func forget(_ ids: [ShardID], at: Timestamp?) async throws -> Timestamp {
        var ts = at ?? pickTimestamp()
        while true {
            switch try await txns.forget(at: ts, ids) {
            case .success(let tidy):
                noteApplied(through: ts, tidy: tidy)
                return ts
            case .failure(let closed):
                if let at { throw closedError(at, closed) }
                core.metrics.timestampRetried()
                ts = pickTimestamp(after: closed.nextUsable)
            }
        }
    }

    // MARK: Reads

    /// Resolves the read time, checks it, and applies everything up to it, so the
    /// returned plan can be read without waiting on anyone.
    private func prepareRead(_ id: ShardID, asOf: Timestamp?) async throws -> ReadPreparation {
        let (upper, since) = try await frontiers()
        let t: Timestamp
        switch CoordinatorRules.resolveRead(
            asOf: asOf, upper: upper, since: max(since, compactedTo), nowMilliseconds: core.clock.nowMilliseconds())
        {
        case .failure(let error):
            throw error
        case .success(.read(let time)):
            t = time
        case .success(.seal(let time)):
            // Close `time` so that nothing can commit at or before it after this read.
            // Losing the race means someone else closed it: just as good.
            _ = try await commitTidy(at: time)
            t = time
        }
        try await txns.readCache.updateGt(t)
        syncRegistrations()
        guard registrations.isRegistered(id, at: t) else {
            throw CoordinatorError(.notRegistered, "shard \(id) is not registered at \(t)")
        }
        try await apply(through: t)
        return ReadPreparation(asOf: t, plan: txns.readCache.state.dataSnapshot(id, asOf: t))
    }

    // MARK: Maintenance

    /// Applies and tidies everything outstanding, then lets the txns shard compact up to
    /// `since` (never past the latest committed time or outstanding work). Returns the
    /// since reads are now held to.
    private func compact(since: Timestamp) async throws -> Timestamp {
        let (upper, _) = try await frontiers()
        try await txns.readCache.updateGe(upper)
        try await apply(through: upper - 1)
        if !pendingTidy.isEmpty {
            var ts = pickTimestamp()
            while case .failure(let closed) = try await commitTidy(at: ts) {
                core.metrics.timestampRetried()
                ts = pickTimestamp(after: closed.nextUsable)
            }
            // The cache must see the retractions before it can let the since pass them.
            try await txns.readCache.updateGt(ts)
        }
        let target = min(since, txns.readCache.progress - 1)
        try await txns.compactTo(target)
        compactedTo = max(compactedTo, min(target, txns.readCache.state.minUnappliedTs()))
        return compactedTo
    }

    private func view() async throws -> WorkerView {
        let (upper, since) = try await frontiers()
        try await txns.readCache.updateGe(upper)
        let state = txns.readCache.state
        let progress = txns.readCache.progress
        return WorkerView(
            upper: max(upper, progress), since: max(since, compactedTo),
            registered: Set(state.allRegisteredAtProgress(progress)),
            unapplied: CoordinatorRules.unappliedCount(times: state.unapplied().map(\.ts), appliedThrough: appliedThrough))
    }

    /// Applies anything still outstanding (an earlier apply may have failed) and
    /// releases the readers this worker holds.
    private func release() async {
        let progress = txns.readCache.progress
        if progress > 0 {
            do {
                try await apply(through: progress - 1)
            } catch {
                core.logger.warning("applying at shutdown failed", metadata: ["error": "\(error)"])
            }
        }
        try? await txns.readCache.expire()
    }
}
