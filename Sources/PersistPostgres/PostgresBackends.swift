import Foundation
import Logging
import PersistCore
import PersistLocation

/// Opening `postgres://` consensus locations for `Backends.consensus(_:logger:postgres:)`
/// (PersistServices), which hands every other scheme to its own backends. Programs that
/// accept such URLs (txn-coordinator, txn-verify, persist-bench) pass `opener()`.
public enum PostgresBackends {
    /// Opens a location as a `PostgresConsensus`, with the password from its
    /// `password_file` or from `PGPASSWORD` in `environment`.
    public static func opener(
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> @Sendable (PostgresLocation, String, Logger) async throws -> OpenedBackend<any Consensus> {
        { location, url, logger in
            let configuration = try PostgresConsensus.Configuration(location: location, environment: environment)
            let consensus = try await PostgresConsensus.open(configuration, logger: logger)
            return OpenedBackend(backend: consensus, location: url, close: { await consensus.close() })
        }
    }
}
