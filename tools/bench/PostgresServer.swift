import Foundation
import PersistConformance
import Synchronization

/// The benchmark's throwaway PostgreSQL server: `PostgresTestServer` (shared with the
/// tests, which start it the same way) plus what the benchmark adds around it: its
/// errors as `BenchError`, pgbench required, and a stop on Ctrl-C through the cleanup
/// registry.
final class PostgresServer: Sendable {
    let server: PostgresTestServer
    let binaries: Binaries
    private let cleanupToken = Mutex<CleanupRegistry.Token?>(nil)

    /// The programs the benchmark runs against the server.
    struct Binaries {
        var psql: String
        var pgbench: String
        /// Where initdb, pg_ctl and postgres are.
        var serverDirectory: String
    }

    /// Finds the PostgreSQL programs, pgbench included.
    static func locateBinaries() throws(BenchError) -> Binaries {
        let found: PostgresBinaries
        do {
            found = try PostgresBinaries.locate()
        } catch {
            throw BenchError("\(error); or pass --skip-postgres")
        }
        guard let pgbench = found.pgbench else {
            throw BenchError("pgbench is not installed (tools/setup.sh installs it); or pass --skip-postgres")
        }
        return Binaries(psql: found.psql, pgbench: pgbench, serverDirectory: found.directory)
    }

    var socketDirectory: String { server.socketDirectory }
    var port: Int { server.port }
    var version: String { server.version }

    private init(server: PostgresTestServer, binaries: Binaries) {
        self.server = server
        self.binaries = binaries
    }

    /// Initialises a cluster under `parent` and starts it. `keepFiles` leaves the data
    /// directory behind after `stop()`.
    static func start(under parent: String, maxConnections: Int, keepFiles: Bool) throws(BenchError) -> PostgresServer {
        let binaries = try locateBinaries()
        let server: PostgresTestServer
        do {
            server = try PostgresTestServer.start(under: parent, maxConnections: maxConnections, keepFiles: keepFiles)
        } catch {
            throw BenchError("\(error)")
        }
        let wrapper = PostgresServer(server: server, binaries: binaries)
        let token = cleanup.register("stop PostgreSQL in \(server.root)") { server.remove() }
        wrapper.cleanupToken.withLock { $0 = token }
        return wrapper
    }

    /// Stops the server and removes its files (unless kept). Safe to call twice.
    func stop() {
        if let token = cleanupToken.withLock({ token in defer { token = nil }; return token }) {
            cleanup.run(token)
        }
    }

    /// Runs `sql` through psql and returns its unaligned, tuples-only output.
    @discardableResult
    func psql(_ sql: String, database: String = "postgres") throws(BenchError) -> String {
        do {
            return try server.psql(sql, database: database)
        } catch {
            throw BenchError("\(error)")
        }
    }

    /// `-h`, `-p` and `-U` for a client on this machine: over the Unix socket, or over
    /// loopback TCP when `tcp` is set.
    func connectionArguments(tcp: Bool) -> [String] {
        server.connectionArguments(tcp: tcp)
    }
}
