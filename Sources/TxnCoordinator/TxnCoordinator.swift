import Logging
import Metrics
import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import TxnWAL

/// The transaction coordinator: named data shards whose writes commit atomically
/// through one txns shard (DESIGN.md §6), for any number of concurrent callers.
///
/// - Timestamps: an operation without one gets `max(wall clock ms, txns upper)`, so
///   times only grow, also across restarts. A coordinator-chosen time that turns out to
///   be taken is retried later; a client-chosen one is answered `timestampClosed` with
///   the earliest time that may still work.
/// - Group commit: commits without a timestamp that wait together are written as one
///   transaction at one timestamp, which every one of them is answered with.
/// - A commit is answered once it is durable; it is applied right after, and reads at a
///   time see everything committed at or before it.
/// - Several coordinators may share a txns shard (and its shard names); compare-and-set
///   keeps them correct.
///
/// Every failure is a `CoordinatorError`; nothing below traps on bad input or storage
/// failures. After `shutdown()` begins, calls answer `shuttingDown`.
public final class TxnCoordinator: Sendable {
    /// How a coordinator runs.
    public struct Configuration: Sendable {
        /// The txns shard (created on first open).
        public var txnsShard: ShardID
        /// Whether commits without a timestamp that arrive together share one txns write.
        public var groupCommit: Bool
        /// A commit with more rows is refused (`badRequest`); also caps a group.
        public var maxRowsPerCommit: Int
        /// A commit with more key and value bytes is refused (`badRequest`); also caps a group.
        public var maxBytesPerCommit: Int
        /// How many subscription events may wait unread before the subscription pauses.
        public var subscriptionBuffer: Int = 256

        public init(txnsShard: ShardID, groupCommit: Bool = true, maxRowsPerCommit: Int = 1_000_000, maxBytesPerCommit: Int = 64 << 20) {
            self.txnsShard = txnsShard
            self.groupCommit = groupCommit
            self.maxRowsPerCommit = maxRowsPerCommit
            self.maxBytesPerCommit = maxBytesPerCommit
        }
    }

    let core: CoordinatorCore
    private let worker: Task<Void, Never>

    /// The txns shard this coordinator commits through.
    public var txnsShard: ShardID { core.txnsID }

    private init(core: CoordinatorCore, worker: Task<Void, Never>) {
        self.core = core
        self.worker = worker
    }

    /// Opens (creating the txns shard if needed) and recovers: applies every
    /// committed-but-unapplied write. `consensus` holds the shard-name table (normally
    /// the client's own consensus). Metrics go to `metricsFactory`.
    public static func open(
        client: PersistClient, consensus: any Consensus, configuration: Configuration,
        clock: any PersistClock = SystemPersistClock(), logger: Logger = Logger(label: "swift-txn-wal.coordinator"),
        metricsFactory: any MetricsFactory = MetricsSystem.factory
    ) async throws -> TxnCoordinator {
        try await open(
            client: client, consensus: consensus, configuration: configuration, clock: clock, logger: logger,
            metricsFactory: metricsFactory, hooks: CoordinatorHooks())
    }

    /// `open` with test interception points.
    static func open(
        client: PersistClient, consensus: any Consensus, configuration: Configuration, clock: any PersistClock,
        logger: Logger, metricsFactory: any MetricsFactory = MetricsSystem.factory, hooks: CoordinatorHooks
    ) async throws(CoordinatorError) -> TxnCoordinator {
        guard configuration.maxRowsPerCommit > 0, configuration.maxBytesPerCommit > 0, configuration.subscriptionBuffer > 0
        else {
            throw CoordinatorError(.badRequest, "the commit limits and the subscription buffer must be positive")
        }
        var log = logger
        log[metadataKey: "txns_shard"] = "\(configuration.txnsShard)"
        let names = ShardNameStore(consensus: consensus, txnsShard: configuration.txnsShard)
        try await names.refresh()
        let core = CoordinatorCore(
            client: client, names: names, configuration: configuration, clock: clock, logger: log,
            metricsFactory: metricsFactory, hooks: hooks)
        let worker: CoordinatorWorker
        do {
            worker = try await CoordinatorWorker.open(core: core)
        } catch {
            throw CoordinatorError.from(error, during: "opening the txns shard")
        }
        let task = Task { await worker.run() }
        return TxnCoordinator(core: core, worker: task)
    }

