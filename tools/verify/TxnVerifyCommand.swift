import ArgumentParser
import Foundation
import PersistCore

/// `txn-verify`: white-box checks of a cluster's stored state, for the crash test
/// (fault-testing plan §5, item 4). The commands only parse, open storage and print; the
/// checks live in `StoreCheck` and `HeadsRecord`.
@main
struct TxnVerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn-verify",
        abstract: "Check the invariants of a txn-wal store: blob references, data shards against committed transactions, heads over time.",
        discussion: """
            Storage is opened from location URLs exactly as txn-coordinator opens it: \
            consensus://host:port?token_file=/path, consensus+unix:///path.sock?token_file=/path, \
            postgres://user@host:5432/db?password_file=/path (or PGPASSWORD; see deploy/postgres.md), \
            log:///dir (embedded; the coordinator must be stopped), s3://bucket/prefix?endpoint=... \
            (https:// or http://, none for AWS; credentials from credentials_file=/path&profile=name, \
            else AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, else AWS_SHARED_CREDENTIALS_FILE or \
            ~/.aws/credentials) or file:///dir. \
            For a coordinator run with --data-dir D, use --blob file://D/blob --consensus log://D/consensus. \
            Nothing is ever written to the store.

            \(VerifyExit.helpTable)
            """,
        subcommands: [CheckCommand.self, HeadsCommand.self])

    /// Parses and runs the command with this tool's exit statuses (ArgumentParser's own
    /// would exit 64 for usage errors).
    static func main() async {
        do {
            var command = try await asyncParseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as VerifyFailure {
            printError("error: \(failure.message)")
            Foundation.exit(failure.status.rawValue)
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)
        } catch {
            switch exitCode(for: error) {
            case .success:
                exit(withError: error)  // --help and the like
            case .validationFailure:
                printError(fullMessage(for: error))
                Foundation.exit(VerifyExit.usage.rawValue)
            default:
                printError("error: \(error)")
                Foundation.exit(VerifyExit.violations.rawValue)
            }
        }
    }

    static func printError(_ text: String) {
        try? FileHandle.standardError.write(contentsOf: Data((text + "\n").utf8))
    }
}

/// The exit statuses, one per class of outcome.
enum VerifyExit: Int32, Sendable {
    /// Every invariant holds.
    case ok = 0
    /// An invariant is broken (witnesses printed), or something unexpected failed.
    case violations = 1
    /// The command line is wrong (arguments, URLs, missing directories, unreadable files).
    case usage = 2
    /// The store could not be read: after retries, blob or consensus kept failing.
    case unreachable = 3

    static let helpTable = """
        Exit status:
          0  every invariant holds
          1  an invariant is broken (witnesses printed)
          2  bad usage: arguments, location URLs, files
          3  storage unreachable: blob or consensus reads kept failing
        """
}

/// A failure that ends the run with `status`, printing `message` to stderr.
struct VerifyFailure: Error, Sendable {
    var status: VerifyExit
    var message: String

    static func usage(_ message: String) -> VerifyFailure { VerifyFailure(status: .usage, message: message) }
    static func unreachable(_ error: StorageError) -> VerifyFailure {
        VerifyFailure(status: .unreachable, message: "storage unreachable: \(error)")
    }
}

/// Writes `text` and a newline to stdout.
func printOutput(_ text: String) throws {
    try FileHandle.standardOutput.write(contentsOf: Data((text + "\n").utf8))
}

/// The JSON every `--json` output and heads record uses: snake_case keys, sorted, indented.
func encodeJSON(_ value: some Encodable) throws -> String {
    let encoder = JSONEncoder()
    encoder.keyEncodingStrategy = .convertToSnakeCase
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func decodeJSON<T: Decodable>(_ type: T.Type, from data: Data) throws -> T {
    let decoder = JSONDecoder()
    decoder.keyDecodingStrategy = .convertFromSnakeCase
    return try decoder.decode(type, from: data)
}
