import Foundation

/// The headline benchmark's transaction on PostgreSQL: `CoordinatorLoad`'s shape, one
/// table per data shard, driven by `pgbench` with a custom script.
///
/// Each table is `(k text PRIMARY KEY, v bytea NOT NULL)`. One pgbench transaction is
/// `BEGIN`, one ten-row `INSERT` into each of the four tables, `COMMIT`. A row's key is
/// built the way the cluster's are, `<prefix><clients>/c<client_id>/s<seq>/r<row>`, where
/// `seq` is a pgbench variable each client carries from one transaction to the next (set
/// to 0 with `-D`), so no two transactions share a key; its value is one of the same
/// seeded 100-byte values. Afterwards every table must hold exactly ten rows of the
/// measured run per transaction pgbench reported.
struct PgbenchCommitPeer {
    struct LevelResult: Codable, Sendable {
        var clients: Int
        var seconds: Int
        /// Transactions pgbench completed in the measured run.
        var transactions: Int
        /// pgbench's own rate, excluding connection set-up.
        var commitsPerSecond: Double
        /// Per transaction, in microseconds (exact percentiles from pgbench's log).
        var latency: LatencySummary
        var failedTransactions: Int
        /// Rows of the measured run found in each table afterwards.
        var rowsPerTable: [Int]
        var verified: Bool
    }

    static let tables = CoordinatorLoad.dataShards
    static let rowsPerTable = CoordinatorLoad.rowsPerShard

    let server: PostgresServer
    /// The seeded values, as `CoordinatorLoad` makes them.
    let values: [[UInt8]]
    /// Where scripts and per-transaction logs go.
    let workDirectory: String

    static func tableName(_ index: Int) -> String { "headline_\(index)" }

    /// Starts a fresh PostgreSQL under `directory`, runs one level on it and stops it (also
    /// when anything fails). Blocks the calling thread throughout.
    static func measure(
        clients: Int, warmup: Int, duration: Int, values: [[UInt8]], directory: String, keep: Bool
    ) throws(BenchError) -> (version: String, result: LevelResult) {
        let server = try PostgresServer.start(under: directory, maxConnections: max(100, clients + 20), keepFiles: keep)
        defer { server.stop() }
        let peer = PgbenchCommitPeer(server: server, values: values, workDirectory: directory)
        try peer.createTables()
        return (server.version, try peer.run(clients: clients, warmup: warmup, duration: duration))
    }

    func createTables() throws(BenchError) {
        for index in 0..<Self.tables {
            try server.psql("CREATE TABLE \(Self.tableName(index)) (k text PRIMARY KEY, v bytea NOT NULL)")
        }
    }

    /// Runs `clients` clients for `warmup` seconds (keys under `W<clients>/`), then for
    /// `duration` seconds (keys under `L<clients>/`), and checks the tables.
    func run(clients: Int, warmup: Int, duration: Int) throws(BenchError) -> LevelResult {
        if warmup > 0 {
            let script = "\(workDirectory)/warmup.sql"
            try Pgbench.writeScript(Self.script(keyPrefix: "W\(clients)", values: values), to: script)
            _ = try Pgbench.run(
                server, clients: clients, seconds: warmup, script: script, logPrefix: nil, tcp: false,
                defines: ["seq": 0])
        }
        let keyPrefix = "L\(clients)"
        let script = "\(workDirectory)/commit.sql"
        try Pgbench.writeScript(Self.script(keyPrefix: keyPrefix, values: values), to: script)
        let output = try Pgbench.run(
            server, clients: clients, seconds: duration, script: script, logPrefix: "\(workDirectory)/tx", tcp: false,
            defines: ["seq": 0])
        let summary = try Pgbench.summary(output)
        let latencies = try Pgbench.latencies(directory: workDirectory, prefix: "tx")
        let rows = try rowsPerTable(keyPrefix: keyPrefix)
        let expected = summary.transactions * Self.rowsPerTable
        guard summary.transactions > 0, summary.failed == 0, rows.allSatisfy({ $0 == expected }) else {
            throw BenchError(
                "verification failed: pgbench reported \(summary.transactions) transactions (\(summary.failed) "
                    + "failed), so each table should hold \(expected) rows of the run, but they hold "
                    + rows.map(String.init).joined(separator: ", "))
        }
        return LevelResult(
            clients: clients, seconds: duration, transactions: summary.transactions, commitsPerSecond: summary.tps,
            latency: LatencySummary(exactNanoseconds: latencies), failedTransactions: summary.failed,
            rowsPerTable: rows, verified: true)
    }

    /// The pgbench script: one transaction writing `rowsPerTable` rows to every table.
    static func script(keyPrefix: String, values: [[UInt8]]) -> String {
        var lines = [
            "-- One commit: \(rowsPerTable) rows into each of \(tables) tables. `seq` is this client's",
            "-- transaction number; it survives from one transaction to the next.",
            "\\set seq :seq + 1",
            "BEGIN;",
        ]
        for table in 0..<tables {
            lines.append("INSERT INTO \(tableName(table)) (k, v) VALUES")
            for row in 0..<rowsPerTable {
                let pick = CoordinatorLoad.valueIndex(
                    task: 0, seq: 0, shardIndex: table, row: row, poolSize: values.count)
                let key = "'\(keyPrefix)/c' || :client_id || '/s' || :seq || '/r\(row)'"
                let end = row == rowsPerTable - 1 ? ";" : ","
                lines.append("    (\(key), \(Pgbench.byteaLiteral(values[pick])))\(end)")
            }
        }
        lines.append("COMMIT;")
        return lines.joined(separator: "\n") + "\n"
    }

    /// How many rows with keys under `<keyPrefix>/` each table holds.
    private func rowsPerTable(keyPrefix: String) throws(BenchError) -> [Int] {
        let counts = (0..<Self.tables).map { "(SELECT count(*) FROM \(Self.tableName($0)) WHERE k LIKE '\(keyPrefix)/%')" }
        let output = try server.psql("SELECT " + counts.joined(separator: ", "))
        let fields = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").compactMap { Int($0) }
        guard fields.count == Self.tables else {
            throw BenchError("cannot read the verification query's answer: \(output)")
        }
        return fields
    }
}
