import Foundation
import Histogram
import PersistCodec
import PersistCore
import PersistRPC
import TxnClient

/// Commits per second and commit latency of a `txn-coordinator` process, seen by N
/// concurrent clients over its RPC, with group commit on and then off.
///
/// Each mode gets a fresh coordinator on a fresh directory (FileBlob and LogConsensus,
/// so every durable step pays a real fsync). Each client count gets four data shards of
/// its own, created and registered before its warmup; N tasks then run closed loops of
/// `commit()`, every transaction writing ten rows with 100-byte values to each of the
/// four shards under keys no other commit uses. Timestamps the coordinator hands back
/// are collected: commits that share one were made durable by the same compare-and-set
/// on the txns shard, so commits per distinct timestamp is the effective group size.
///
/// After each level its first data shard is read at the newest acknowledged timestamp
/// and must hold exactly the rows committed to it. The shards are per level because a
/// read answers with the whole snapshot in one RPC frame (at most 64 MiB, about 490,000
/// of these rows), which a few hundred thousand rows per level already approach. Should
/// a level still outgrow it, the read moves back to the newest acknowledged timestamp
/// whose snapshot fits, and the check covers the commits at or before it.
struct CoordinatorBench {
    struct Settings {
        var clientCounts: [Int]
        /// Measured seconds per level, after `warmup` unmeasured ones.
        var duration: Int
        var warmup: Int
        /// Loopback TCP instead of a Unix socket.
        var tcp: Bool
        /// A TxnClient per client task instead of one shared by all of them.
        var clientPerTask: Bool
        /// Parent of the run's scratch directory.
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
    }

    struct LevelResult: Codable {
        var clients: Int
        var seconds: Double
        /// Commits started in the measured window (every one was acknowledged).
        var commits: Int
        var commitsPerSecond: Double
        var rowsPerSecond: Double
        /// Per commit call, in microseconds.
        var latency: LatencySummary
        /// Distinct timestamps among the measured commits.
        var timestamps: Int
        /// Measured commits per distinct timestamp: the mean size of a commit group.
        var commitsPerTimestamp: Double
        var warmupCommits: Int
        var check: Check
    }

    /// The read-back of one level's first data shard.
    struct Check: Codable {
        var shard: String
        /// The newest timestamp a commit of the level was acknowledged at.
        var lastTimestamp: UInt64
        /// The timestamp read at: `lastTimestamp`, unless that snapshot would not fit in
        /// one RPC frame.
        var readAt: UInt64
        /// Rows the read returned, and rows the acknowledged commits at or before `readAt`
        /// (warmup included) wrote to the shard.
        var checkedRows: Int
        var expectedRows: Int
        /// Rows every acknowledged commit of the level wrote to the shard.
        var committedRows: Int
        var verified: Bool
    }

    struct ModeResult: Codable {
        var groupCommit: Bool
        var levels: [LevelResult]
    }

    /// Throughput with group commit on and off at one client count.
    struct Comparison: Codable {
        var clients: Int
        var onCommitsPerSecond: Double?
        var offCommitsPerSecond: Double?
        var onOverOff: Double?
    }

    struct Result: Codable {
        var bench = "coordinator"
        /// "unix" or "tcp".
        var transport: String
        var clientPerTask: Bool
        /// Connections of each TxnClient.
        var connectionsPerClient: Int
        var dataShards: Int
        var rowsPerShardPerTxn: Int
        var valueBytes: Int
        var durationSeconds: Int
        var warmupSeconds: Int
        var modes: [ModeResult]
        var comparison: [Comparison]
    }

    static let dataShards = 4
    static let rowsPerShard = 10
    static let valueBytes = 100
    /// Distinct seeded values the rows cycle through.
    static let valuePoolSize = 1024
    /// Connections of a task's own TxnClient under `--client-per-task`.
    static let perTaskConnections = 1

    var settings: Settings

    /// Connections of each TxnClient the clients commit through.
    var connectionsPerClient: Int {
        settings.clientPerTask
            ? Self.perTaskConnections : TxnClient.Configuration(endpoint: .unix(path: "/")).connections
    }

