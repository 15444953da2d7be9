import Logging
import Metrics
import PersistClient
import PersistCodec
import PersistCore
import Synchronization
import TxnWAL

/// What the coordinator's callers and its worker share: the job queue, the name table,
/// the readers used to serve reads, and the open subscriptions. Every piece of mutable
/// state sits behind its own lock, held only for a state change, never across I/O.
final class CoordinatorCore: Sendable {
    let client: PersistClient
    let txnsID: ShardID
    let configuration: TxnCoordinator.Configuration
    let clock: any PersistClock
    let logger: Logger
    let metricsFactory: any MetricsFactory
    let metrics: CoordinatorMetrics
    let hooks: CoordinatorHooks
    let names: ShardNameStore
    private let queue: Mutex<JobQueue<CoordinatorJob, WorkerWaiter>>
    private let readers = Mutex<[ShardID: ReadHandles]>([:])
    private let subscriptions = Mutex<(next: UInt64, open: [UInt64: CoordinatorSubscription])>((0, [:]))

    init(
        client: PersistClient, names: ShardNameStore, configuration: TxnCoordinator.Configuration, clock: any PersistClock,
        logger: Logger, metricsFactory: any MetricsFactory, hooks: CoordinatorHooks
    ) {
        self.client = client
        self.txnsID = configuration.txnsShard
        self.configuration = configuration
        self.clock = clock
        self.logger = logger
        self.metricsFactory = metricsFactory
        self.metrics = CoordinatorMetrics(factory: metricsFactory)
        self.hooks = hooks
        self.names = names
        self.queue = Mutex(
            JobQueue(
                groupCommit: configuration.groupCommit, maxGroupRows: configuration.maxRowsPerCommit,
                maxGroupBytes: configuration.maxBytesPerCommit))
    }

    // MARK: Queue

    /// Throws `shuttingDown` once shutdown has begun.
    func checkOpen() throws(CoordinatorError) {
        if queue.withLock({ $0.phase }) != .open { throw CoordinatorError.shuttingDownError }
    }

    /// Jobs waiting for the worker.
    var queueDepth: Int { queue.withLock { $0.depth } }

    /// Queues the job `make` builds around its reply and waits for the answer.
    func submit<T: Sendable>(_ make: (Reply<T>) -> CoordinatorJob) async throws(CoordinatorError) -> T {
        let result: Result<T, CoordinatorError> = await withCheckedContinuation { reply in
            let job = make(reply)
            let (action, depth) = queue.withLock { q in (q.enqueue(job.queueItem), q.depth) }
            switch action {
            case .queued: break
            case .wake(let worker, let step): worker.resume(returning: step)
            case .rejected(let job): job.fail(CoordinatorError.shuttingDownError)
            }
            metrics.queueDepth(depth)
        }
        return try result.get()
    }

    /// The worker's next step; nil when the coordinator is shutting down and nothing is
    /// left to do.
    func nextStep() async -> JobStep<CoordinatorJob>? {
        await withCheckedContinuation { (worker: WorkerWaiter) in
            switch queue.withLock({ $0.next(parking: worker) }) {
            case .run(let step): worker.resume(returning: step)
            case .finished: worker.resume(returning: nil)
            case .parked: break
            }
        }
    }

    /// Stops taking jobs; the worker finishes the queued ones and then stops.
    func close() {
        if let worker = queue.withLock({ $0.close() }) { worker.resume(returning: nil) }
    }

    // MARK: Reads

    /// The handles kept per data shard to serve reads: a reader, and a writer that makes
    /// the shard readable at a time (an empty append, never data).
    struct ReadHandles: Sendable {
        var reader: ReadHandle
        var unblocker: WriteHandle
    }

    /// Reads a prepared plan's shard at its time. Everything up to that time is applied,
    /// so this waits on no one. `forwardTimes` false keeps each update's own time.
    func fetch(_ prep: ReadPreparation, forwardTimes: Bool = true) async throws(CoordinatorError) -> [Update] {
        let shard = prep.plan.dataID
        var attempt = 0
        while true {
            attempt += 1
            do {
                let handles = try await readHandles(for: shard)
                do {
                    _ = try await handles.unblocker.fetchRecentUpper()
                    try await DataSnapshot(prep.plan).unblockRead(handles.unblocker)
                    return try await handles.reader.snapshotAndFetch(asOf: prep.asOf, forwardTimes: forwardTimes)
                } catch ReadError.leaseExpired where attempt == 1 {
                    // The kept reader lapsed (or was released by a shutdown): one retry.
                    readers.withLock { r in if r[shard]?.reader === handles.reader { r[shard] = nil } }
                }
            } catch {
                try checkOpen()
                throw CoordinatorError.from(error, during: "reading \(shard) as of \(prep.asOf)")
            }
        }
    }

    private func readHandles(for shard: ShardID) async throws -> ReadHandles {
        if let h = readers.withLock({ $0[shard] }) { return h }
        let fresh = ReadHandles(
            reader: try await client.openLeasedReader(shard: shard, purpose: "txn-coordinator read"),
            unblocker: try await client.openWriter(shard: shard, purpose: "txn-coordinator unblock read"))
        let kept = readers.withLock { r in
            if let raced = r[shard] { return raced }
            r[shard] = fresh
            return fresh
        }
        if kept.reader !== fresh.reader {
            try? await fresh.reader.expire()
            try? await fresh.unblocker.expire()
        }
        return kept
    }

    /// Releases every kept read handle.
    func expireReaders() async {
        let all = readers.withLock { r in
            defer { r.removeAll() }
            return Array(r.values)
        }
        for h in all {
            try? await h.reader.expire()
            try? await h.unblocker.expire()
        }
    }

    // MARK: Subscriptions

    /// Remembers an open subscription so shutdown can end it.
    func track(_ sub: CoordinatorSubscription) {
        let id = subscriptions.withLock { s in
            defer { s.next += 1 }
            s.open[s.next] = sub
            return s.next
        }
        sub.setOnCancel { [weak self] in self?.subscriptions.withLock { _ = $0.open.removeValue(forKey: id) } }
    }

    /// Cancels every open subscription.
    func cancelSubscriptions() async {
        let all = subscriptions.withLock { Array($0.open.values) }
        for s in all { await s.cancel() }
    }
}
