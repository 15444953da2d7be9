import Foundation

/// The same closed-loop CaS load as `ConsensusBench`, against PostgreSQL, driven by
/// `pgbench` with a custom script.
///
/// Each pgbench client is one writer with its own shard key (from `:client_id`). Its
/// next sequence number lives in the pgbench variable `next`, which pgbench keeps per
/// client across transactions (started at 0 with `-D next=0`); `verify` checks that it
/// really did. The CaS is one statement, a conditional `INSERT ... SELECT` that inserts
/// only when the shard's greatest sequence number is the expected one (or, for the first
/// write, when the shard has no rows), with `ON CONFLICT DO NOTHING` so a lost race
/// inserts nothing instead of failing (spec/persist.md §2.5). A CaS that inserted
/// nothing is a mismatch: the client then reads the head and continues from it. After
/// every 64th commit the client deletes its rows below the newest one, as
/// `Consensus.truncate` does (only when a row at or above the cut exists).
struct PgbenchPeer {
    struct LevelResult: Codable {
        var writers: Int
        var seconds: Int
        /// Transactions pgbench completed; each ran exactly one CaS.
        var transactions: Int
        /// pgbench's own rate, excluding connection set-up.
        var casPerSecond: Double
        var latency: LatencySummary
        var failedTransactions: Int
        /// Shards with rows after the run, rows left in them, and commits they took in all
        /// (greatest sequence number + 1, summed).
        var shards: Int
        var rowsLeft: Int
        var committed: Int
        /// Transactions that did not commit (`transactions - committed`).
        var mismatches: Int
    }

    var server: PostgresServer
    var value: [UInt8]
    /// Where scripts and per-transaction logs go.
    var workDirectory: String
    var useTCP: Bool

    /// Creates the consensus table (spec/persist.md §2.5).
    func createTable() throws(BenchError) {
        try server.psql(
            """
            CREATE TABLE IF NOT EXISTS consensus (
                shard text NOT NULL,
                sequence_number bigint NOT NULL,
                data bytea NOT NULL,
                PRIMARY KEY (shard, sequence_number))
            """)
    }

    /// Runs `writers` clients for `warmup` seconds on throwaway shards, then for
    /// `duration` seconds on the shards named `<keyPrefix>-w<client>`, and checks the
    /// table afterwards.
    func run(writers: Int, warmup: Int, duration: Int, keyPrefix: String) throws(BenchError) -> LevelResult {
        let levelDirectory = "\(workDirectory)/pgbench-\(keyPrefix)"
        try System.makeDirectory(levelDirectory)
        if warmup > 0 {
            let script = "\(levelDirectory)/warmup.sql"
            try Pgbench.writeScript(Self.script(keyPrefix: "warmup-\(keyPrefix)", value: value), to: script)
            _ = try pgbench(writers: writers, seconds: warmup, script: script, logPrefix: nil)
        }
        let script = "\(levelDirectory)/cas.sql"
        try Pgbench.writeScript(Self.script(keyPrefix: keyPrefix, value: value), to: script)
        let output = try pgbench(writers: writers, seconds: duration, script: script, logPrefix: "\(levelDirectory)/tx")
        let summary = try Pgbench.summary(output)
        let latencies = try Pgbench.latencies(directory: levelDirectory, prefix: "tx")

        let check = try verify(keyPrefix: keyPrefix, writers: writers, transactions: summary.transactions)
        return LevelResult(
            writers: writers, seconds: duration, transactions: summary.transactions, casPerSecond: summary.tps,
            latency: LatencySummary(exactNanoseconds: latencies), failedTransactions: summary.failed,
            shards: check.shards, rowsLeft: check.rows, committed: check.committed,
            mismatches: summary.transactions - check.committed)
    }

    /// The pgbench script for shards `<keyPrefix>-w<client_id>`.
    static func script(keyPrefix: String, value: [UInt8]) -> String {
        let shard = "'\(keyPrefix)-w' || :client_id"
        let data = Pgbench.byteaLiteral(value)
        // pgbench lets an SQL command span lines; it ends at `;` or at a `\gset`.
        return """
            -- One compare-and-set per transaction. `next` is this client's next sequence
            -- number and survives from one transaction to the next.
            \\if :next = 0
            WITH cas AS (
                INSERT INTO consensus (shard, sequence_number, data)
                SELECT \(shard), 0, \(data)
                WHERE NOT EXISTS (SELECT 1 FROM consensus WHERE shard = \(shard))
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT count(*) AS committed FROM cas \\gset
            \\else
            \\set expected :next - 1
            WITH cas AS (
                INSERT INTO consensus (shard, sequence_number, data)
                SELECT \(shard), :next, \(data)
                WHERE (SELECT max(sequence_number) FROM consensus WHERE shard = \(shard)) = :expected
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT count(*) AS committed FROM cas \\gset
            \\endif
            \\if :committed = 1
            \\set next :next + 1
            \\if :next % \(ConsensusBench.truncateEvery) = 0
            \\set keep :next - 1
            DELETE FROM consensus
            WHERE shard = \(shard) AND sequence_number < :keep
                AND EXISTS (SELECT 1 FROM consensus WHERE shard = \(shard) AND sequence_number >= :keep);
            \\endif
            \\else
            SELECT coalesce(max(sequence_number), -1) + 1 AS next FROM consensus WHERE shard = \(shard) \\gset
            \\endif

            """
    }

    private func pgbench(writers: Int, seconds: Int, script: String, logPrefix: String?) throws(BenchError) -> String {
        try Pgbench.run(
            server, clients: writers, seconds: seconds, script: script, logPrefix: logPrefix, tcp: useTCP,
            defines: ["next": 0])
    }

    /// Every shard of this level must exist, and the commits recorded in the table must
    /// account for pgbench's transactions; otherwise the figures are not trustworthy.
    private func verify(
        keyPrefix: String, writers: Int, transactions: Int
    ) throws(BenchError) -> (shards: Int, rows: Int, committed: Int) {
        let output = try server.psql(
            """
            SELECT count(*), coalesce(sum(head + 1), 0), coalesce(sum(rows), 0)
            FROM (SELECT max(sequence_number) AS head, count(*) AS rows
                  FROM consensus WHERE shard LIKE '\(keyPrefix)-w%' GROUP BY shard) AS per_shard
            """)
        let fields = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").compactMap {
            Int($0)
        }
        guard fields.count == 3 else { throw BenchError("cannot read the verification query's answer: \(output)") }
        let (shards, committed, rows) = (fields[0], fields[1], fields[2])
        guard shards == writers else {
            throw BenchError("verification failed: \(shards) shards have rows, expected one per client (\(writers))")
        }
        guard committed <= transactions else {
            throw BenchError(
                "verification failed: the table shows \(committed) commits but pgbench ran only \(transactions)")
        }
        if transactions > writers && committed == writers {
            throw BenchError(
                "verification failed: every shard holds only seqno 0, so the per-client seqno variable "
                    + "did not survive between transactions")
        }
        return (shards, rows, committed)
    }
}
