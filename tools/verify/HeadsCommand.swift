import ArgumentParser
import Foundation
import PersistClient
import PersistCore

/// `txn-verify heads`: records consensus heads and shard frontiers, and compares them
/// with an earlier record.
struct HeadsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "heads",
        abstract: "Record every consensus key's head seqno and every shard's upper and since; fail if any went backwards.",
        discussion: """
            Writes the record to --record as JSON. With --previous (an earlier record, which \
            may be the same file: it is read first), fails when a key disappeared, a head \
            seqno decreased, or a shard's upper or since moved back. New keys and truncated \
            keys (their head stays) are fine.

            A shard's upper and since come from its whole state when --blob is given; \
            without it, from the newest diffs still in consensus that changed them (a \
            frontier no retained diff changed is then left out of the record).

            Example, after each restart of the crash test:
              txn-verify heads --consensus consensus+unix:///run/c.sock?token_file=/run/token \\
                --blob s3://data?endpoint=unix:///run/b.sock --record heads.json --previous heads.json

            \(VerifyExit.helpTable)
            """)

    static let defaultTxnsShard = "s7a5a0000-0000-4000-8000-000000000001"

    @Option(name: .customLong("consensus"), help: ArgumentHelp("Consensus location URL.", valueName: "url"))
    var consensus: String

    @Option(name: .customLong("blob"), help: ArgumentHelp("Blob location URL, to read shard frontiers from whole states.", valueName: "url"))
    var blob: String?

    @Option(name: .customLong("record"), help: ArgumentHelp("Where to write this record (JSON).", valueName: "path"))
    var record: String

    @Option(name: .customLong("previous"), help: ArgumentHelp("An earlier record to compare with.", valueName: "path"))
    var previous: String?

    @Option(name: .customLong("attempts"), help: "Tries per storage read before the store counts as unreachable.")
    var attempts = 5

    @Flag(name: .customLong("json"), help: "Print the outcome as one JSON object.")
    var json = false

    func validate() throws {
        guard attempts >= 1 else { throw ValidationError("--attempts must be at least 1") }
    }

    /// What the command prints with --json.
    struct Outcome: Codable {
        var ok: Bool
        var record: String
        var keys: Int
        var previous: String?
        var comparedKeys: Int?
        var violations: [Violation]
    }

    func run() async throws {
        var earlier: HeadsRecord?
        if let previous {
            guard let data = FileManager.default.contents(atPath: previous) else {
                throw VerifyFailure.usage("--previous: cannot read \(previous)")
            }
            do {
                earlier = try decodeJSON(HeadsRecord.self, from: data)
            } catch {
                throw VerifyFailure.usage("--previous: \(previous) is not a heads record: \(error)")
            }
            guard earlier?.format == HeadsRecord.currentFormat else {
                throw VerifyFailure.usage("--previous: \(previous) has format \(earlier?.format ?? ""), expected \(HeadsRecord.currentFormat)")
            }
        }
        let store = try await OpenedStore.open(blob: blob, consensus: consensus, attempts: attempts)
        let current: HeadsRecord
        do {
            let inspector = store.blob.map { ShardStateInspector(blob: $0, consensus: store.consensus) }
            current = try await HeadsRecord.read(consensus: store.consensus, inspector: inspector)
        } catch let e as StorageError {
            await store.close()
            throw VerifyFailure.unreachable(e)
        }
        await store.close()
        do {
            try Data((try encodeJSON(current) + "\n").utf8).write(to: URL(fileURLWithPath: record), options: .atomic)
        } catch {
            throw VerifyFailure.usage("--record: cannot write \(record): \(error)")
        }
        let violations = current.problems + (earlier.map { current.regressions(since: $0) } ?? [])
        let outcome = Outcome(
            ok: violations.isEmpty, record: record, keys: current.keys.count, previous: previous,
            comparedKeys: earlier?.keys.count, violations: violations)
        if json {
            try printOutput(try encodeJSON(outcome))
        } else {
            var lines = ["txn-verify heads: \(outcome.ok ? "OK" : "FAILED"): recorded \(current.keys.count) keys to \(record)"]
            if let previous, let n = earlier?.keys.count { lines.append("  compared with \(previous) (\(n) keys)") }
            for v in violations { lines.append("  " + v.text) }
            try printOutput(lines.joined(separator: "\n"))
        }
        if !outcome.ok { throw ExitCode(VerifyExit.violations.rawValue) }
    }
}
