import PersistClient
import PersistCodec
import PersistCore
import TxnWAL

extension CoordinatorError {
    /// The answer for a failure that came from below the coordinator. Storage failures say
    /// whether the operation may have taken effect; a read below a shard's since is the
    /// caller's mistake; anything else (an invariant broken in storage, a corrupt record)
    /// is a storage problem. Never traps.
    static func from(_ error: any Error, during operation: String) -> CoordinatorError {
        switch error {
        case let e as CoordinatorError:
            return e
        case let e as StorageError:
            let effect = e.isDeterminate ? "it did not take effect" : "it may or may not have taken effect"
            return CoordinatorError(.storage, "\(operation) failed (\(effect)): \(e)")
        case let e as ReadError:
            if case .sinceAdvanced = e { return CoordinatorError(.badRequest, "\(operation): \(e)") }
            return CoordinatorError(.storage, "\(operation) failed: \(e)")
        case is CancellationError:
            return CoordinatorError(.shuttingDown, "\(operation) was cancelled")
        default:
            return CoordinatorError(.storage, "\(operation) failed: \(error)")
        }
    }

    static let shuttingDownError = CoordinatorError(.shuttingDown, "the coordinator is shutting down")
}
