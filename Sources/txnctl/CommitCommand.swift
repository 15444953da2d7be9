import ArgumentParser
import Foundation
import PersistCodec
import PersistCore

/// `txnctl commit`: one transaction from `--row` flags and/or JSON lines.
struct CommitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "commit",
        abstract: "Commit rows to one or more shards as ONE atomic transaction; prints its timestamp.",
        discussion: """
            Rows come from --row flags, from JSON lines on stdin (--stdin) or in a file \
            (--input), or any mix; all of them form one transaction, committed at --at or at \
            a timestamp the coordinator picks. The shards must be registered.

            --row \(RowSyntax.synopsis): the shard ends at the first ':', the key at the next \
            '=' (a value follows) or ':' (a diff follows), the value at the next ':'; the rest \
            is the diff, a nonzero integer (default 1; negative retracts). The value defaults \
            to empty. Write a literal '\\', ':' or '=' as '\\\\', '\\:' or '\\='. Keys and \
            values are UTF-8 text; use JSON lines with key_b64/value_b64 for other bytes.

            JSON lines, one row per line (blank lines skipped, unknown fields refused):
              {"shard": "orders", "key": "o1", "value": "v1", "diff": 1}
              {"shard": "orders", "key_b64": "AAE=", "value_b64": "/w=="}
            "diff" defaults to 1, "value" to empty.

            In doubt: exit status 5 means the request was sent but no answer came (timeout, \
            lost connection) or the coordinator's storage failed. The commit MAY have \
            happened: read the shards (txnctl read) to find out before committing again.

            Examples:
              txnctl commit --row orders:o17=pending --row stock:widget:-1
              txnctl commit --row 'events:12\\:30=lunch' --at 1700000000000
              printf '{"shard":"orders","key":"o18"}\\n' | txnctl commit --stdin
            """)

    @OptionGroup var global: GlobalOptions

    @Option(
        name: .customLong("at"),
        help: ArgumentHelp(
            "Commit at this timestamp (it must not be closed) instead of one the coordinator picks.",
            discussion: "A closed timestamp is refused (exit status 3) with the next usable one.",
            valueName: "ts"))
    var at: Timestamp?

    @Option(
        name: .customLong("row"),
        help: ArgumentHelp(
            "A row: \(RowSyntax.synopsis), e.g. orders:o1=v1 (diff 1) or stock:widget:-1 (repeatable).",
            discussion: "Escape a literal '\\', ':' or '=' with a backslash.", valueName: "row"))
    var rows: [String] = []

    @Flag(
        name: .customLong("stdin"),
        help: "Also read rows from stdin as JSON lines ({\"shard\":..., \"key\":..., \"value\":..., \"diff\":...}).")
    var stdin = false

    @Option(
        name: .customLong("input"),
        help: ArgumentHelp("Also read rows from this file of JSON lines (repeatable).", valueName: "path"))
    var inputs: [String] = []

    func validate() throws {
        guard !rows.isEmpty || stdin || !inputs.isEmpty else {
            throw ValidationError("nothing to commit: give --row, --stdin or --input")
        }
        for row in rows {
            do { _ = try RowSyntax.parse(row) } catch { throw ValidationError(error.message) }
        }
    }

    func run() async throws {
        var all: [ShardRow] = []
        for row in rows { all.append(try RowSyntax.parse(row)) }
        if stdin {
            all += try JSONRowInput.parse(FileHandle.standardInput.readDataToEndOfFile(), source: "stdin")
        }
        for path in inputs {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw UsageError("--input: cannot read \(path)")
            }
            all += try JSONRowInput.parse(data, source: path)
        }
        guard !all.isEmpty else { throw UsageError("nothing to commit: the input has no rows") }
        let writes = ShardNames.group(all)
        let ts = try await global.withClient { try await $0.commit(writes, at: at) }
        try Terminal.print(try Rendering.committed(at: ts, writes: writes, json: global.json))
    }
}

/// `txnctl read`: a shard's rows at a time.
struct ReadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "read",
        abstract: "Print a shard's consolidated rows (key, value, diff; time) at a timestamp.",
        discussion: """
            Reads at --as-of, or at the latest committed time. A read waits until everything \
            at or below its time is applied. Text output is a summary line and a table; with \
            --json, a {"type":"snapshot",...} line then one {"type":"row",...} line per row. \
            Keys and values that are not plain text are shown quoted, or as base64:... when \
            they are not UTF-8 (key_b64/value_b64 in JSON).

            Example:
              txnctl read orders --as-of 1700000000000
            """)

    @OptionGroup var global: GlobalOptions

    @Option(
        name: .customLong("as-of"),
        help: ArgumentHelp("Read at this timestamp instead of the latest committed one.", valueName: "ts"))
    var asOf: Timestamp?

    @Flag(help: "Show each row at the time it was committed instead of at the read's time.")
    var history = false

    @Argument(help: ArgumentHelp("The shard to read, by name or id.", valueName: "shard"))
    var shard: String

    func validate() throws {
        do { _ = try ShardNames.ref(shard) } catch { throw ValidationError(error.message) }
    }

    func run() async throws {
        let ref = try ShardNames.ref(shard)
        let (ts, rows) = try await global.withClient { client in
            history ? try await client.readHistory(ref, asOf: asOf) : try await client.read(ref, asOf: asOf)
        }
        try Terminal.print(try Rendering.snapshot(shard: ref, asOf: ts, rows: rows, json: global.json))
    }
}
