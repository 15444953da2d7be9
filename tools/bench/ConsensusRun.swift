import Foundation
import PersistCore

/// The whole consensus benchmark: for each writer count, our backend and then (unless
/// skipped) PostgreSQL under the same load, and the comparison.
struct ConsensusRun {
    struct Settings {
        var backend: ConsensusBackendKind
        var writerCounts: [Int]
        var duration: Int
        var warmup: Int
        /// Parent of the run's scratch directory.
        var parentDirectory: String
        var keep: Bool
        var seed: UInt64
        var skipPostgres: Bool
        var postgresOverTCP: Bool
    }

    struct Level: Codable {
        var writers: Int
        var ours: ConsensusBench.LevelResult
        var postgres: PgbenchPeer.LevelResult?
    }

    struct Result: Codable {
        var bench = "consensus"
        var backend: ConsensusBackendKind
        var valueBytes: Int
        var durationSeconds: Int
        var warmupSeconds: Int
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

        let value = randomBytes(count: Self.valueBytes, seed: settings.seed)
        var peer: PgbenchPeer?
        var postgres: PostgresServer?
        defer { postgres?.stop() }
        if !settings.skipPostgres {
            let server = try PostgresServer.start(
                under: runDirectory, maxConnections: max(100, (settings.writerCounts.max() ?? 0) + 20),
                keepFiles: keep)
            postgres = server
            print(
                "PostgreSQL \(server.version) on 127.0.0.1:\(server.port) (socket \(server.socketDirectory)); "
                    + "fsync=on, synchronous_commit=on; pgbench connects over "
                    + (settings.postgresOverTCP ? "loopback TCP" : "the Unix socket"))
            let p = PgbenchPeer(
                server: server, value: value, workDirectory: runDirectory, useTCP: settings.postgresOverTCP)
            try p.createTable()
            peer = p
        }
        print("")

        var levels: [Level] = []
        for writers in settings.writerCounts {
            let keyPrefix = "L\(writers)"
            let backendDirectory = "\(runDirectory)/\(settings.backend.rawValue)-\(writers)"
            try System.makeDirectory(backendDirectory)
            print("\(writers) writer(s): \(settings.backend.displayName) ...", terminator: "")
            fflush(nil)
            let backend = try OpenedConsensus.open(settings.backend, directory: backendDirectory)
            let bench = ConsensusBench(
                writers: writers, warmup: .seconds(settings.warmup), duration: .seconds(settings.duration),
                value: value, keyPrefix: keyPrefix)
            let ours: ConsensusBench.LevelResult
            do {
                ours = try await bench.run(on: backend)
            } catch {
                await backend.close()
                throw error
            }
            await backend.close()
            print(" \(Format.rate(ours.casPerSecond)) CaS/s", terminator: "")
            var pg: PgbenchPeer.LevelResult?
            if let peer {
                print("; PostgreSQL ...", terminator: "")
                fflush(nil)
                pg = try peer.run(
                    writers: writers, warmup: settings.warmup, duration: settings.duration, keyPrefix: keyPrefix)
                print(" \(Format.rate(pg?.casPerSecond ?? 0)) CaS/s", terminator: "")
            }
            print("")
            levels.append(Level(writers: writers, ours: ours, postgres: pg))
        }
        print("")
        return Result(
            backend: settings.backend, valueBytes: Self.valueBytes, durationSeconds: settings.duration,
            warmupSeconds: settings.warmup, postgresVersion: postgres?.version, levels: levels)
    }

    static func report(_ result: Result) {
        let name = result.backend.displayName
        var ours = Table(
            "\(name): closed loop, one key and one CaS in flight per writer, \(result.valueBytes)-byte values, "
                + "\(result.durationSeconds) s per level after \(result.warmupSeconds) s warmup; latency in µs",
            headers: ["writers", "CaS/s", "p50", "p90", "p99", "max", "fsync/s", "CaS/fsync", "mismatches", "keys ok"],
            labelColumns: 0)
        for level in result.levels {
            let r = level.ours
            ours.add([
                "\(r.writers)", Format.rate(r.casPerSecond), LatencySummary.format(r.latency.p50),
                LatencySummary.format(r.latency.p90),
                LatencySummary.format(r.latency.p99), LatencySummary.format(r.latency.max),
                r.fsyncsPerSecond.map(Format.rate) ?? "-", r.casPerFsync.map { Format.fixed($0, 1) } ?? "-",
                Format.count(r.mismatches), "\(r.verifiedKeys)/\(r.writers)",
            ])
        }
        ours.notes.append(
            "latency is per iteration: one CaS, plus the truncation below the head after every "
                + "\(ConsensusBench.truncateEvery)th commit; keys ok = heads equal to the writer's last commit")
        switch result.backend {
        case .mem:
            ours.notes.append("mem does no I/O, so there are no fsync figures")
        case .log:
            ours.notes.append(
                "fsync/s and CaS/fsync come from LogConsensus.stats() over the measured window; one fsync is one "
                    + "group commit, shared by every CaS and truncation queued behind it")
        }
        ours.print()

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

            var comparison = Table(
                "\(name) / PostgreSQL", headers: ["writers", "ours CaS/s", "pg CaS/s", "ratio"], labelColumns: 0)
            for level in result.levels {
                comparison.add([
                    "\(level.writers)", Format.rate(level.ours.casPerSecond),
                    level.postgres.map { Format.rate($0.casPerSecond) } ?? "-",
                    Format.ratio(level.ours.casPerSecond, level.postgres?.casPerSecond),
                ])
            }
            comparison.print()
        }

        guard let low = result.levels.min(by: { $0.writers < $1.writers }),
            let high = result.levels.max(by: { $0.writers < $1.writers })
        else { return }
        if high.writers > low.writers {
            print(
                "scaling: \(name)@\(high.writers) / \(name)@\(low.writers) = "
                    + "\(Format.ratio(high.ours.casPerSecond, low.ours.casPerSecond)) (target >= 10x for 64 vs 1)")
        }
        if let pg = high.postgres {
            print(
                "versus PostgreSQL: \(name)@\(high.writers) / PostgreSQL@\(high.writers) = "
                    + "\(Format.ratio(high.ours.casPerSecond, pg.casPerSecond)) (target >= 2x at 64)")
        }
        print("")
    }
}
