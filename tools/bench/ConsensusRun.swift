import Foundation
import PersistCore
import PersistLocation

/// The whole consensus benchmark: for each writer count, every chosen backend in turn
/// (each on a fresh directory) and then, unless skipped, PostgreSQL under the same load;
/// then the tables and the ratios between them.
struct ConsensusRun {
    struct Settings {
        var backends: [ConsensusBackendKind]
        var writerCounts: [Int]
        var duration: Int
        var warmup: Int
        /// Parent of the run's scratch directory.
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
        var skipPostgres: Bool
        var postgresOverTCP: Bool
        var remoteConnections: RemoteConnections
        /// The PostgreSQL the `postgres` backend uses instead of the one this run starts.
        var postgresURL: String?
    }

    /// One backend's figures at one writer count.
    struct BackendLevel: Codable {
        var backend: ConsensusBackendKind
        var result: ConsensusBench.LevelResult
    }

    struct Level: Codable {
        var writers: Int
        var backends: [BackendLevel]
        var postgres: PgbenchPeer.LevelResult?
        /// Throughput ratios at this level, keyed like `remote/log` or `log/postgres`.
        var ratios: [String: Double]

        func result(_ kind: ConsensusBackendKind) -> ConsensusBench.LevelResult? {
            backends.first { $0.backend == kind }?.result
        }

        /// Fills `ratios` from the figures: each backend over PostgreSQL, and each remote
        /// backend over the in-process log engine.
        mutating func computeRatios() {
            var ratios: [String: Double] = [:]
            if let pg = postgres?.casPerSecond, pg > 0 {
                for b in backends { ratios["\(b.backend.rawValue)/postgres"] = b.result.casPerSecond / pg }
            }
            if let log = result(.log)?.casPerSecond, log > 0 {
                for b in backends where b.backend.isRemote {
                    ratios["\(b.backend.rawValue)/log"] = b.result.casPerSecond / log
                }
            }
            self.ratios = ratios
        }
    }

    struct Result: Codable {
        var bench = "consensus"
        var backends: [ConsensusBackendKind]
        var valueBytes: Int
        var durationSeconds: Int
        var warmupSeconds: Int
        /// The connection cap of the remote backends (one connection per writer below it).
        var remoteConnections: String
        var postgresVersion: String?
        var levels: [Level]
    }

    static let valueBytes = 1024

    var settings: Settings

    func run() async throws(BenchError) -> Result {
        let runDirectory = try System.makeScratchDirectory(
            under: settings.parentDirectory, prefix: "persist-bench-")
        let keep = settings.keep
        let dirToken = cleanup.register("remove \(runDirectory)") {
            if !keep { System.removeTree(runDirectory) }
        }
        defer { cleanup.run(dirToken) }
        print("scratch directory: \(runDirectory)\(keep ? " (kept)" : " (removed at the end)")")
        if settings.backends.contains(where: \.isRemote) {
            // Found before anything is measured, so a missing server fails at once.
            print(
                "consensus server: \(try OpenedConsensus.serverExecutable()), started per level on a fresh "
                    + "directory; RemoteConsensus uses \(settings.remoteConnections)")
        }

        let value = randomBytes(count: Self.valueBytes, seed: settings.seed)
        var peer: PgbenchPeer?
        var postgres: PostgresServer?
        defer { postgres?.stop() }
        let localPostgresBackend = settings.backends.contains(.postgres) && settings.postgresURL == nil
        if !settings.skipPostgres || localPostgresBackend {
            let server = try PostgresServer.start(
                under: runDirectory, maxConnections: max(100, 2 * (settings.writerCounts.max() ?? 0) + 20),
                keepFiles: keep)
            postgres = server
            print(
                "PostgreSQL \(server.version) on 127.0.0.1:\(server.port) (socket \(server.socketDirectory)); "
                    + "fsync=on, synchronous_commit=on; pgbench"
                    + (localPostgresBackend ? " and PostgresConsensus connect" : " connects") + " over "
                    + (settings.postgresOverTCP ? "loopback TCP" : "the Unix socket"))
            if !settings.skipPostgres {
                let p = PgbenchPeer(
                    server: server, value: value, workDirectory: runDirectory, useTCP: settings.postgresOverTCP)
                try p.createTable()
                peer = p
            }
        }
        if let url = settings.postgresURL, settings.backends.contains(.postgres) {
            print("PostgresConsensus uses \(PostgresLocation.redactingPassword(url)), with keys unique to this run")
        }
        print("")

        var levels: [Level] = []
        for writers in settings.writerCounts {
            let keyPrefix = "L\(writers)"
            print("\(writers) writer(s):", terminator: "")
            var results: [BackendLevel] = []
            for (index, kind) in settings.backends.enumerated() {
                print("\(index == 0 ? "" : ";") \(kind.displayName) ...", terminator: "")
                fflush(nil)
                let result = try await measure(
                    kind, writers: writers, directory: "\(runDirectory)/\(kind.rawValue)-\(writers)", value: value,
                    keyPrefix: keyPrefix, postgres: postgres)
                print(" \(Format.rate(result.casPerSecond)) CaS/s", terminator: "")
                results.append(BackendLevel(backend: kind, result: result))
            }
            var pg: PgbenchPeer.LevelResult?
            if let peer {
                print("; PostgreSQL ...", terminator: "")
                fflush(nil)
                pg = try peer.run(
                    writers: writers, warmup: settings.warmup, duration: settings.duration, keyPrefix: keyPrefix)
                print(" \(Format.rate(pg?.casPerSecond ?? 0)) CaS/s", terminator: "")
            }
            print("")
            var level = Level(writers: writers, backends: results, postgres: pg, ratios: [:])
            level.computeRatios()
            levels.append(level)
        }
        print("")
        return Result(
            backends: settings.backends, valueBytes: Self.valueBytes, durationSeconds: settings.duration,
            warmupSeconds: settings.warmup, remoteConnections: settings.remoteConnections.description,
            postgresVersion: postgres?.version, levels: levels)
    }

