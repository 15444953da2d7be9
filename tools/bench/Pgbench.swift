import Foundation

/// Running `pgbench` against a `PostgresServer` and reading what it reports, shared by the
/// PostgreSQL peers of the consensus and headline benchmarks.
enum Pgbench {
    /// What a run's summary says.
    struct Summary {
        /// Transactions completed ("number of transactions actually processed").
        var transactions: Int
        /// pgbench's own rate, excluding connection set-up.
        var tps: Double
        var failed: Int
    }

    /// Runs `script` with `clients` connections for `seconds` in prepared mode (`-M
    /// prepared`, no vacuum), with `-D` variables `defines`, writing a per-transaction log
    /// `<logPrefix>.<pid>[.<thread>]` when `logPrefix` is given. Returns pgbench's output.
    /// Blocks the calling thread for the whole run.
    static func run(
        _ server: PostgresServer, clients: Int, seconds: Int, script: String, logPrefix: String?, tcp: Bool,
        defines: [String: Int] = [:]
    ) throws(BenchError) -> String {
        var arguments = server.connectionArguments(tcp: tcp)
        arguments += [
            "-n", "-M", "prepared", "-c", "\(clients)", "-j", "\(min(clients, 2))", "-T", "\(seconds)", "-f", script,
        ]
        for (name, value) in defines.sorted(by: { $0.key < $1.key }) { arguments += ["-D", "\(name)=\(value)"] }
        if let logPrefix { arguments += ["-l", "--log-prefix=\(logPrefix)"] }
        arguments.append("postgres")
        return try Subprocess.check(server.binaries.pgbench, arguments, what: "pgbench")
    }

    /// Reads the transaction count, rate and failures from pgbench's summary.
    static func summary(_ output: String) throws(BenchError) -> Summary {
        guard let transactions = integer(after: "number of transactions actually processed:", in: output),
            let tps = double(after: "tps =", in: output)
        else {
            throw BenchError("cannot read pgbench's summary:\n\(output)")
        }
        return Summary(
            transactions: transactions, tps: tps,
            failed: integer(after: "number of failed transactions:", in: output) ?? 0)
    }

    /// The latency of every successful transaction, in nanoseconds, from the
    /// per-transaction logs `<prefix>.<pid>` and `<prefix>.<pid>.<thread>` in `directory`
    /// (the third field of each line, in microseconds).
    static func latencies(directory: String, prefix: String) throws(BenchError) -> [UInt64] {
        let files: [String]
        do {
            files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasPrefix(prefix + ".") }
        } catch {
            throw BenchError("cannot list \(directory): \(error)")
        }
        guard !files.isEmpty else { throw BenchError("pgbench wrote no transaction log in \(directory)") }
        var samples: [UInt64] = []
        for file in files {
            guard let text = try? String(contentsOfFile: "\(directory)/\(file)", encoding: .utf8) else {
                throw BenchError("cannot read \(directory)/\(file)")
            }
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ", maxSplits: 3)
                // Failed or skipped transactions have a word instead of a latency.
                if fields.count >= 3, let micros = UInt64(fields[2]) { samples.append(micros * 1000) }
            }
        }
        return samples
    }

    /// A bytea literal of `bytes` in hex form: `'\x0a1b...'::bytea`.
    static func byteaLiteral(_ bytes: [UInt8]) -> String {
        "'\\x" + bytes.map { byte in (byte < 16 ? "0" : "") + String(byte, radix: 16) }.joined() + "'::bytea"
    }

    static func writeScript(_ text: String, to path: String) throws(BenchError) {
        do {
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw BenchError("cannot write \(path): \(error)")
        }
    }

    // MARK: Summary parsing

    private static func integer(after label: String, in output: String) -> Int? {
        number(after: label, in: output).flatMap { Int($0) }
    }

    private static func double(after label: String, in output: String) -> Double? {
        number(after: label, in: output).flatMap { Double($0) }
    }

    /// The first whitespace-delimited token after `label` on the line that has it.
    private static func number(after label: String, in output: String) -> String? {
        for line in output.split(separator: "\n") {
            guard let range = line.range(of: label) else { continue }
            return line[range.upperBound...].split(separator: " ").first.map(String.init)
        }
        return nil
    }
}
