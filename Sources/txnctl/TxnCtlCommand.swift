import ArgumentParser
import Foundation
import PersistCodec
import PersistCore

/// `txnctl`: the command-line tool for people over the coordinator client (DESIGN.md §2).
///
/// The commands hold no logic of their own: row and JSON-line parsing live in `RowInput`,
/// output in `Rendering`, error classes in `ExitStatus`; the commands only connect, call
/// `TxnClient` and print.
@main
struct TxnCtlCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txnctl",
        abstract: "Create and register shards, commit transactions, read and subscribe, through a txn-coordinator.",
        discussion: """
            Every command talks to one coordinator (--coordinator, or TXNCTL_COORDINATOR, \
            default \(CoordinatorAddress.defaultAddress)). A shard is named by the name it was \
            created with or by its id (s<uuid>), wherever a shard is asked for. Timestamps \
            are unsigned 64-bit integers; the coordinator picks one (wall-clock milliseconds, \
            never going back) unless --at is given. Output is text for people, or one JSON \
            object per line with --json; errors go to stderr as "error: <code>: <message>".

            Global options, taken by every command before or after its name: --coordinator, \
            --token-file, --json, --timeout (see any command's --help).

            Example session:
              txnctl shard create orders stock
              txnctl shard register orders stock
              txnctl commit --row orders:o1=pending --row stock:widget:-1
              txnctl read orders
              txnctl subscribe orders --limit-updates 10

            \(ExitStatus.helpTable)
            """,
        subcommands: [
            ShardCommand.self, CommitCommand.self, ReadCommand.self, SubscribeCommand.self, StatusCommand.self,
            CompactCommand.self,
        ])

    /// Parses and runs the command, mapping failures to `ExitStatus` (ArgumentParser's own
    /// mapping would exit 64 for usage errors and 1 for everything else).
    static func main() async {
        var command: any ParsableCommand
        do {
            command = try await asyncParseAsRoot(GlobalOptions.hoisted(Array(CommandLine.arguments.dropFirst())))
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            Terminal.printError([fullMessage(for: error)])
            Foundation.exit(ExitStatus.usage.rawValue)
        }
        do {
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            switch error {
            case is UsageError, is CoordinatorError, is StorageError:
                let report = FailureReport.classify(error)
                Terminal.printError(report.lines)
                Foundation.exit(report.status.rawValue)
            default:
                // ArgumentParser's own outcomes: --help (exit 0) and usage errors.
                let code = exitCode(for: error)
                if code == .success { exit(withError: error) }
                if code == .validationFailure {
                    Terminal.printError([fullMessage(for: error)])
                    Foundation.exit(ExitStatus.usage.rawValue)
                }
                let report = FailureReport.classify(error)
                Terminal.printError(report.lines)
                Foundation.exit(report.status.rawValue)
            }
        }
    }
}