    func run() async throws(BenchError) -> Result {
        let runDirectory = try System.makeScratchDirectory(under: settings.parentDirectory, prefix: "persist-bench-")
        let keep = settings.keep
        let dirToken = cleanup.register("remove \(runDirectory)") { if !keep { System.removeTree(runDirectory) } }
        defer { cleanup.run(dirToken) }
        print("scratch directory: \(runDirectory)\(keep ? " (kept)" : " (removed at the end)")")
        print(
            "coordinator: \(try CoordinatorProcess.executable()), a fresh process per mode over "
                + (settings.tcp ? "loopback TCP" : "a Unix socket") + "; clients: "
                + (settings.clientPerTask
                    ? "a TxnClient per task (\(Self.perTaskConnections) connection each)"
                    : "one TxnClient (\(connectionsPerClient) connections) shared by every task"))
        print("")

        let pool = randomBytes(count: Self.valuePoolSize * Self.valueBytes, seed: settings.seed)
        let values = (0..<Self.valuePoolSize).map { i in
            Array(pool[(i * Self.valueBytes)..<((i + 1) * Self.valueBytes)])
        }

        var modes: [ModeResult] = []
        for groupCommit in [true, false] {
            let directory = "\(runDirectory)/group-commit-\(groupCommit ? "on" : "off")"
            try System.makeDirectory(directory)
            modes.append(try await runMode(groupCommit: groupCommit, directory: directory, values: values))
        }
        print("")

        let on = modes.first { $0.groupCommit }
        let off = modes.first { !$0.groupCommit }
        let comparison = settings.clientCounts.map { clients in
            let onRate = on?.levels.first { $0.clients == clients }?.commitsPerSecond
            let offRate = off?.levels.first { $0.clients == clients }?.commitsPerSecond
            var ratio: Double?
            if let onRate, let offRate, offRate > 0 { ratio = onRate / offRate }
            return Comparison(clients: clients, onCommitsPerSecond: onRate, offCommitsPerSecond: offRate, onOverOff: ratio)
        }
        return Result(
            transport: settings.tcp ? "tcp" : "unix", clientPerTask: settings.clientPerTask,
            connectionsPerClient: connectionsPerClient, dataShards: Self.dataShards,
            rowsPerShardPerTxn: Self.rowsPerShard, valueBytes: Self.valueBytes, durationSeconds: settings.duration,
            warmupSeconds: settings.warmup, modes: modes, comparison: comparison)
    }

    // MARK: One mode

    /// Starts a coordinator for the mode, measures every client count on it, verifies,
    /// and stops it (requiring a clean exit), also stopping it when anything fails.
    private func runMode(groupCommit: Bool, directory: String, values: [[UInt8]]) async throws(BenchError) -> ModeResult {
        print("group commit \(groupCommit ? "on" : "off"):", terminator: "")
        fflush(nil)
        let process = try CoordinatorProcess.start(directory: directory, groupCommit: groupCommit, tcp: settings.tcp)
        let client = TxnClient(.init(endpoint: process.endpoint))
        let result: ModeResult
        do {
            result = try await measureMode(groupCommit: groupCommit, client: client, values: values)
        } catch {
            print("")
            await client.shutdown()
            process.stopQuietly()
            throw error
        }
        await client.shutdown()
        try process.stop()
        return result
    }

    private func measureMode(groupCommit: Bool, client: TxnClient, values: [[UInt8]]) async throws(BenchError)
        -> ModeResult
    {
        var levels: [LevelResult] = []
        for (index, clients) in settings.clientCounts.enumerated() {
            print("\(index == 0 ? "" : ";") \(clients) client\(clients == 1 ? "" : "s") ...", terminator: "")
            fflush(nil)
            var shards: [ShardID] = []
            for shard in 0..<Self.dataShards {
                let name = Self.shardName(level: clients, index: shard)
                let info = try await attempt("creating data shard \(name)") { try await client.createShard(name) }
                shards.append(info.id)
            }
            _ = try await attempt("registering the data shards of the \(clients)-client level") {
                try await client.register(shards.map { ShardRef.id($0) })
            }
            let level = try await measureLevel(clients: clients, shared: client, shards: shards, values: values)
            print(
                " \(Format.rate(level.commitsPerSecond)) commits/s, "
                    + (level.check.readAt == level.check.lastTimestamp ? "verified" : "verified (partly)"),
                terminator: "")
            fflush(nil)
            levels.append(level)
        }
        print("")
        return ModeResult(groupCommit: groupCommit, levels: levels)
    }

    /// The name of data shard `index` of the level of `level` clients.
    static func shardName(level: Int, index: Int) -> String { "c\(level)-\(index)" }

    // MARK: One level

    /// What one client task did in a level.
    private struct TaskOutcome: Sendable {
        var histogram: Histogram<UInt64>
        /// The timestamp of every acknowledged commit, warmup included, by sequence number.
        var stamps: [Timestamp] = []
        var warmupCommits = 0
        var measuredCommits = 0
        var timestamps: Set<Timestamp> = []
        var lastMeasuredEnd: ContinuousClock.Instant?
    }

