import Logging
import PersistCore

/// Exponential backoff with multiplicative jitter: starts at `initial`, doubles per
/// attempt up to `maximum`, and scales each delay by a factor in [0.9, 1.1]. Pure: the
/// caller supplies the randomness and does the sleeping.
public struct Backoff: Sendable {
    public let initial: Duration
    public let maximum: Duration
    public private(set) var attempts = 0
    private var next: Duration

    public init(initial: Duration, maximum: Duration) {
        self.initial = initial
        self.maximum = maximum
        self.next = initial
    }

    /// The delay before the next attempt.
    public mutating func nextDelay(using rng: inout some RandomNumberGenerator) -> Duration {
        attempts += 1
        let base = next
        next = min(next * 2, maximum)
        return base * Double.random(in: 0.9...1.1, using: &rng)
    }
}

/// The retry disciplines of the shard layer (spec/persist.md §2.4).
enum Retry {
    /// Retries `op` on any storage error until it succeeds or the task is cancelled. For
    /// idempotent operations: reads, blob writes under fresh keys, deletes, truncations.
    static func external<T: Sendable>(
        _ what: String, config: PersistConfig, _ op: () async throws(StorageError) -> T
    ) async throws(CancellationError) -> T {
        var backoff = Backoff(initial: config.initialBackoff, maximum: config.maxBackoff)
        var rng = SystemRandomNumberGenerator()
        while true {
            do throws(StorageError) {
                return try await op()
            } catch {
                if backoff.attempts == 3 || (backoff.attempts > 3 && backoff.attempts % 10 == 0) {
                    logger.info("\(what) keeps failing; retrying", metadata: ["attempts": "\(backoff.attempts)", "error": "\(error)"])
                }
                try await sleepOrCancel(backoff.nextDelay(using: &rng))
            }
        }
    }

    static let logger = Logger(label: "swift-txn-wal.persist.retry")

    /// Retries `op` on determinate errors (they did not happen) and returns the first
    /// indeterminate one to the caller, who must resolve it by reading.
    static func determinate<T: Sendable>(
        _ what: String, config: PersistConfig, _ op: () async throws(StorageError) -> T
    ) async throws(RetryOutcome) -> T {
        var backoff = Backoff(initial: config.initialBackoff, maximum: config.maxBackoff)
        var rng = SystemRandomNumberGenerator()
        while true {
            do throws(StorageError) {
                return try await op()
            } catch where error.isDeterminate {
                do {
                    try await sleepOrCancel(backoff.nextDelay(using: &rng))
                } catch {
                    throw .cancelled
                }
            } catch {
                throw .indeterminate(error)
            }
        }
    }

    static func sleepOrCancel(_ d: Duration) async throws(CancellationError) {
        do {
            try await Task.sleep(for: d)
        } catch {
            throw CancellationError()
        }
    }
}

/// Why `Retry.determinate` gave up.
enum RetryOutcome: Error {
    case indeterminate(StorageError)
    case cancelled
}

/// Runs a storage operation once, capturing its outcome.
func attemptOnce<T>(_ op: () async throws(StorageError) -> T) async -> Result<T, StorageError> {
    do throws(StorageError) {
        return .success(try await op())
    } catch {
        return .failure(error)
    }
}
