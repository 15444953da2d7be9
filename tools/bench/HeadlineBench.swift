import Foundation
import PersistConformance
import TxnClient

/// The headline figure: multi-shard commits per second and commit latency of the local
/// cluster (`blob-store`, `consensus` and `txn-coordinator` processes, `LocalCluster`)
/// beside PostgreSQL 15 doing the same transactions, at N concurrent clients.
///
/// Every transaction writes ten rows with 100-byte values under fresh keys to each of
/// four data shards (on PostgreSQL: four tables). The cluster's clients run
/// `CoordinatorLoad` (closed loops of `commit()` without a timestamp, so concurrent
/// commits are grouped); PostgreSQL's run pgbench (`PgbenchCommitPeer`). Each level gets
/// a fresh cluster and then a fresh PostgreSQL, one after the other, so neither system
/// shares the machine with the other's processes or inherits earlier levels' data. Both
/// sides are checked afterwards: the cluster's first data shard is read back, and every
/// PostgreSQL table must hold ten rows per reported transaction.
struct HeadlineBench {
    struct Settings {
        var clientCounts: [Int]
        /// Measured seconds per level and system, after `warmup` unmeasured ones.
        var duration: Int
        var warmup: Int
        /// Parent of the run's scratch directory.
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
    }

    struct Level: Codable, Sendable {
        var clients: Int
        var cluster: CoordinatorLoad.LevelResult
        var postgres: PgbenchCommitPeer.LevelResult
        /// Cluster commits/s over PostgreSQL's.
        var clusterOverPostgres: Double?
    }

    struct Result: Codable, Sendable {
        var bench = "headline"
        /// The transaction's shape and the seconds per level.
        var load: CoordinatorLoad.Shape
        var cpus: Int
        var postgresVersion: String
        /// Connections of the TxnClient every cluster client task shares.
        var connectionsPerClient: Int
        var levels: [Level]
    }

    var settings: Settings

    func run() async throws(BenchError) -> Result {
        let scratch = try ScratchRun(under: settings.parentDirectory, keep: settings.keep)
        defer { scratch.finish() }
        let runDirectory = scratch.path
        print(
            "cluster: \(try System.siblingExecutable("blob-store", neededBy: "the headline benchmark")), "
                + "\(try OpenedConsensus.serverExecutable()) and \(try CoordinatorProcess.executable()), "
                + "fresh processes per level over Unix sockets")
        let binaries = try PostgresServer.locateBinaries()
        print("PostgreSQL: \(binaries.pgbench) and the server in \(binaries.serverDirectory), a fresh one per level")
        print("")

        let load = CoordinatorLoad(
            duration: settings.duration, warmup: settings.warmup, clientPerTask: false, seed: settings.seed)
        var levels: [Level] = []
        var postgresVersion = "unknown"
        for clients in settings.clientCounts {
            let directory = "\(runDirectory)/c\(clients)"
            try System.makeDirectory(directory)
            print("\(clients) client\(clients == 1 ? "" : "s"): cluster ...", terminator: "")
            fflush(nil)
            let cluster = try await LocalCluster.measure(clients: clients, load: load, directory: "\(directory)/cluster")
            print(" \(Format.rate(cluster.commitsPerSecond)) commits/s; PostgreSQL ...", terminator: "")
            fflush(nil)
            let (version, postgres) = try await measurePostgres(
                clients: clients, values: load.values, directory: "\(directory)/postgres")
            postgresVersion = version
            print(" \(Format.rate(postgres.commitsPerSecond)) commits/s")
            let ratio = postgres.commitsPerSecond > 0 ? cluster.commitsPerSecond / postgres.commitsPerSecond : nil
            levels.append(Level(clients: clients, cluster: cluster, postgres: postgres, clusterOverPostgres: ratio))
        }
        print("")
        return Result(
            load: load.shape, cpus: ProcessInfo.processInfo.activeProcessorCount, postgresVersion: postgresVersion,
            connectionsPerClient: TxnClient.Configuration(endpoint: .unix(path: "/")).connections, levels: levels)
    }