    /// Runs `clients` closed loops for the warmup and measured seconds on `shards`,
    /// then checks the first shard's contents.
    private func measureLevel(
        clients: Int, shared: TxnClient, shards: [ShardID], values: [[UInt8]]
    ) async throws(BenchError) -> LevelResult {
        let clock = ContinuousClock()
        let measureStart = clock.now + .seconds(settings.warmup)
        let end = measureStart + .seconds(settings.duration)
        let ownClients = settings.clientPerTask
        let endpoint = shared.configuration.endpoint

        var outcomes = [TaskOutcome?](repeating: nil, count: clients)
        do {
            try await withThrowingTaskGroup(of: (Int, TaskOutcome).self) { group in
                for task in 0..<clients {
                    group.addTask {
                        let client =
                            ownClients
                            ? TxnClient(.init(endpoint: endpoint, connections: Self.perTaskConnections)) : shared
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
        var histogram = LatencySummary.makeHistogram()
        var timestamps: Set<Timestamp> = []
        for outcome in finished {
            histogram.add(outcome.histogram)
            timestamps.formUnion(outcome.timestamps)
        }
        let commits = finished.reduce(0) { $0 + $1.measuredCommits }
        let lastEnd = finished.compactMap(\.lastMeasuredEnd).max() ?? end
        let seconds = max((lastEnd - measureStart).seconds, 1e-9)
        let rate = Double(commits) / seconds
        let check = try await verify(
            client: shared, shard: shards[0], name: Self.shardName(level: clients, index: 0), level: clients,
            stamps: finished.map(\.stamps))
        return LevelResult(
            clients: clients, seconds: seconds, commits: commits, commitsPerSecond: rate,
            rowsPerSecond: rate * Double(Self.dataShards * Self.rowsPerShard), latency: LatencySummary(histogram),
            timestamps: timestamps.count,
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
        var outcome = TaskOutcome(histogram: LatencySummary.makeHistogram())
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
                outcome.histogram.recordClamped((t1 - t0).nanoseconds)
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

    /// The writes of one transaction: `rowsPerShard` rows on each data shard, with
    /// values picked from the seeded pool so neighbouring rows differ.
    static func transaction(level: Int, task: Int, seq: Int, shards: [ShardID], values: [[UInt8]]) -> [ShardWrites] {
        shards.enumerated().map { shardIndex, shard in
            let rows = (0..<rowsPerShard).map { row in
                let pick = (seq &* 37 &+ task &* 101 &+ shardIndex &* rowsPerShard &+ row) % values.count
                return RowWrite(key: key(level: level, task: task, seq: seq, row: row), value: values[pick])
            }
            return ShardWrites(shard: .id(shard), rows: rows)
        }
    }

    // MARK: Verification

    /// The most snapshot bytes a check reads in one call: the RPC frame limit, less a
    /// margin for the frame's own fields.
    static let snapshotBudget = RPCFraming.maxPayloadLength - (1 << 20)

    /// Bytes one row of `key` takes in a snapshot answer: the key and value with their
    /// length prefixes, time and diff.
    static func encodedRowBytes(key: [UInt8]) -> Int {
        varintBytes(key.count) + key.count + varintBytes(valueBytes) + valueBytes + 16
    }

    private static func varintBytes(_ n: Int) -> Int {
        var bytes = 1
        var rest = n >> 7
        while rest > 0 {
            bytes += 1
            rest >>= 7
        }
        return bytes
    }

    /// Reads `shard` and requires exactly one copy of every row the acknowledged commits
    /// of the level wrote to it (each key once, diff 1, a full-size value) and nothing
    /// else. `stamps` holds each task's commit timestamps by sequence number. The read is
    /// at the newest of them, or, if that snapshot would not fit in one RPC frame, at the
    /// newest one whose snapshot does (and only the commits at or before it are expected).
    private func verify(
        client: TxnClient, shard: ShardID, name: String, level: Int, stamps: [[Timestamp]]
    ) async throws(BenchError) -> Check {
        // Snapshot bytes per commit timestamp, to find the newest time that fits.
        var bytesAt: [Timestamp: Int] = [:]
        var committedRows = 0
        for (task, taskStamps) in stamps.enumerated() {
            for (seq, ts) in taskStamps.enumerated() {
                var bytes = 0
                for row in 0..<Self.rowsPerShard {
                    bytes += Self.encodedRowBytes(key: Self.key(level: level, task: task, seq: seq, row: row))
                }
                bytesAt[ts, default: 0] += bytes
                committedRows += Self.rowsPerShard
            }
        }
        let times = bytesAt.keys.sorted()
        guard let lastTimestamp = times.last else {
            throw BenchError("no commit of the \(level)-client level was acknowledged")
        }
        var fitting: Timestamp?
        var total = 0
        for ts in times {
            total += bytesAt[ts] ?? 0
            if total > Self.snapshotBudget { break }
            fitting = ts
        }
        guard let readAt = fitting else {
            throw BenchError("the first commits of the \(level)-client level do not fit in one read of \(name)")
        }

        var expected: Set<[UInt8]> = []
        for (task, taskStamps) in stamps.enumerated() {
            for (seq, ts) in taskStamps.enumerated() where ts <= readAt {
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
            problems.append("\(missing) committed key(s) missing, \(extra) key(s) not committed by then")
        }
        guard problems.isEmpty else {
            throw BenchError(
                "verification failed: \(name) at \(readAt) holds \(snapshot.rows.count) rows, \(expected.count) "
                    + "were committed to it: " + problems.prefix(5).joined(separator: "; "))
        }
        return Check(
            shard: name, lastTimestamp: lastTimestamp, readAt: readAt, checkedRows: snapshot.rows.count,
            expectedRows: expected.count, committedRows: committedRows, verified: true)
    }

    private func attempt<T>(_ what: String, _ body: () async throws -> T) async throws(BenchError) -> T {
        do {
            return try await body()
        } catch {
            throw BenchError("\(what) failed: \(error)")
        }
    }

    // MARK: Report

    /// A latency in milliseconds from microseconds: two decimals below 10 ms, one above.
    static func millis(_ micros: Double) -> String {
        let ms = micros / 1000
        return Format.fixed(ms, ms < 10 ? 2 : 1)
    }

    static func report(_ result: Result) {
        let transport = result.transport == "tcp" ? "loopback TCP" : "a Unix socket"
        let clientsText =
            result.clientPerTask
            ? "a TxnClient per task (\(result.connectionsPerClient) connection each)"
            : "one TxnClient (\(result.connectionsPerClient) connections) shared by all tasks"
        for mode in result.modes {
            var table = Table(
                "txn-coordinator, group commit \(mode.groupCommit ? "on" : "off"): N clients in closed loops of "
                    + "commit(), each txn \(result.rowsPerShardPerTxn) rows (\(result.valueBytes)-byte values) on each "
                    + "of \(result.dataShards) data shards; latency in ms",
                headers: ["clients", "commits/s", "rows/s", "p50", "p90", "p99", "max", "commits/ts", "verified rows"])
            var partial = false
            for level in mode.levels {
                let check = level.check
                var verified = Format.count(check.checkedRows)
                if check.readAt != check.lastTimestamp {
                    verified += " of \(Format.count(check.committedRows))*"
                    partial = true
                }
                table.add([
                    Format.count(level.clients), Format.rate(level.commitsPerSecond),
                    Format.rate(level.rowsPerSecond), millis(level.latency.p50), millis(level.latency.p90),
                    millis(level.latency.p99), millis(level.latency.max), Format.fixed(level.commitsPerTimestamp, 2),
                    check.verified ? verified : "WRONG",
                ])
            }
            table.notes.append(
                "a fresh coordinator (FileBlob + LogConsensus, real fsyncs) over \(transport); \(clientsText); "
                    + "\(result.warmupSeconds) s warmup, then \(result.durationSeconds) s measured per level")
            table.notes.append(
                "rows/s = commits/s x \(result.rowsPerShardPerTxn * result.dataShards); commits/ts = measured commits "
                    + "per distinct commit timestamp (the mean commit group)")
            table.notes.append(
                "each level has 4 fresh data shards; verified rows: its first shard, read at the level's newest "
                    + "acknowledged commit timestamp, holds exactly the rows committed to it (warmup included), "
                    + "each key once")
            if partial {
                table.notes.append(
                    "*: that snapshot would exceed one RPC frame (64 MiB), so the read was at the newest acknowledged "
                        + "timestamp whose snapshot fits, and holds exactly the commits at or before it")
            }
            table.print()
        }

        var comparison = Table(
            "Group commit on vs off: commits/s", headers: ["clients", "on commits/s", "off commits/s", "on/off"])
        for row in result.comparison {
            comparison.add([
                Format.count(row.clients), row.onCommitsPerSecond.map(Format.rate) ?? "-",
                row.offCommitsPerSecond.map(Format.rate) ?? "-",
                Format.ratio(row.onCommitsPerSecond, row.offCommitsPerSecond),
            ])
        }
        comparison.print()
    }
}