    deinit {
        // Dropped without shutdown: let the worker finish and release what it holds.
        core.close()
    }

    // MARK: Shards

    /// Creates the data shard `name`, or returns the existing one of that name.
    /// `badRequest` if the name breaks `CoordinatorRPC.isValidShardName`.
    public func createShard(name: String) async throws(CoordinatorError) -> ShardInfo {
        try await measured(.createShard) { () async throws(CoordinatorError) in
            try core.checkOpen()
            let (id, created) = try await core.names.create(name: name)
            if created { return ShardInfo(name: name, id: id, registered: false) }
            let view: WorkerView = try await core.submit { .view($0) }
            return ShardInfo(name: name, id: id, registered: view.registered.contains(id))
        }
    }

    /// Every named shard, ascending by name, with whether it is registered now.
    public func listShards() async throws(CoordinatorError) -> [ShardInfo] {
        try await measured(.listShards) { () async throws(CoordinatorError) in
            try core.checkOpen()
            let table = try await core.names.refresh()
            let view: WorkerView = try await core.submit { .view($0) }
            return table.entries.map { ShardInfo(name: $0.name, id: $0.id, registered: view.registered.contains($0.id)) }
        }
    }

    /// Registers shards with the txns shard at `at` (nil: the coordinator picks), after
    /// which they take commits. Shards already registered stay so. Returns the time used.
    public func register(_ shards: [ShardRef], at: Timestamp?) async throws(CoordinatorError) -> Timestamp {
        try await measured(.register) { () async throws(CoordinatorError) in
            let ids = try await resolveForRegistration(shards, at: at)
            return try await core.submit { .register(ids, at: at, $0) }
        }
    }

    /// Forgets shards at `at` (nil: the coordinator picks): every outstanding write is
    /// applied first, and later commits to them answer `notRegistered`. Shards not
    /// registered are skipped. Returns the time used.
    public func forget(_ shards: [ShardRef], at: Timestamp?) async throws(CoordinatorError) -> Timestamp {
        try await measured(.forget) { () async throws(CoordinatorError) in
            let ids = try await resolveForRegistration(shards, at: at)
            return try await core.submit { .forget(ids, at: at, $0) }
        }
    }

    private func resolveForRegistration(_ shards: [ShardRef], at: Timestamp?) async throws(CoordinatorError) -> [ShardID] {
        try core.checkOpen()
        if let e = CoordinatorRules.validateExplicit(at) { throw e }
        guard !shards.isEmpty else { throw CoordinatorError(.badRequest, "no shards given") }
        var ids: [ShardID] = []
        for ref in shards {
            let id = try await core.names.resolve(ref).id
            if !ids.contains(id) { ids.append(id) }
        }
        return ids
    }

    // MARK: Commits

    /// Commits the writes atomically at `at` (nil: the coordinator picks, and may share
    /// the time with other commits). Returns the commit time once the commit is durable.
    ///
    /// Errors: `badRequest` for a commit with no rows or over the configured limits,
    /// `unknownShard`, `notRegistered` (a shard not registered at the commit time),
    /// `timestampClosed` (only for a client-chosen `at`), `storage`, `shuttingDown`.
    public func commit(_ writes: [ShardWrites], at: Timestamp?) async throws(CoordinatorError) -> Timestamp {
        try await measured(.commit) { () async throws(CoordinatorError) in
            try core.checkOpen()
            if let e = CoordinatorRules.validateExplicit(at) { throw e }
            let config = core.configuration
            let size = try CoordinatorRules.validateCommit(
                writes, maxRows: config.maxRowsPerCommit, maxBytes: config.maxBytesPerCommit
            ).get()
            var resolved: [ResolvedWrites] = []
            var index: [ShardID: Int] = [:]
            for w in writes where !w.rows.isEmpty {
                let id = try await core.names.resolve(w.shard).id
                if let i = index[id] {
                    resolved[i].rows += w.rows
                } else {
                    index[id] = resolved.count
                    resolved.append(ResolvedWrites(shard: id, rows: w.rows))
                }
            }
            return try await core.submit { .commit(CommitJob(writes: resolved, at: at, size: size, reply: $0)) }
        }
    }

    // MARK: Reads

