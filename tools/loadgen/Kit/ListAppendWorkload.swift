import PersistCodec
import PersistCore
import Synchronization

/// The settings of a list-append run.
public struct ListAppendSettings: Sendable {
    public var mix: ListAppendMix
    public var shape: LoadShape
    public var seed: UInt64
    public var duration: Duration
    /// Stop after this many transactions even before `duration` (tests).
    public var maxTransactions: Int?
    public var finalReads: Bool
    public var finalReadTimeout: Duration
    public var setupTimeout: Duration
    /// The pause after transport trouble, in milliseconds (seeded jitter within it).
    public var backoffMilliseconds: ClosedRange<Int>

    public init(
        mix: ListAppendMix = ListAppendMix(), shape: LoadShape = .closed(clients: 8), seed: UInt64 = 1,
        duration: Duration = .seconds(10), maxTransactions: Int? = nil, finalReads: Bool = true,
        finalReadTimeout: Duration = .seconds(60), setupTimeout: Duration = .seconds(30),
        backoffMilliseconds: ClosedRange<Int> = 50...200
    ) {
        self.mix = mix
        self.shape = shape
        self.seed = seed
        self.duration = duration
        self.maxTransactions = maxTransactions
        self.finalReads = finalReads
        self.finalReadTimeout = finalReadTimeout
        self.setupTimeout = setupTimeout
        self.backoffMilliseconds = backoffMilliseconds
    }
}

/// What the final reads achieved.
public struct FinalReadReport: Hashable, Sendable, Codable {
    public var enabled: Bool
    /// Keys that were ever appended to, each of which gets one final read.
    public var keys: Int
    /// Keys whose final read came back ok.
    public var done: Int
    /// Read attempts (one per shard per try).
    public var attempts: Int

    public init(enabled: Bool, keys: Int = 0, done: Int = 0, attempts: Int = 0) {
        self.enabled = enabled
        self.keys = keys
        self.done = done
        self.attempts = attempts
    }
}

/// The outcome of a list-append run.
public struct ListAppendReport: Sendable {
    public var counts: [TxnKind: OutcomeCounts]
    public var latency: LatencyMilliseconds
    /// Seconds from the first transaction's start to the last one's end.
    public var elapsedSeconds: Double
    public var skippedArrivals: Int
    public var processes: Int
    public var keysAppended: Int
    public var keysRetired: Int
    public var firstKeyIndex: [Int]
    public var finalReads: FinalReadReport
    /// Rows with negative diffs seen in reads (the workload writes none).
    public var retractions: Int
    public var historyLines: Int
}

/// The list-append workload (fault-testing spec §2): transactions of reads and appends
/// over keys in several data shards, recorded as a history `tools/checker` can judge.
///
/// Write-only transactions are one commit at a time the coordinator picks (so they may
/// share it with others: group commit). Read-only ones read every shard they touch at
/// one time: the first shard at the latest time, the rest at the time it answered.
/// Mixed ones read like that at `L`, then commit their appends at exactly `L + 1`, which
/// the coordinator refuses (`timestampClosed`, so `fail`) if anything else committed
/// after `L`: that refusal is what makes their reads still current when they commit.
public final class ListAppendWorkload: Sendable {
    public let target: any LoadTarget
    public let settings: ListAppendSettings
    public let recorder: HistoryRecorder
    public let stats: RunStats
    public let control: RunControl
    let processes = ProcessPool()
    let generator: Mutex<ListAppendGenerator?> = Mutex(nil)
    let backoff: Mutex<Backoff>
    let retractions = Mutex(0)
    let firstKeys: Mutex<[Int]> = Mutex([])

    public init(
        target: any LoadTarget, settings: ListAppendSettings, recorder: HistoryRecorder, control: RunControl? = nil
    ) {
        self.target = target
        self.settings = settings
        self.recorder = recorder
        self.stats = RunStats()
        self.control = control ?? RunControl(maxTransactions: settings.maxTransactions)
        backoff = Mutex(Backoff(seed: derivedSeed(settings.seed, stream: 0xB0FF), range: settings.backoffMilliseconds))
    }

    // MARK: Setup

