import Foundation
import TxnClient

/// Commits per second and commit latency of a `txn-coordinator` process, seen by N
/// concurrent clients over its RPC, with group commit on and then off.
///
/// Each mode gets a fresh coordinator on a fresh directory (FileBlob and LogConsensus,
/// so every durable step pays a real fsync). Each client count runs `CoordinatorLoad` on
/// four data shards of its own: N tasks in closed loops of `commit()`, every transaction
/// writing ten rows with 100-byte values to each of the four shards. Timestamps the
/// coordinator hands back are collected: commits that share one were made durable by the
/// same compare-and-set on the txns shard, so commits per distinct timestamp is the
/// effective group size. After each level its first data shard is read back and must hold
/// exactly the rows committed to it.
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

    struct ModeResult: Codable {
        var groupCommit: Bool
        var levels: [CoordinatorLoad.LevelResult]
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
        /// The transaction's shape and the seconds per level.
        var load: CoordinatorLoad.Shape
        var modes: [ModeResult]
        var comparison: [Comparison]
    }

    var settings: Settings

    /// Connections of each TxnClient the clients commit through.
    var connectionsPerClient: Int {
        settings.clientPerTask
            ? CoordinatorLoad.perTaskConnections : TxnClient.Configuration(endpoint: .unix(path: "/")).connections
    }

    func run() async throws(BenchError) -> Result {
        let scratch = try ScratchRun(under: settings.parentDirectory, keep: settings.keep)
        defer { scratch.finish() }
        let runDirectory = scratch.path
        print(
            "coordinator: \(try CoordinatorProcess.executable()), a fresh process per mode over "
                + (settings.tcp ? "loopback TCP" : "a Unix socket") + "; clients: "
                + (settings.clientPerTask
                    ? "a TxnClient per task (\(CoordinatorLoad.perTaskConnections) connection each)"
                    : "one TxnClient (\(connectionsPerClient) connections) shared by every task"))
        print("")

        let load = CoordinatorLoad(
            duration: settings.duration, warmup: settings.warmup, clientPerTask: settings.clientPerTask,
            seed: settings.seed)

        var modes: [ModeResult] = []
        for groupCommit in [true, false] {
            let directory = "\(runDirectory)/group-commit-\(groupCommit ? "on" : "off")"
            try System.makeDirectory(directory)
            modes.append(try await runMode(groupCommit: groupCommit, directory: directory, load: load))
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
            connectionsPerClient: connectionsPerClient, load: load.shape, modes: modes, comparison: comparison)
    }

    // MARK: One mode

    /// Starts a coordinator for the mode, measures every client count on it, verifies,
    /// and stops it (requiring a clean exit), also stopping it when anything fails.
    private func runMode(groupCommit: Bool, directory: String, load: CoordinatorLoad) async throws(BenchError)
        -> ModeResult
    {
        print("group commit \(groupCommit ? "on" : "off"):", terminator: "")
        fflush(nil)
        let process = try CoordinatorProcess.start(directory: directory, groupCommit: groupCommit, tcp: settings.tcp)
        let client = TxnClient(.init(endpoint: process.endpoint))
        let result: ModeResult
        do {
            result = try await measureMode(groupCommit: groupCommit, client: client, load: load)
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

    private func measureMode(groupCommit: Bool, client: TxnClient, load: CoordinatorLoad) async throws(BenchError)
        -> ModeResult
    {
        var levels: [CoordinatorLoad.LevelResult] = []
        for (index, clients) in settings.clientCounts.enumerated() {
            print("\(index == 0 ? "" : ";") \(clients) client\(clients == 1 ? "" : "s") ...", terminator: "")
            fflush(nil)
            let shards = try await load.createShards(client: client, level: clients)
            let level = try await load.measureLevel(clients: clients, shared: client, shards: shards)
            print(" \(Format.rate(level.commitsPerSecond)) commits/s, verified", terminator: "")
            fflush(nil)
            levels.append(level)
        }
        print("")
        return ModeResult(groupCommit: groupCommit, levels: levels)
    }

    // MARK: Report

    static func report(_ result: Result) {
        let transport = result.transport == "tcp" ? "loopback TCP" : "a Unix socket"
        let clientsText =
            result.clientPerTask
            ? "a TxnClient per task (\(result.connectionsPerClient) connection each)"
            : "one TxnClient (\(result.connectionsPerClient) connections) shared by all tasks"
        for mode in result.modes {
            var table = Table(
                "txn-coordinator, group commit \(mode.groupCommit ? "on" : "off"): N clients in closed loops of "
                    + "commit(), each txn \(result.load.rowsPerShardPerTxn) rows (\(result.load.valueBytes)-byte values) on each "
                    + "of \(result.load.dataShards) data shards; latency in ms",
                headers: ["clients", "commits/s", "rows/s", "p50", "p90", "p99", "max", "commits/ts", "verified rows"])
            for level in mode.levels {
                let latency = level.latency
                table.add([
                    Format.count(level.clients), Format.rate(level.commitsPerSecond),
                    Format.rate(level.rowsPerSecond), Format.millis(latency.p50), Format.millis(latency.p90),
                    Format.millis(latency.p99), Format.millis(latency.max), Format.fixed(level.commitsPerTimestamp, 2),
                    level.check.verified ? Format.count(level.check.checkedRows) : "WRONG",
                ])
            }
            table.notes.append(
                "a fresh coordinator (FileBlob + LogConsensus, real fsyncs) over \(transport); \(clientsText); "
                    + "\(result.load.warmupSeconds) s warmup, then \(result.load.durationSeconds) s measured per level")
            table.notes.append(
                "rows/s = commits/s x \(result.load.rowsPerShardPerTxn * result.load.dataShards); commits/ts = measured commits "
                    + "per distinct commit timestamp (the mean commit group)")
            table.notes.append(
                "each level has 4 fresh data shards; verified rows: its first shard, read at the level's newest "
                    + "acknowledged commit timestamp, holds exactly the rows committed to it (warmup included), "
                    + "each key once")
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