    /// The shard's consolidated contents at `asOf` (nil: the latest committed time), and
    /// that time. Sees every commit answered before the call.
    ///
    /// Errors: `badRequest` for a time below the since or beyond both the latest commit
    /// and the clock (a time in between is closed for commits by the read),
    /// `unknownShard`, `notRegistered` (the shard was not registered at that time).
    public func read(_ shard: ShardRef, asOf: Timestamp?) async throws(CoordinatorError) -> (asOf: Timestamp, rows: [Update]) {
        try await measured(.read) { () async throws(CoordinatorError) in
            try core.checkOpen()
            let id = try await core.names.resolve(shard).id
            let prep: ReadPreparation = try await core.submit { .prepareRead(id, asOf: asOf, $0) }
            return (prep.asOf, try await core.fetch(prep))
        }
    }

    /// Like `read`, but each update keeps the time it was committed at instead of reading
    /// as `asOf` (a time below the shard's since reads as the since). This says in which
    /// order the rows arrived, which a history checker needs; rows committed together
    /// share a time. Same errors as `read`.
    public func readHistory(_ shard: ShardRef, asOf: Timestamp?) async throws(CoordinatorError) -> (
        asOf: Timestamp, rows: [Update]
    ) {
        try await measured(.read) { () async throws(CoordinatorError) in
            try core.checkOpen()
            let id = try await core.names.resolve(shard).id
            let prep: ReadPreparation = try await core.submit { .prepareRead(id, asOf: asOf, $0) }
            return (prep.asOf, try await core.fetch(prep, forwardTimes: false))
        }
    }

    /// Streams the shard's contents at `from` (nil: the latest committed time) and then
    /// every later change; see `CoordinatorSubscription`. Same errors as `read`.
    public func subscribe(_ shard: ShardRef, from: Timestamp?) async throws(CoordinatorError) -> CoordinatorSubscription {
        try await measured(.subscribe) { () async throws(CoordinatorError) in
            try core.checkOpen()
            let id = try await core.names.resolve(shard).id
            let prep: ReadPreparation = try await core.submit { .prepareRead(id, asOf: from, $0) }
            let sub = try await CoordinatorSubscription.start(
                client: core.client, txnsID: core.txnsID, shard: id, asOf: prep.asOf,
                capacity: core.configuration.subscriptionBuffer, logger: core.logger)
            core.track(sub)
            do throws(CoordinatorError) {
                try core.checkOpen()
            } catch {
                // Shutdown began while this was starting and may have missed it.
                await sub.cancel()
                throw error
            }
            return sub
        }
    }

    // MARK: Maintenance

    /// Applies and tidies outstanding work, then lets the txns shard forget history
    /// before `since` (clamped to the latest committed time and to outstanding work).
    /// Returns the since now in force: reads below it answer `badRequest`.
    public func compact(since: Timestamp) async throws(CoordinatorError) -> Timestamp {
        try await measured(.compact) { () async throws(CoordinatorError) in
            try core.checkOpen()
            return try await core.submit { .compact(since: since, $0) }
        }
    }

    /// The txns shard's frontiers, the number of named and registered shards, and how
    /// many commit times may still need applying.
    public func status() async throws(CoordinatorError) -> CoordinatorStatus {
        try await measured(.status) { () async throws(CoordinatorError) in
            try core.checkOpen()
            let table = try await core.names.refresh()
            let view: WorkerView = try await core.submit { .view($0) }
            return CoordinatorStatus(
                txnsShard: core.txnsID, upper: view.upper, since: view.since, shards: table.count,
                registered: view.registered.count, unapplied: view.unapplied)
        }
    }

    /// Stops taking new work (later calls answer `shuttingDown`), finishes and applies
    /// what is queued, ends every subscription and releases the handles. Idempotent.
    public func shutdown() async {
        core.close()
        await worker.value
        await core.cancelSubscriptions()
        await core.expireReaders()
    }

    private func measured<T>(_ op: CoordinatorMetrics.Operation, _ body: () async throws(CoordinatorError) -> T)
        async throws(CoordinatorError) -> T
    {
        let start = ContinuousClock.now
        do {
            let value = try await body()
            core.metrics.request(op, error: nil, since: start)
            return value
        } catch {
            core.metrics.request(op, error: error, since: start)
            throw error
        }
    }
}
