import PersistCodec
import PersistCore
import TxnWAL

/// Where the worker sends one job's answer.
typealias Reply<T: Sendable> = CheckedContinuation<Result<T, CoordinatorError>, Never>

/// A commit's rows for one shard, with the shard already resolved to its id.
struct ResolvedWrites: Sendable {
    var shard: ShardID
    var rows: [RowWrite]
}

/// A queued commit.
struct CommitJob: Sendable {
    var writes: [ResolvedWrites]
    /// The client's timestamp; nil lets the coordinator choose (and group).
    var at: Timestamp?
    var size: CoordinatorRules.CommitSize
    var reply: Reply<Timestamp>

    var shards: [ShardID] { writes.map(\.shard) }
}

/// What a read (or a subscription) needs from the worker: the resolved time, and the
/// read plan whose every write at or before that time has been applied.
struct ReadPreparation: Sendable {
    var asOf: Timestamp
    var plan: DataSnapshotPlan
}

/// The worker's view of the txns shard, for status and shard listings.
struct WorkerView: Sendable {
    var upper: Timestamp
    var since: Timestamp
    var registered: Set<ShardID>
    var unapplied: Int
}

/// A unit of work for the coordinator's worker, the only user of the `TxnsHandle`.
enum CoordinatorJob: Sendable {
    case commit(CommitJob)
    case register([ShardID], at: Timestamp?, Reply<Timestamp>)
    case forget([ShardID], at: Timestamp?, Reply<Timestamp>)
    case prepareRead(ShardID, asOf: Timestamp?, Reply<ReadPreparation>)
    case compact(since: Timestamp, Reply<Timestamp>)
    case view(Reply<WorkerView>)

    /// Answers the job with `error` without running it.
    func fail(_ error: CoordinatorError) {
        switch self {
        case .commit(let job): job.reply.resume(returning: .failure(error))
        case .register(_, _, let reply), .forget(_, _, let reply), .compact(_, let reply): reply.resume(returning: .failure(error))
        case .prepareRead(_, _, let reply): reply.resume(returning: .failure(error))
        case .view(let reply): reply.resume(returning: .failure(error))
        }
    }

    /// The queue entry for this job.
    var queueItem: JobQueue<CoordinatorJob, WorkerWaiter>.Item {
        switch self {
        case .commit(let job):
            return .init(job: self, groupable: job.at == nil, rows: job.size.rows, bytes: job.size.bytes)
        default:
            return .init(job: self, groupable: false, rows: 0, bytes: 0)
        }
    }
}

/// How the parked worker is woken: with its next step, or nil to stop.
typealias WorkerWaiter = CheckedContinuation<JobStep<CoordinatorJob>?, Never>

/// Test-only interception points of the worker (all nil in production).
struct CoordinatorHooks: Sendable {
    /// Called by the worker with the number of commits it is about to write together,
    /// before it writes them.
    var beforeCommitGroup: (@Sendable (Int) async -> Void)?
    /// Called after a commit is durable and answered, before it is applied.
    var afterCommitBeforeApply: (@Sendable (Timestamp) async -> Void)?

    init(
        beforeCommitGroup: (@Sendable (Int) async -> Void)? = nil,
        afterCommitBeforeApply: (@Sendable (Timestamp) async -> Void)? = nil
    ) {
        self.beforeCommitGroup = beforeCommitGroup
        self.afterCommitBeforeApply = afterCommitBeforeApply
    }
}
