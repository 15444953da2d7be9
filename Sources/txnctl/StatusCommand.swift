import ArgumentParser
import PersistCore

/// `txnctl status`: the coordinator's view of the txns shard.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Print the coordinator's status: txns shard, upper, since, shard counts, unapplied commits.",
        discussion: """
            upper: every commit so far is at a time below it. since: reads below it are no \
            longer possible. unapplied: commits not yet applied to their data shards (apply \
            runs right after each commit, so this is normally 0 or small).

            Example:
              txnctl status --json
            """)

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let status = try await global.withClient { try await $0.status() }
        try Terminal.print(try Rendering.status(status, json: global.json))
    }
}

/// `txnctl compact`: let old history go.
struct CompactCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "compact",
        abstract: "Allow reads below a timestamp to be compacted away.",
        discussion: """
            After it, reads and subscriptions below --since may be refused. Prints the time it \
            took effect.

            Example:
              txnctl compact --since 1700000000000
            """)

    @OptionGroup var global: GlobalOptions

    @Option(
        name: .customLong("since"),
        help: ArgumentHelp("Reads below this timestamp are no longer needed.", valueName: "ts"))
    var since: Timestamp

    func run() async throws {
        let ts = try await global.withClient { try await $0.compact(since: since) }
        try Terminal.print(try Rendering.done("compacted", at: ts, shards: [], json: global.json))
    }
}
