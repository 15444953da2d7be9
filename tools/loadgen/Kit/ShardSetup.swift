import PersistCodec
import PersistCore

/// Retries a setup step until it succeeds or the setup deadline passes.
public struct SetupRetry: Sendable {
    public let deadline: ContinuousClock.Instant
    var backoff: Backoff

    public init(deadline: ContinuousClock.Instant, seed: UInt64) {
        self.deadline = deadline
        backoff = Backoff(seed: derivedSeed(seed, stream: 0x5E7), range: 100...300)
    }

    /// Runs `step` until it returns; after each error pauses briefly, and once the
    /// deadline has passed throws `setupFailed` with the last error.
    public mutating func run<T: Sendable>(_ what: String, _ step: () async throws -> T) async throws(LoadGenError) -> T
    {
        while true {
            do {
                return try await step()
            } catch {
                if ContinuousClock.now >= deadline {
                    throw LoadGenError.setupFailed("\(what): \(error)")
                }
                await backoff.pause()
            }
        }
    }
}

/// Creating and registering the data shards of a workload, idempotently: a shard that
/// exists is reused and one already registered is left alone, so a rerun against the
/// same cluster (or a retry after an unknown outcome) does no harm.
public enum ShardSetup {
    public static func ensure(_ names: [String], on target: any LoadTarget, retry: inout SetupRetry)
        async throws(LoadGenError)
    {
        try await retry.run("creating and registering shards \(names.joined(separator: ", "))") {
            var unregistered: [ShardRef] = []
            for name in names where !(try await target.createShard(name).registered) {
                unregistered.append(.name(name))
            }
            // Registering a shard that is already registered keeps it registered, so a
            // registration whose answer was lost is simply repeated.
            if !unregistered.isEmpty { _ = try await target.register(unregistered, at: nil) }
        }
    }
}
