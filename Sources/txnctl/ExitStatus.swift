import PersistCodec
import PersistCore

/// The exit statuses of `txnctl`, one per class of outcome, so scripts can tell "nothing
/// happened, fix the command" from "nothing happened, try again" from "find out first".
enum ExitStatus: Int32, CaseIterable, Sendable {
    case success = 0
    /// Something unexpected, e.g. the output could not be written.
    case failure = 1
    /// The command line or its input (rows, JSON lines, token file, address) is wrong.
    /// Nothing was sent.
    case usage = 2
    /// The coordinator answered with a refusal (unknown shard, not registered, closed
    /// timestamp, bad request, token rejected, shutting down). Nothing happened.
    case refused = 3
    /// The coordinator could not be reached; the request was never sent. Nothing happened.
    case unreachable = 4
    /// The request was sent but its answer never came, or the coordinator's storage failed:
    /// a commit, register or forget may or may not have happened.
    case inDoubt = 5

    /// The exit status table for help texts.
    static let helpTable = """
        Exit status:
          0  success
          1  unexpected failure (for example the output could not be written)
          2  bad usage: arguments, --row syntax, input lines, token file or
             address; nothing was sent
          3  the coordinator refused the request (unknown_shard, not_registered,
             timestamp_closed, bad_request, rejected, shutting_down); nothing
             happened
          4  the coordinator could not be reached; the request was not sent,
             nothing happened
          5  in doubt: the request was sent but no answer came (or the
             coordinator's storage failed): a commit, register or forget MAY
             have happened; read to find out before retrying
        """
}

/// A mistake in what the user gave `txnctl`: exits with `ExitStatus.usage`.
struct UsageError: Error, Hashable, Sendable, CustomStringConvertible {
    var message: String

    init(_ message: String) {
        self.message = message
    }

    var description: String { message }
}

/// What `txnctl` prints to stderr for a failed command, and how it exits.
struct FailureReport: Hashable, Sendable {
    var status: ExitStatus
    /// Lines for stderr, each starting with `error:` or `note:`.
    var lines: [String]

    static let inDoubtNote =
        "note: the outcome is unknown: a commit, register or forget may or may not have happened; "
        + "read the shards (txnctl read) to find out before retrying"

    /// Classifies a failure of a command's run.
    static func classify(_ error: any Error) -> FailureReport {
        switch error {
        case let e as UsageError:
            return FailureReport(status: .usage, lines: ["error: \(e.message)"])
        case let e as CoordinatorError:
            var line = "error: \(e.code.rawValue): \(e.message)"
            if let next = e.nextUsable { line += " (next usable timestamp: \(next))" }
            if e.code == .storage {
                // The coordinator's message says whether it took effect; be conservative.
                return FailureReport(status: .inDoubt, lines: [line, inDoubtNote])
            }
            return FailureReport(status: .refused, lines: [line])
        case let e as StorageError:
            let line = "error: \(e.code.rawValue): \(e.message)"
            if e.code == .rejected {
                return FailureReport(status: .refused, lines: [line])
            }
            if e.isDeterminate {
                return FailureReport(
                    status: .unreachable, lines: [line, "note: the request was not sent; nothing happened"])
            }
            return FailureReport(status: .inDoubt, lines: [line, inDoubtNote])
        default:
            return FailureReport(status: .failure, lines: ["error: \(error)"])
        }
    }
}