    /// Opens a fresh `kind` in `directory`, runs one level on it and closes it. The
    /// `postgres` backend gets a fresh database on `postgres` (the server this run
    /// started), or keys unique to this run on the `--postgres-url` server.
    private func measure(
        _ kind: ConsensusBackendKind, writers: Int, directory: String, value: [UInt8], keyPrefix: String,
        postgres: PostgresServer?
    ) async throws(BenchError) -> ConsensusBench.LevelResult {
        try System.makeDirectory(directory)
        let backend: OpenedConsensus
        var keyPrefix = keyPrefix
        if kind == .postgres {
            if let url = settings.postgresURL {
                keyPrefix += "-\(System.randomHex(6))"
                backend = try await OpenedConsensus.openPostgres(url: url, writers: writers)
            } else if let postgres {
                let database = "consensus_w\(writers)"
                try postgres.psql("CREATE DATABASE \(database)")
                backend = try await OpenedConsensus.openPostgres(
                    url: postgres.server.url(database: database, unixSocket: !settings.postgresOverTCP), writers: writers)
            } else {
                throw BenchError("the postgres backend needs a PostgreSQL server (none was started)")
            }
        } else {
            backend = try OpenedConsensus.open(
                kind, directory: directory, writers: writers, remoteConnections: settings.remoteConnections)
        }
        let bench = ConsensusBench(
            writers: writers, warmup: .seconds(settings.warmup), duration: .seconds(settings.duration),
            value: value, keyPrefix: keyPrefix)
        let result: ConsensusBench.LevelResult
        do {
            result = try await bench.run(on: backend)
        } catch {
            // The measurement's failure is the one to report; a failed close only adds to it.
            do {
                try await backend.close()
            } catch let closeError {
                throw BenchError("\(error)\n(and closing \(kind.rawValue) failed too: \(closeError))")
            }
            throw error
        }
        try await backend.close()
        return result
    }

    static func report(_ result: Result) {
        for kind in result.backends {
            reportBackend(kind, result)
        }

        let pgLevels = result.levels.compactMap(\.postgres)
        if !pgLevels.isEmpty {
            var pg = Table(
                "PostgreSQL \(result.postgresVersion ?? "") via pgbench -M prepared: the same load as one "
                    + "conditional INSERT ... SELECT ... ON CONFLICT DO NOTHING per CaS; latency in µs",
                headers: [
                    "writers", "CaS/s", "p50", "p90", "p99", "max", "committed", "mismatches", "failed", "rows left",
                ],
                labelColumns: 0)
            for r in pgLevels {
                pg.add([
                    "\(r.writers)", Format.rate(r.casPerSecond), LatencySummary.format(r.latency.p50),
                    LatencySummary.format(r.latency.p90), LatencySummary.format(r.latency.p99),
                    LatencySummary.format(r.latency.max),
                    Format.count(r.committed), Format.count(r.mismatches), Format.count(r.failedTransactions),
                    Format.count(r.rowsLeft),
                ])
            }
            pg.notes.append(
                "committed = sum over shards of (greatest seqno + 1), read back with psql; it equals pgbench's "
                    + "transaction count when every CaS committed, which also shows the per-client seqno variable "
                    + "persisted across transactions")
            pg.print()
        }

        if result.backends.count > 1 || !pgLevels.isEmpty {
            reportComparison(result, withPostgres: !pgLevels.isEmpty)
        }
        reportHeadlines(result)
    }

