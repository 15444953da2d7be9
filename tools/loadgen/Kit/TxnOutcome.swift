import PersistCodec
import PersistCore

/// How a transaction ended, in the Jepsen sense the history checker uses.
public enum TxnOutcome: String, Hashable, Sendable, CaseIterable, Codable {
    /// It committed (or, for reads, observed what it reports).
    case ok
    /// Nothing it did took effect, guaranteed.
    case fail
    /// Unknown: it may take effect at any later time, or never.
    case info
}

/// What a transaction does, for the counts in the summary.
public enum TxnKind: String, Hashable, Sendable, CaseIterable, Codable {
    /// Only reads: never writes anything, so any error makes it `fail`.
    case readOnly = "read_only"
    /// Only appends (or a bank transfer): one commit at a time the coordinator picks.
    case writeOnly = "write_only"
    /// Reads at a snapshot, then a commit just after it.
    case mixed
}

/// The step of a transaction an error interrupted.
public enum TxnPhase: Hashable, Sendable {
    /// Before any write was sent: whatever went wrong, nothing was written.
    case reading
    /// A commit was (or was about to be) sent.
    case committing
}

/// The outcome an error stands for, and whether the client should pause before its
/// next transaction (the coordinator or the network is in trouble, so spinning on it
/// only adds load).
public struct ErrorVerdict: Hashable, Sendable {
    public var outcome: TxnOutcome
    public var backOff: Bool

    public init(outcome: TxnOutcome, backOff: Bool) {
        self.outcome = outcome
        self.backOff = backOff
    }
}

/// Maps errors to history outcomes. Conservative by design: `fail` promises the checker
/// that nothing was applied, so it is used only where the coordinator or the transport
/// guarantees that; everything else during a commit is `info`.
public enum OutcomeClassifier {
    /// The exact message of the coordinator's "shutting down" refusal issued before a job
    /// is queued. The same code is also used for work cancelled mid-flight (which may
    /// still land), so only this message counts as a guaranteed no-op.
    public static let shutdownRefusalMessage = "the coordinator is shutting down"

    public static func classify(_ error: any Error, phase: TxnPhase) -> ErrorVerdict {
        let backOff = shouldBackOff(error)
        switch phase {
        case .reading:
            // Nothing was sent that writes: a failed read changes nothing.
            return ErrorVerdict(outcome: .fail, backOff: backOff)
        case .committing:
            return ErrorVerdict(outcome: commitOutcome(error), backOff: backOff)
        }
    }

    static func commitOutcome(_ error: any Error) -> TxnOutcome {
        switch error {
        case let e as CoordinatorError:
            switch e.code {
            case .unknownShard, .notRegistered, .timestampClosed, .badRequest, .rejected:
                // Refused before anything was written.
                return .fail
            case .shuttingDown:
                return e.message == shutdownRefusalMessage ? .fail : .info
            case .storage:
                // The coordinator's storage failed part way; even a "did not take effect"
                // may follow an earlier attempt of the same commit that did, so never
                // promise it.
                return .info
            }
        case let e as StorageError:
            // Determinate transport errors mean the request never left this process.
            return e.isDeterminate ? .fail : .info
        default:
            // Cancellation mid-call, or anything unforeseen: the commit may have landed.
            return .info
        }
    }

    /// Transport trouble and an unhealthy coordinator call for a pause; plain refusals
    /// (a closed timestamp under contention) do not.
    static func shouldBackOff(_ error: any Error) -> Bool {
        switch error {
        case let e as CoordinatorError:
            switch e.code {
            case .storage, .shuttingDown, .rejected: return true
            case .unknownShard, .notRegistered, .timestampClosed, .badRequest: return false
            }
        case is StorageError:
            return true
        default:
            return true
        }
    }
}