    /// One level on a fresh PostgreSQL, on a thread of its own (initdb, pgbench and psql
    /// block while they run).
    private func measurePostgres(
        clients: Int, values: [[UInt8]], directory: String
    ) async throws(BenchError) -> (String, PgbenchCommitPeer.LevelResult) {
        try System.makeDirectory(directory)
        let (warmup, duration, keep) = (settings.warmup, settings.duration, settings.keep)
        do {
            return try await SpawnedServer.offThread { () throws -> (String, PgbenchCommitPeer.LevelResult) in
                let measured = try PgbenchCommitPeer.measure(
                    clients: clients, warmup: warmup, duration: duration, values: values, directory: directory,
                    keep: keep)
                return (measured.version, measured.result)
            }
        } catch let error as BenchError {
            throw error
        } catch {
            throw BenchError("the PostgreSQL level failed: \(error)")
        }
    }

    // MARK: Report

    /// The clients count the goal is stated at, and the ratio it asks for.
    static let goalClients = 64
    static let goalRatio = 1.0

    static func report(_ result: Result) {
        var table = Table(
            "Multi-shard commits: local cluster vs PostgreSQL \(result.postgresVersion); each txn "
                + "\(result.load.rowsPerShardPerTxn) rows (\(result.load.valueBytes)-byte values) on each of "
                + "\(result.load.dataShards) shards; latency in ms",
            headers: [
                "clients", "cluster commits/s", "p50", "p99", "PostgreSQL commits/s", "p50", "p99", "cluster/PostgreSQL",
            ])
        for level in result.levels {
            table.add(
                [Format.count(level.clients)] + CoordinatorLoad.cells(level.cluster)
                    + [
                        Format.rate(level.postgres.commitsPerSecond), Format.millis(level.postgres.latency.p50),
                        Format.millis(level.postgres.latency.p99),
                        Format.ratio(level.cluster.commitsPerSecond, level.postgres.commitsPerSecond),
                    ])
        }
        table.notes.append(
            "cluster: blob-store + consensus + txn-coordinator processes over Unix sockets; N tasks share one "
                + "TxnClient (\(result.connectionsPerClient) connections) and commit() without a timestamp "
                + "(group commit); commits per txns-shard CaS: "
                + result.levels.map { Format.fixed($0.cluster.commitsPerTimestamp, 1) }.joined(separator: " / "))
        table.notes.append(
            "PostgreSQL: fsync=on, synchronous_commit=on; pgbench -M prepared over the Unix socket, each txn "
                + "BEGIN, a \(result.load.rowsPerShardPerTxn)-row INSERT into each of \(result.load.dataShards) tables "
                + "(text primary key, bytea value), COMMIT")
        table.notes.append(
            "each level: a fresh cluster, then a fresh PostgreSQL; \(result.load.warmupSeconds) s warmup, then "
                + "\(result.load.durationSeconds) s measured; p50/p99 exact over every measured commit")
        table.notes.append(
            "verified rows per level, cluster's first shard read back / PostgreSQL's tables (each holds "
                + "\(result.load.rowsPerShardPerTxn) x txns): "
                + result.levels.map { level in
                    "\(Format.count(level.cluster.check.checkedRows)) / "
                        + "\(Format.count(level.postgres.rowsPerTable.reduce(0, +)))"
                }.joined(separator: ", "))
        if let goal = result.levels.first(where: { $0.clients == goalClients }), let ratio = goal.clusterOverPostgres {
            table.notes.append(
                "goal: cluster >= \(Format.fixed(goalRatio, 1))x PostgreSQL at \(goalClients) clients: "
                    + "\(Format.fixed(ratio, 2))x, \(ratio >= goalRatio ? "met" : "not met")")
        }
        table.print()
    }

    /// Writes `result` as pretty-printed JSON to `path` (read by tools/bench/plot_headline.py).
    static func writeJSON(_ result: Result, to path: String) throws(BenchError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        do {
            let data = try encoder.encode(result)
            try data.write(to: URL(fileURLWithPath: path), options: .atomic)
        } catch {
            throw BenchError("cannot write the JSON figures to \(path): \(error)")
        }
        print("figures written to \(path)")
    }
}
