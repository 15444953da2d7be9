import Foundation
import PersistCodec
import PersistCore
import TxnClient

/// The commit load the coordinator and headline benchmarks put on a `txn-coordinator`,
/// whatever storage it runs on: N client tasks in closed loops of `commit()` (no
/// explicit timestamp, so concurrent commits may be grouped), each transaction writing
/// `rowsPerShard` rows with `valueBytes`-byte values to each of `dataShards` data shards
/// under keys no other commit uses.
///
/// A level gets data shards of its own (`createShards`), so its check reads only its own
/// rows. After the measured window the level's first shard is read at the newest
/// acknowledged timestamp and must hold exactly the rows committed to it.
struct CoordinatorLoad: Sendable {
    static let dataShards = 4
    static let rowsPerShard = 10
    static let valueBytes = 100
    /// Distinct seeded values the rows cycle through.
    static let valuePoolSize = 1024
    /// Connections of a task's own TxnClient when each task has one.
    static let perTaskConnections = 1

    /// Measured seconds per level, after `warmup` unmeasured ones.
    var duration: Int
    var warmup: Int
    /// A TxnClient per client task instead of the shared one.
    var clientPerTask: Bool
    /// The seeded values rows take, `valuePoolSize` of `valueBytes` each.
    var values: [[UInt8]]

    init(duration: Int, warmup: Int, clientPerTask: Bool, seed: UInt64) {
        self.duration = duration
        self.warmup = warmup
        self.clientPerTask = clientPerTask
        let pool = randomBytes(count: Self.valuePoolSize * Self.valueBytes, seed: seed)
        values = (0..<Self.valuePoolSize).map { i in Array(pool[(i * Self.valueBytes)..<((i + 1) * Self.valueBytes)]) }
    }

    /// The load as a report states it: the transaction's shape and the seconds per level.
    struct Shape: Codable, Sendable {
        var dataShards = CoordinatorLoad.dataShards
        var rowsPerShardPerTxn = CoordinatorLoad.rowsPerShard
        var valueBytes = CoordinatorLoad.valueBytes
        var durationSeconds: Int
        var warmupSeconds: Int
    }

    var shape: Shape { Shape(durationSeconds: duration, warmupSeconds: warmup) }

    struct LevelResult: Codable, Sendable {
        var clients: Int
        var seconds: Double
        /// Commits started in the measured window (every one was acknowledged).
        var commits: Int
        var commitsPerSecond: Double
        var rowsPerSecond: Double
        /// Per commit call, in microseconds (exact percentiles of every measured call).
        var latency: LatencySummary
        /// Distinct timestamps among the measured commits.
        var timestamps: Int
        /// Measured commits per distinct timestamp: the mean size of a commit group.
        var commitsPerTimestamp: Double
        var warmupCommits: Int
        var check: Check
    }

    /// The read-back of one level's first data shard.
    /// Commits/s, p50 and p99 (ms) of a level, as report tables show them side by side.
    static func cells(_ level: LevelResult) -> [String] {
        [Format.rate(level.commitsPerSecond), Format.millis(level.latency.p50), Format.millis(level.latency.p99)]
    }

    struct Check: Codable, Sendable {
        var shard: String
        /// The newest timestamp a commit of the level was acknowledged at, read at.
        var readAt: UInt64
        /// Rows the read returned, and rows the level's acknowledged commits (warmup
        /// included) wrote to the shard.
        var checkedRows: Int
        var committedRows: Int
        var verified: Bool
    }

    /// The name of data shard `index` of the level of `level` clients.
    static func shardName(level: Int, index: Int) -> String { "c\(level)-\(index)" }

    /// Creates the level's data shards and registers them with the txns shard.
    func createShards(client: TxnClient, level: Int) async throws(BenchError) -> [ShardID] {
        var shards: [ShardID] = []
        for shard in 0..<Self.dataShards {
            let name = Self.shardName(level: level, index: shard)
            let info = try await attempt("creating data shard \(name)") { try await client.createShard(name) }
            shards.append(info.id)
        }
        _ = try await attempt("registering the data shards of the \(level)-client level") {
            try await client.register(shards.map { ShardRef.id($0) })
        }
        return shards
    }