    /// Creates and registers the shards, and starts each shard's keys past every `k<j>`
    /// already in it (so a rerun against the same cluster uses fresh keys). Throws
    /// `setupFailed` if that does not succeed within the setup timeout.
    public func setup() async throws(LoadGenError) {
        var retry = SetupRetry(deadline: .now + settings.setupTimeout, seed: settings.seed)
        let names = (0..<settings.mix.shards).map(settings.mix.shardName)
        try await ShardSetup.ensure(names, on: target, retry: &retry)
        var first: [Int] = []
        for name in names {
            let target = self.target
            let next = try await retry.run("reading shard \(name)") { () async throws -> Int in
                let (_, rows) = try await target.read(.name(name), asOf: nil)
                return Self.firstFreeKeyIndex(rows.map(\.key))
            }
            first.append(next)
        }
        firstKeys.withLock { $0 = first }
        let gen = ListAppendGenerator(mix: settings.mix, seed: settings.seed, firstKeyIndex: first)
        generator.withLock { $0 = gen }
    }

    /// One past the largest `j` among row keys `k<j>` (0 if there are none).
    public static func firstFreeKeyIndex(_ keys: [[UInt8]]) -> Int {
        keys.compactMap(ListKey.index(ofRowKey:)).max().map { $0 + 1 } ?? 0
    }

    // MARK: Run

    /// Runs the load for the configured duration, then the final reads. `progress` is
    /// called once a second. Call `setup()` first.
    public func run(progress: (@Sendable (ProgressSample) -> Void)? = nil) async -> ListAppendReport {
        precondition(generator.withLock { $0 != nil }, "setup() must succeed before run()")
        let start = ContinuousClock.now
        control.begin(for: settings.duration, now: start)
        let stats = self.stats
        let recorder = self.recorder
        let skipped = await Ticker.whileRunning(
            every: .seconds(1),
            tick: {
                let sample = stats.sample()
                progress?(sample)
                recorder.flush()
            }
        ) {
            await LoadDriver.run(settings.shape, seed: settings.seed, control: control) { _ in
                await self.runOne()
            }
        }
        let elapsed = (ContinuousClock.now - start).seconds
        recorder.flush()
        let finals: FinalReadReport
        if settings.finalReads {
            finals = await finalReads(deadline: .now + settings.finalReadTimeout)
        } else {
            finals = FinalReadReport(enabled: false)
        }
        recorder.flush()
        let pool = generator.withLock { $0?.pool }
        var counts: [TxnKind: OutcomeCounts] = [:]
        for kind in TxnKind.allCases { counts[kind] = stats.counts(kind) }
        return ListAppendReport(
            counts: counts, latency: stats.latency, elapsedSeconds: elapsed, skippedArrivals: skipped,
            processes: processes.used, keysAppended: pool?.appended.count ?? 0, keysRetired: pool?.retired ?? 0,
            firstKeyIndex: firstKeys.withLock { $0 }, finalReads: finals, retractions: retractions.withLock { $0 },
            historyLines: recorder.lineCount)
    }

    /// Plans, runs and records one transaction.
    func runOne() async {
        guard let plan = generator.withLock({ $0?.next() }) else { return }
        let process = processes.acquire()
        let started = ContinuousClock.now
        recorder.record(.invoke, process: process, ops: plan.ops.map(\.invocation))
        let result = await execute(plan)
        switch result {
        case .ok(let ops): recorder.record(.ok, process: process, ops: ops)
        case .failed(let verdict):
            recorder.record(HistoryEventType(verdict.outcome), process: process, ops: plan.ops.map(\.invocation))
        }
        let outcome = result.outcome
        stats.record(plan.kind, outcome, latency: ContinuousClock.now - started)
        processes.release(process, after: outcome)
        if case .failed(let verdict) = result, verdict.backOff { await pause() }
    }

    enum Execution {
        /// Committed (or read): the completion's micro-ops, reads filled in.
        case ok([HistoryOp])
        case failed(ErrorVerdict)

        var outcome: TxnOutcome {
            switch self {
            case .ok: .ok
            case .failed(let v): v.outcome
            }
        }
    }

    func execute(_ plan: TxnPlan) async -> Execution {
        switch plan.kind {
        case .writeOnly:
            do {
                _ = try await target.commit(Self.writes(plan, mix: settings.mix), at: nil)
                return .ok(Self.completion(plan, snapshot: [:]))
            } catch {
                return .failed(OutcomeClassifier.classify(error, phase: .committing))
            }
        case .readOnly:
            do {
                let (_, lists) = try await snapshot(plan)
                return .ok(Self.completion(plan, snapshot: lists))
            } catch {
                return .failed(OutcomeClassifier.classify(error, phase: .reading))
            }
        case .mixed:
            let asOf: Timestamp
            let lists: [ListKey: [ReadElement]]
            do {
                (asOf, lists) = try await snapshot(plan)
            } catch {
                return .failed(OutcomeClassifier.classify(error, phase: .reading))
            }
            // Nothing has been written yet, so an unusable time is a plain failure.
            guard asOf < Timestamp.max else { return .failed(ErrorVerdict(outcome: .fail, backOff: false)) }
            do {
                _ = try await target.commit(Self.writes(plan, mix: settings.mix), at: asOf + 1)
                return .ok(Self.completion(plan, snapshot: lists))
            } catch {
                return .failed(OutcomeClassifier.classify(error, phase: .committing))
            }
        }
    }

