import Foundation
import Logging
import PersistConformance
import PersistCore
import PersistLocation
import PersistPostgres
import Synchronization

/// Fresh databases on the process's shared PostgreSQL server, and consensus clients on them.
enum PostgresTestSupport {
    private static let counter = Mutex(0)

    /// A database name no other test of this process uses.
    static func freshName(_ prefix: String) -> String {
        let n = counter.withLock { value -> Int in
            value += 1
            return value
        }
        return "\(prefix)_\(n)"
    }

    /// A fresh empty database on the shared server and its URL.
    static func freshDatabase(_ prefix: String, unixSocket: Bool = false) async throws -> (PostgresTestServer, String) {
        let server = try await PostgresTestServer.shared()
        let url = try await server.createDatabase(freshName(prefix), unixSocket: unixSocket)
        return (server, url)
    }

    /// Opens a `PostgresConsensus` on `url` (no password: the test servers trust their
    /// clients) with a small pool unless the URL sets one: many tests share one server.
    static func open(
        _ url: String, operationTimeout: Duration = .seconds(120), environment: [String: String] = [:]
    ) async throws -> PostgresConsensus {
        guard case .postgres(var location) = try LocationURL.consensus(url) else {
            throw PostgresServerError("not a postgres URL: \(url)")
        }
        if location.maxConnections == nil { location.maxConnections = 4 }
        var configuration = try PostgresConsensus.Configuration(location: location, environment: environment)
        // Deadlines are only hang guards here: the tests share two cores with the server.
        configuration.operationTimeout = operationTimeout
        configuration.connectTimeout = .seconds(60)
        return try await PostgresConsensus.open(configuration, logger: Logger(label: "test.postgres"))
    }
}

/// Every client a test opened, closed at the end.
final class OpenClients: Sendable {
    private let clients = Mutex<[PostgresConsensus]>([])

    func add(_ c: PostgresConsensus) -> PostgresConsensus {
        clients.withLock { $0.append(c) }
        return c
    }

    func closeAll() async {
        for c in clients.withLock({ $0 }) { await c.close() }
    }
}