    /// One backend's own table: throughput, latency, group commit, verification.
    private static func reportBackend(_ kind: ConsensusBackendKind, _ result: Result) {
        var table = Table(
            "\(kind.displayName): closed loop, one key and one CaS in flight per writer, \(result.valueBytes)-byte "
                + "values, \(result.durationSeconds) s per level after \(result.warmupSeconds) s warmup; latency in µs",
            headers: ["writers", "CaS/s", "p50", "p90", "p99", "max", "fsync/s", "CaS/fsync", "mismatches", "keys ok"],
            labelColumns: 0)
        for level in result.levels {
            guard let r = level.result(kind) else { continue }
            table.add([
                "\(r.writers)", Format.rate(r.casPerSecond), LatencySummary.format(r.latency.p50),
                LatencySummary.format(r.latency.p90),
                LatencySummary.format(r.latency.p99), LatencySummary.format(r.latency.max),
                r.fsyncsPerSecond.map(Format.rate) ?? "-", r.casPerFsync.map { Format.fixed($0, 1) } ?? "-",
                Format.count(r.mismatches), "\(r.verifiedKeys)/\(r.writers)",
            ])
        }
        table.notes.append(
            "latency is per iteration: one CaS, plus the truncation below the head after every "
                + "\(ConsensusBench.truncateEvery)th commit; keys ok = heads equal to the writer's last commit")
        switch kind {
        case .mem:
            table.notes.append("mem does no I/O, so there are no fsync figures")
        case .log:
            table.notes.append(
                "fsync/s and CaS/fsync come from LogConsensus.stats() over the measured window; one fsync is one "
                    + "group commit, shared by every CaS and truncation queued behind it")
        case .remote, .remoteUnix:
            table.notes.append(
                "a consensus server process (LogConsensus behind the RPC) on a fresh directory per level, reached "
                    + (kind == .remote ? "over loopback TCP" : "over a Unix socket") + " by a client with "
                    + "\(result.remoteConnections); its fsyncs happen in the server, so there are no fsync figures here")
        case .postgres:
            table.notes.append(
                "PostgresConsensus over a postgres-nio pool (one connection per writer, at most "
                    + "\(OpenedConsensus.maxConnections)): the pgbench peer's statements, each compare-and-set in an "
                    + "explicit serializable transaction (three round trips); on the server this run started, a fresh "
                    + "database per level (or the --postgres-url server); its fsyncs happen in the server")
        }
        table.print()
    }

    /// Every backend and PostgreSQL side by side per writer count, with the ratios.
    private static func reportComparison(_ result: Result, withPostgres: Bool) {
        let kinds = result.backends
        let remoteOverLog = result.backends.contains(.log) ? kinds.filter(\.isRemote) : []
        var headers = ["writers"] + kinds.map { "\($0.rawValue) CaS/s" }
        if withPostgres { headers += ["pg CaS/s"] + kinds.map { "\($0.rawValue)/pg" } }
        headers += remoteOverLog.map { "\($0.rawValue)/log" }
        var table = Table("CaS/s side by side, and ratios", headers: headers, labelColumns: 0)
        for level in result.levels {
            var row = ["\(level.writers)"]
            row += kinds.map { k in level.result(k).map { Format.rate($0.casPerSecond) } ?? "-" }
            if withPostgres {
                row.append(level.postgres.map { Format.rate($0.casPerSecond) } ?? "-")
                row += kinds.map { k in
                    Format.ratio(level.result(k)?.casPerSecond, level.postgres?.casPerSecond)
                }
            }
            row += remoteOverLog.map { k in
                Format.ratio(level.result(k)?.casPerSecond, level.result(.log)?.casPerSecond)
            }
            table.add(row)
        }
        table.print()
    }

    /// The summary lines under the tables, at the highest writer count measured.
    private static func reportHeadlines(_ result: Result) {
        guard let low = result.levels.min(by: { $0.writers < $1.writers }),
            let high = result.levels.max(by: { $0.writers < $1.writers })
        else { return }
        let n = high.writers
        if n > low.writers {
            for kind in result.backends {
                let name = kind.displayName
                print(
                    "scaling: \(name)@\(n) / \(name)@\(low.writers) = "
                        + "\(Format.ratio(high.result(kind)?.casPerSecond, low.result(kind)?.casPerSecond)) "
                        + "(target >= 10x for 64 vs 1)")
            }
        }
        if let log = high.result(.log)?.casPerSecond, log > 0 {
            for kind in result.backends where kind.isRemote {
                let remote = high.result(kind)?.casPerSecond ?? 0
                print(
                    "network path: \(kind.rawValue)@\(n) / log@\(n) = \(Format.fixed(remote / log, 2)) "
                        + "(target >= 0.70 at 64)")
            }
        }
        if let pg = high.postgres {
            // The remote backends first: theirs is the figure the target is about.
            for kind in result.backends.filter(\.isRemote) + result.backends.filter({ !$0.isRemote }) {
                print(
                    "versus PostgreSQL: \(kind.rawValue)@\(n) / PostgreSQL@\(n) = "
                        + "\(Format.ratio(high.result(kind)?.casPerSecond, pg.casPerSecond)) (target >= 2x)")
            }
        }
        print("")
    }
}