    /// Reads every shard the plan reads at one time and returns that time and the
    /// lists of the keys it reads.
    func snapshot(_ plan: TxnPlan) async throws -> (Timestamp, [ListKey: [ReadElement]]) {
        var asOf: Timestamp?
        var lists: [ListKey: [ReadElement]] = [:]
        for shard in plan.readShards {
            let keys = Set(
                plan.ops.compactMap { op -> ListKey? in
                    if case .read(let k) = op, k.shard == shard { return k }
                    return nil
                })
            let (time, rows) = try await target.readHistory(.name(settings.mix.shardName(shard)), asOf: asOf)
            asOf = asOf ?? time
            let history = ListHistory(rows: rows, keys: Set(keys.map(\.rowKey)))
            if history.retractions > 0 { retractions.withLock { $0 += history.retractions } }
            for k in keys { lists[k] = history.list(k.rowKey) }
        }
        return (asOf ?? 0, lists)
    }

    /// The commit's writes: one `(k<j>, value, +1)` row per append.
    static func writes(_ plan: TxnPlan, mix: ListAppendMix) -> [ShardWrites] {
        plan.appendsByShard.map { group in
            ShardWrites(
                shard: .name(mix.shardName(group.shard)),
                rows: group.rows.map { RowWrite(key: $0.key, value: $0.value, diff: 1) })
        }
    }

    /// The micro-ops of an ok completion: each read is the snapshot's list of its key
    /// plus whatever this transaction appended to that key before it.
    public static func completion(_ plan: TxnPlan, snapshot: [ListKey: [ReadElement]]) -> [HistoryOp] {
        var own: [ListKey: [ReadElement]] = [:]
        return plan.ops.map { op in
            switch op {
            case .read(let k):
                return .read(key: k.historyName, list: (snapshot[k] ?? []) + (own[k] ?? []))
            case .append(let k, let v):
                own[k, default: []].append(.int(v))
                return .append(key: k.historyName, value: v)
            }
        }
    }

    func pause() async {
        let ms = backoff.withLock { $0.nextMilliseconds() }
        try? await Task.sleep(for: .milliseconds(ms))
    }

    // MARK: Final reads

    /// Reads every key ever appended to, once each, in fresh processes, after all other
    /// activity; retried (with fresh processes each time) until ok or `deadline`.
    ///
    /// The keys of one shard are read by one request: each key's transaction is invoked
    /// before it is sent and completes after its answer, so they are honest concurrent
    /// single-key reads that happen to share a snapshot.
    func finalReads(deadline: ContinuousClock.Instant) async -> FinalReadReport {
        let keys = generator.withLock { $0?.pool.appended.sorted() ?? [] }
        var report = FinalReadReport(enabled: true, keys: keys.count)
        let byShard = Dictionary(grouping: keys, by: \.shard).sorted { $0.key < $1.key }
        for (shard, shardKeys) in byShard {
            while true {
                let processIDs = shardKeys.map { _ in processes.fresh() }
                for (p, k) in zip(processIDs, shardKeys) {
                    recorder.record(.invoke, process: p, ops: [.read(key: k.historyName, list: nil)])
                }
                report.attempts += 1
                do {
                    let (_, rows) = try await target.readHistory(.name(settings.mix.shardName(shard)), asOf: nil)
                    let history = ListHistory(rows: rows, keys: Set(shardKeys.map(\.rowKey)))
                    if history.retractions > 0 { retractions.withLock { $0 += history.retractions } }
                    for (p, k) in zip(processIDs, shardKeys) {
                        recorder.record(.ok, process: p, ops: [.read(key: k.historyName, list: history.list(k.rowKey))])
                    }
                    report.done += shardKeys.count
                    break
                } catch {
                    for (p, k) in zip(processIDs, shardKeys) {
                        recorder.record(.fail, process: p, ops: [.read(key: k.historyName, list: nil)])
                    }
                    if ContinuousClock.now >= deadline { break }
                    await pause()
                }
            }
        }
        return report
    }
}
