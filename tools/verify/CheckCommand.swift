import ArgumentParser
import Foundation
import PersistCore

/// `txn-verify check`: blob references and data shards against the committed transactions.
struct CheckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Check that every referenced blob exists and that data shards hold exactly what was committed.",
        discussion: """
            1. Blob references: for every shard in consensus (other keys, such as the shard-name \
            table, are listed as skipped) its current state is read (latest rollup plus diffs) \
            and every blob it needs (batch parts, the latest rollup and the rollups GC may not \
            delete yet) must exist.

            2. Replay: the txns shard's whole history (with its own times; skipped when its \
            since has advanced) gives every batch committed to each data shard and its commit \
            time. Each data shard's contents, with times kept, must equal those batches' \
            updates at their commit times, below the shard's upper. Commits at or beyond a \
            data shard's upper are unapplied: listed, and a failure only with --require-applied. \
            Commits whose batches compaction merged away (their parts are gone) cannot be \
            compared row by row: the shard's updates at their times are checked against what \
            their parts record (the sum of the diffs, key bounds, row counts), and the summary \
            counts those times.

            Prints a summary and the witnesses of each broken invariant (at most \
            --max-witnesses of each kind), as text or, with --json, as one JSON object.

            Example:
              txn-verify check --blob file:///srv/txn/blob \\
                --consensus log:///srv/txn/consensus

            \(VerifyExit.helpTable)
            """)

    @Option(name: .customLong("blob"), help: ArgumentHelp("Blob location URL.", valueName: "url"))
    var blob: String

    @Option(name: .customLong("consensus"), help: ArgumentHelp("Consensus location URL.", valueName: "url"))
    var consensus: String

    @Option(
        name: .customLong("txns-shard"),
        help: ArgumentHelp("The txns shard's id (the coordinator's default unless given).", valueName: "id"))
    var txnsShard = HeadsCommand.defaultTxnsShard

    @Flag(name: .customLong("require-applied"), help: "Fail when a committed transaction is not applied yet (after a heal there should be none).")
    var requireApplied = false

    @Option(name: .customLong("max-witnesses"), help: "Witnesses printed per kind of violation.")
    var maxWitnesses = 20

    @Option(name: .customLong("attempts"), help: "Tries per storage read before the store counts as unreachable.")
    var attempts = 5

    @Flag(name: .customLong("json"), help: "Print the report as one JSON object.")
    var json = false

    func validate() throws {
        guard (try? ShardID(parsing: txnsShard)) != nil else { throw ValidationError("--txns-shard: not a shard id: \(txnsShard)") }
        guard maxWitnesses >= 0 else { throw ValidationError("--max-witnesses must not be negative") }
        guard attempts >= 1 else { throw ValidationError("--attempts must be at least 1") }
    }

    func run() async throws {
        let txns: ShardID
        do {
            txns = try ShardID(parsing: txnsShard)
        } catch {
            throw VerifyFailure.usage("--txns-shard: \(error)")
        }
        let store = try await OpenedStore.open(blob: blob, consensus: consensus, attempts: attempts)
        guard let blobStore = store.blob else { throw VerifyFailure.usage("--blob is required") }
        let check = StoreCheck(
            reader: StoreReader(blob: blobStore, consensus: store.consensus),
            configuration: CheckConfiguration(txnsShard: txns, requireApplied: requireApplied, maxWitnesses: maxWitnesses))
        let report: CheckReport
        do {
            report = try await check.run()
        } catch let e as StorageError {
            await store.close()
            throw VerifyFailure.unreachable(e)
        }
        await store.close()
        try printOutput(json ? encodeJSON(report) : report.text)
        if !report.ok { throw ExitCode(VerifyExit.violations.rawValue) }
    }
}
