import Foundation
import PersistConformance

/// The coordinator's multi-shard commits/s and commit latency with its consensus state in
/// PostgreSQL (`PostgresConsensus`) beside the same coordinator on our `consensus`
/// server, at N concurrent clients. Blob is the blob-store in both.
///
/// The load is the headline's (`CoordinatorLoad`: ten 100-byte rows to each of four data
/// shards per transaction, closed loops of `commit()` through one shared TxnClient).
/// Each level first runs a fresh `LocalCluster` with its consensus server, then a fresh
/// PostgreSQL 15 (initdb in the scratch directory, fsync and synchronous_commit on) and a
/// fresh blob-store and coordinator whose `--consensus` is that server's `postgres://`
/// URL over its Unix socket; PostgreSQL is stopped before the next level. Each run's
/// first data shard is read back and checked.
struct PgConsensusBench {
    struct Level: Codable, Sendable {
        var clients: Int
        var consensusServer: CoordinatorLoad.LevelResult
        var postgres: CoordinatorLoad.LevelResult
        /// Commits/s on PostgreSQL over commits/s on the consensus server.
        var postgresOverServer: Double?
    }

    struct Result: Codable, Sendable {
        var bench = "pg-consensus"
        var load: CoordinatorLoad.Shape
        var cpus: Int
        var postgresVersion: String
        var poolConnections: Int
        var levels: [Level]
    }

    /// Client counts, seconds and scratch directory, as the headline takes them.
    var settings: HeadlineBench.Settings
    /// The coordinator's PostgreSQL pool size (`max_connections` in its URL).
    var poolConnections: Int

    /// The database the coordinator's consensus table goes in.
    static let database = "txnwal"

    func run() async throws(BenchError) -> Result {
        let scratch = try ScratchRun(under: settings.parentDirectory, keep: settings.keep)
        defer { scratch.finish() }
        let runDirectory = scratch.path
        let binaries = try PostgresServer.locateBinaries()
        print(
            "coordinator: \(try CoordinatorProcess.executable()) with blob on "
                + "\(try System.siblingExecutable("blob-store", neededBy: "the pg-consensus benchmark")) and consensus on "
                + "\(try OpenedConsensus.serverExecutable()), then on PostgreSQL (\(binaries.serverDirectory), "
                + "a fresh server per level, pool of \(poolConnections) connections over its Unix socket)")
        print("")

        let load = CoordinatorLoad(
            duration: settings.duration, warmup: settings.warmup, clientPerTask: false, seed: settings.seed)
        var levels: [Level] = []
        var postgresVersion = "unknown"
        for clients in settings.clientCounts {
            let directory = "\(runDirectory)/c\(clients)"
            try System.makeDirectory(directory)
            print("\(clients) client\(clients == 1 ? "" : "s"): consensus server ...", terminator: "")
            fflush(nil)
            let server = try await LocalCluster.measure(
                clients: clients, load: load, directory: "\(directory)/consensus-server")
            print(" \(Format.rate(server.commitsPerSecond)) commits/s; PostgreSQL ...", terminator: "")
            fflush(nil)
            let (version, postgres) = try await measurePostgres(clients: clients, load: load, directory: directory)
            postgresVersion = version
            print(" \(Format.rate(postgres.commitsPerSecond)) commits/s")
            let ratio = server.commitsPerSecond > 0 ? postgres.commitsPerSecond / server.commitsPerSecond : nil
            levels.append(Level(clients: clients, consensusServer: server, postgres: postgres, postgresOverServer: ratio))
        }
        print("")
        return Result(
            load: load.shape, cpus: ProcessInfo.processInfo.activeProcessorCount, postgresVersion: postgresVersion,
            poolConnections: poolConnections, levels: levels)
    }

    /// One level with consensus on a fresh PostgreSQL, stopped (and removed) afterwards.
    private func measurePostgres(
        clients: Int, load: CoordinatorLoad, directory: String
    ) async throws(BenchError) -> (String, CoordinatorLoad.LevelResult) {
        let (pool, keep) = (poolConnections, settings.keep)
        let postgres: PostgresServer
        do {
            postgres = try await SpawnedServer.offThread { () throws -> PostgresServer in
                let server = try PostgresServer.start(under: directory, maxConnections: pool + 8, keepFiles: keep)
                do {
                    try server.psql("CREATE DATABASE \(Self.database)")
                } catch {
                    server.stop()
                    throw error
                }
                return server
            }
        } catch let error as BenchError {
            throw error
        } catch {
            throw BenchError("PostgreSQL did not start: \(error)")
        }
        defer { postgres.stop() }
        let url = postgres.server.url(
            database: Self.database, unixSocket: true, parameters: "max_connections=\(pool)")
        let result = try await LocalCluster.measure(
            clients: clients, load: load, directory: "\(directory)/postgres-cluster",
            consensus: .postgres(url: url, environment: [:]))
        return (postgres.version, result)
    }

    // MARK: Report

    static func report(_ result: Result) {
        var table = Table(
            "Coordinator commits with consensus on our consensus server vs on PostgreSQL \(result.postgresVersion); "
                + "each txn \(result.load.rowsPerShardPerTxn) rows (\(result.load.valueBytes)-byte values) on each of "
                + "\(result.load.dataShards) shards; latency in ms",
            headers: [
                "clients", "server commits/s", "p50", "p99", "PostgreSQL commits/s", "p50", "p99", "PostgreSQL/server",
            ])
        for level in result.levels {
            table.add(
                [Format.count(level.clients)] + CoordinatorLoad.cells(level.consensusServer)
                    + CoordinatorLoad.cells(level.postgres)
                    + [Format.ratio(level.postgres.commitsPerSecond, level.consensusServer.commitsPerSecond)])
        }
        table.notes.append(
            "both: blob-store + txn-coordinator processes over Unix sockets, N tasks sharing one TxnClient, commit() "
                + "without a timestamp (group commit); server: + a consensus process (LogConsensus, group-committed "
                + "fsyncs); PostgreSQL: PostgresConsensus (postgres-nio pool of \(result.poolConnections), "
                + "compare-and-set in a serializable transaction) on a fresh server with fsync=on, synchronous_commit=on")
        table.notes.append(
            "commits per txns-shard CaS, server / PostgreSQL: "
                + result.levels.map {
                    "\(Format.fixed($0.consensusServer.commitsPerTimestamp, 1)) / \(Format.fixed($0.postgres.commitsPerTimestamp, 1))"
                }.joined(separator: ", "))
        table.notes.append(
            "each level: a fresh cluster on the consensus server, then a fresh PostgreSQL and cluster; "
                + "\(result.load.warmupSeconds) s warmup, then \(result.load.durationSeconds) s measured; "
                + "p50/p99 exact over every measured commit; first shard read back and checked: "
                + result.levels.map {
                    "\(Format.count($0.consensusServer.check.checkedRows)) / \(Format.count($0.postgres.check.checkedRows)) rows"
                }.joined(separator: ", "))
        table.print()
    }
}