    // MARK: One level

    /// What one client task did in a level.
    private struct TaskOutcome: Sendable {
        /// Nanoseconds of every measured commit call.
        var latencies: [UInt64] = []
        /// The timestamp of every acknowledged commit, warmup included, by sequence number.
        var stamps: [Timestamp] = []
        var warmupCommits = 0
        var measuredCommits = 0
        var timestamps: Set<Timestamp> = []
        var lastMeasuredEnd: ContinuousClock.Instant?
    }

    /// Runs `clients` closed loops for the warmup and measured seconds on `shards` (made
    /// by `createShards` for this level), then checks the first shard's contents.
    func measureLevel(clients: Int, shared: TxnClient, shards: [ShardID]) async throws(BenchError) -> LevelResult {
        let clock = ContinuousClock()
        let measureStart = clock.now + .seconds(warmup)
        let end = measureStart + .seconds(duration)
        let ownClients = clientPerTask
        var ownConfiguration = shared.configuration
        ownConfiguration.connections = Self.perTaskConnections
        let taskConfiguration = ownConfiguration
        let values = self.values

        var outcomes = [TaskOutcome?](repeating: nil, count: clients)
        do {
            try await withThrowingTaskGroup(of: (Int, TaskOutcome).self) { group in
                for task in 0..<clients {
                    group.addTask {
                        let client = ownClients ? TxnClient(taskConfiguration) : shared
                        do {
                            let outcome = try await Self.drive(
                                client, level: clients, task: task, shards: shards, values: values,
                                measureStart: measureStart, end: end)
                            if ownClients { await client.shutdown() }
                            return (task, outcome)
                        } catch {
                            if ownClients { await client.shutdown() }
                            throw error
                        }
                    }
                }
                for try await (task, outcome) in group { outcomes[task] = outcome }
            }
        } catch let error as BenchError {
            throw error
        } catch {
            throw BenchError("a commit with \(clients) client(s) failed: \(error)")
        }

        let finished = outcomes.compactMap { $0 }
        var timestamps: Set<Timestamp> = []
        for outcome in finished { timestamps.formUnion(outcome.timestamps) }
        let commits = finished.reduce(0) { $0 + $1.measuredCommits }
        let lastEnd = finished.compactMap(\.lastMeasuredEnd).max() ?? end
        let seconds = max((lastEnd - measureStart).seconds, 1e-9)
        let rate = Double(commits) / seconds
        let check = try await verify(
            client: shared, shard: shards[0], name: Self.shardName(level: clients, index: 0), level: clients,
            stamps: finished.map(\.stamps))
        return LevelResult(
            clients: clients, seconds: seconds, commits: commits, commitsPerSecond: rate,
            rowsPerSecond: rate * Double(Self.dataShards * Self.rowsPerShard),
            latency: LatencySummary(exactNanoseconds: finished.flatMap(\.latencies)), timestamps: timestamps.count,
            commitsPerTimestamp: timestamps.isEmpty ? 0 : Double(commits) / Double(timestamps.count),
            warmupCommits: finished.reduce(0) { $0 + $1.warmupCommits }, check: check)
    }

    /// One client task's loop: builds a transaction, commits it, and records the call's
    /// latency and timestamp when it started inside the measured window. The first
    /// commit that would start at or after `end` is not made.
    private static func drive(
        _ client: TxnClient, level: Int, task: Int, shards: [ShardID], values: [[UInt8]],
        measureStart: ContinuousClock.Instant, end: ContinuousClock.Instant
    ) async throws -> TaskOutcome {
        let clock = ContinuousClock()
        var outcome = TaskOutcome()
        var seq = 0
        while true {
            let writes = transaction(level: level, task: task, seq: seq, shards: shards, values: values)
            let t0 = clock.now
            if t0 >= end { break }
            let ts = try await client.commit(writes)
            let t1 = clock.now
            seq += 1
            outcome.stamps.append(ts)
            if t0 >= measureStart {
                outcome.latencies.append((t1 - t0).nanoseconds)
                outcome.measuredCommits += 1
                outcome.timestamps.insert(ts)
                outcome.lastMeasuredEnd = t1
            } else {
                outcome.warmupCommits += 1
            }
        }
        return outcome
    }

    /// The key of row `row` of commit `seq` of task `task` at the level of `level`
    /// clients: `L<level>/c<task>/s<seq>/r<row>`, the same on every data shard and used
    /// by no other commit.
    static func key(level: Int, task: Int, seq: Int, row: Int) -> [UInt8] {
        Array("L\(level)/c\(task)/s\(seq)/r\(row)".utf8)
    }

    /// Which pooled value row `row` of shard `shardIndex` of a commit takes, so that
    /// neighbouring rows differ.
    static func valueIndex(task: Int, seq: Int, shardIndex: Int, row: Int, poolSize: Int) -> Int {
        (seq &* 37 &+ task &* 101 &+ shardIndex &* rowsPerShard &+ row) % poolSize
    }

    /// The writes of one transaction: `rowsPerShard` rows on each data shard.
    static func transaction(level: Int, task: Int, seq: Int, shards: [ShardID], values: [[UInt8]]) -> [ShardWrites] {
        shards.enumerated().map { shardIndex, shard in
            let rows = (0..<rowsPerShard).map { row in
                let pick = valueIndex(task: task, seq: seq, shardIndex: shardIndex, row: row, poolSize: values.count)
                return RowWrite(key: key(level: level, task: task, seq: seq, row: row), value: values[pick])
            }
            return ShardWrites(shard: .id(shard), rows: rows)
        }
    }

    // MARK: Verification

    /// Reads `shard` at the newest acknowledged commit timestamp and requires exactly one
    /// copy of every row the level's acknowledged commits wrote to it (each key once,
    /// diff 1, a full-size value) and nothing else. `stamps` holds each task's commit
    /// timestamps by sequence number. (A large snapshot arrives in several answers, which
    /// the client gathers.)
    private func verify(
        client: TxnClient, shard: ShardID, name: String, level: Int, stamps: [[Timestamp]]
    ) async throws(BenchError) -> Check {
        guard let readAt = stamps.compactMap({ $0.max() }).max() else {
            throw BenchError("no commit of the \(level)-client level was acknowledged")
        }
        var expected: Set<[UInt8]> = []
        for (task, taskStamps) in stamps.enumerated() {
            for seq in taskStamps.indices {
                for row in 0..<Self.rowsPerShard {
                    expected.insert(Self.key(level: level, task: task, seq: seq, row: row))
                }
            }
        }
        let snapshot = try await attempt("reading \(name) at \(readAt)") { try await client.read(.id(shard), asOf: readAt) }
        var seen: Set<[UInt8]> = []
        seen.reserveCapacity(snapshot.rows.count)
        var problems: [String] = []
        for update in snapshot.rows {
            let key = String(decoding: update.key, as: UTF8.self)
            if update.diff != 1 { problems.append("key \(key) has diff \(update.diff)") }
            if update.value.count != Self.valueBytes { problems.append("key \(key) has a \(update.value.count)-byte value") }
            if !seen.insert(update.key).inserted { problems.append("key \(key) appears twice") }
            if problems.count >= 5 { break }
        }
        if problems.isEmpty && seen != expected {
            let missing = expected.subtracting(seen).count
            let extra = seen.subtracting(expected).count
            problems.append("\(missing) committed key(s) missing, \(extra) key(s) never committed")
        }
        guard problems.isEmpty else {
            throw BenchError(
                "verification failed: \(name) at \(readAt) holds \(snapshot.rows.count) rows, \(expected.count) "
                    + "were committed to it: " + problems.prefix(5).joined(separator: "; "))
        }
        return Check(
            shard: name, readAt: readAt, checkedRows: snapshot.rows.count, committedRows: expected.count,
            verified: true)
    }

    private func attempt<T>(_ what: String, _ body: () async throws -> T) async throws(BenchError) -> T {
        do {
            return try await body()
        } catch {
            throw BenchError("\(what) failed: \(error)")
        }
    }
}
