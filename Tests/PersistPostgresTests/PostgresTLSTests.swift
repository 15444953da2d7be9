#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistPostgres
import Synchronization
import Testing

/// PostgresConsensus over TLS, against a PostgreSQL of its own that serves a certificate
/// from a test CA and accepts TCP clients only over TLS (except on one database kept for
/// the control case). Whether a connection really used TLS is read from the server's log
/// (`log_connections`), which records every authorized connection with or without
/// "SSL enabled" before the client can run anything.
///
/// The server's certificate names `localhost` only, so reaching it as 127.0.0.1 with
/// `verify-full` is the name-mismatch case.
@Suite struct PostgresTLSTests {
    static let v1 = VersionedData(seqno: SeqNo(1), data: Array("over TLS".utf8))
    static let v2 = VersionedData(seqno: SeqNo(2), data: Array("still over TLS".utf8))

    /// The database where TCP clients may connect without TLS (the control case).
    static let cleartextDatabase = "tls_cleartext_allowed"

    @Test(arguments: ["require", "prefer"])
    func unverifiedModesUseTLSAndRoundTrip(_ mode: String) async throws {
        let fixture = try await TLSFixture.shared()
        let database = try await fixture.freshDatabase("tls_\(mode)")
        let c = try await PostgresTestSupport.open(fixture.url(host: "127.0.0.1", database: database, "sslmode=\(mode)"))
        try await Self.roundTrip(c)
        await c.close()
        let connections = try await fixture.connectionsAuthorized(database: database)
        // The check, the pool's connection(s).
        #expect(connections.count >= 2, "\(connections)")
        #expect(connections.allSatisfy { $0.contains("SSL enabled") }, "\(connections)")
    }

    @Test func verifyFullWithTheTestCATrustsTheServer() async throws {
        let fixture = try await TLSFixture.shared()
        let database = try await fixture.freshDatabase("tls_verify_full")
        let c = try await PostgresTestSupport.open(
            fixture.url(
                host: "localhost", database: database, "sslmode=verify-full&sslrootcert=\(fixture.certificates.authority)"))
        try await Self.roundTrip(c)
        await c.close()
        let connections = try await fixture.connectionsAuthorized(database: database)
        #expect(connections.count >= 2, "\(connections)")
        #expect(connections.allSatisfy { $0.contains("SSL enabled") }, "\(connections)")
    }

    @Test func verifyFullWithoutTheCARefusesTheCertificate() async throws {
        let fixture = try await TLSFixture.shared()
        let database = try await fixture.freshDatabase("tls_untrusted")
        // The system's roots alone, then a root that is trusted but issued nothing here.
        for parameters in ["sslmode=verify-full", "sslmode=verify-full&sslrootcert=\(fixture.certificates.otherAuthority)"] {
            let error = try await Self.openingError(fixture.url(host: "localhost", database: database, parameters))
            #expect(error.isDeterminate, "\(error)")
            #expect(error.code == .rejected, "\(error)")
            #expect(error.message.contains("certificate is not trusted"), "\(error)")
            #expect(error.message.contains("sslrootcert"), "the message says how to trust a private CA: \(error)")
        }
        #expect(try await fixture.connectionsAuthorized(database: database).isEmpty)
    }

    @Test func verifyFullRefusesACertificateForAnotherName() async throws {
        let fixture = try await TLSFixture.shared()
        let database = try await fixture.freshDatabase("tls_mismatch")
        let error = try await Self.openingError(
            fixture.url(
                host: "127.0.0.1", database: database, "sslmode=verify-full&sslrootcert=\(fixture.certificates.authority)"))
        #expect(error.isDeterminate, "\(error)")
        #expect(error.code == .rejected, "\(error)")
        #expect(error.message.contains("does not name 127.0.0.1"), "\(error)")
        #expect(try await fixture.connectionsAuthorized(database: database).isEmpty)
    }

    @Test func cleartextIsRefusedWhereTheServerDemandsTLS() async throws {
        let fixture = try await TLSFixture.shared()
        let database = try await fixture.freshDatabase("tls_only")
        let error = try await Self.openingError(fixture.url(host: "127.0.0.1", database: database, "sslmode=disable"))
        #expect(error.isDeterminate, "\(error)")
        #expect(error.message.contains("28000"), "the server's reason: \(error)")
        #expect(error.message.contains("sslmode=require"), "the hint: \(error)")
    }

    /// The control for the log check above: where cleartext is allowed, `disable` gets a
    /// connection the log records without TLS.
    @Test func theLogTellsCleartextConnectionsApart() async throws {
        let fixture = try await TLSFixture.shared()
        let c = try await PostgresTestSupport.open(
            fixture.url(host: "127.0.0.1", database: Self.cleartextDatabase, "sslmode=disable"))
        try await Self.roundTrip(c)
        await c.close()
        let connections = try await fixture.connectionsAuthorized(database: Self.cleartextDatabase)
        #expect(connections.count >= 2, "\(connections)")
        #expect(connections.allSatisfy { !$0.contains("SSL enabled") }, "\(connections)")
    }

    /// A server without TLS (the shared one) is refused by modes that need TLS.
    @Test func modesThatNeedTLSRefuseAServerWithout() async throws {
        let (_, url) = try await PostgresTestSupport.freshDatabase("no_tls")
        let error = try await Self.openingError(url + "?sslmode=require")
        #expect(error.isDeterminate, "\(error)")
        #expect(error.message.contains("does not offer TLS"), "\(error)")
    }

    /// An unusable `sslrootcert` file is refused before anything is sent: the port here
    /// has no server, which would be a different error.
    @Test func unusableCAFilesAreRefusedWhenOpening() async throws {
        let fixture = try await TLSFixture.shared()
        let directory = fixture.directory
        let empty = directory + "/empty.pem"
        let notPEM = directory + "/not-pem.pem"
        let large = directory + "/large.pem"
        try await SpawnedServer.offThread {
            try Data().write(to: URL(fileURLWithPath: empty))
            try Data("just some text\n".utf8).write(to: URL(fileURLWithPath: notPEM))
            try Data(repeating: 0x41, count: (1 << 20) + 1).write(to: URL(fileURLWithPath: large))
        }
        let key = try await SpawnedServer.offThread { try String(contentsOfFile: fixture.certificates.serverKey, encoding: .utf8) }
        let keyLines = key.split(separator: "\n").filter { !$0.hasPrefix("-----") }
        #expect(!keyLines.isEmpty)
        let port = try PostgresTestServer.freeLoopbackPort()
        let cases: [(file: String, problem: String)] = [
            (directory + "/missing.pem", "does not exist"),
            (directory, "not a regular file"),
            (empty, "no PEM certificate"),
            (notPEM, "no PEM certificate"),
            (large, "larger than 1048576 bytes"),
            // A key is not a certificate, and nothing of it is repeated.
            (fixture.certificates.serverKey, "no PEM certificate"),
        ]
        for (file, problem) in cases {
            let error = try await Self.openingError(
                "postgres://postgres@localhost:\(port)/db?sslmode=verify-full&sslrootcert=\(file)")
            #expect(error.isDeterminate, "\(error)")
            #expect(error.code == .invalidArgument, "\(error)")
            #expect(error.message.contains(file) && error.message.contains(problem), "\(error)")
            #expect(!keyLines.contains { error.message.contains($0) }, "no part of the file is repeated: \(error)")
        }
    }

    // MARK: helpers

    /// Sets two versions of a key, reads them back and truncates the first.
    static func roundTrip(_ c: PostgresConsensus) async throws {
        #expect(try await c.compareAndSet("k", expected: nil, new: v1) == .committed)
        #expect(try await c.compareAndSet("k", expected: v1.seqno, new: v2) == .committed)
        #expect(try await c.scan("k", from: SeqNo(0), limit: 10) == [v1, v2])
        #expect(try await c.truncate("k", seqno: v2.seqno) == 1)
        #expect(try await c.head("k") == v2)
    }

    /// The error opening `url` fails with; a test failure if it opens.
    static func openingError(_ url: String) async throws -> StorageError {
        do {
            let c = try await PostgresTestSupport.open(url, operationTimeout: .seconds(120))
            await c.close()
        } catch let error as StorageError {
            return error
        }
        throw ConformanceFailure("opening \(url) should have failed")
    }
}

/// The suite's server and its certificates, started on first use and removed when the
/// process exits.
struct TLSFixture: Sendable {
    let server: PostgresTestServer
    let certificates: TestCertificates
    /// Holds the certificates and the server's access rules (the server's own files
    /// are elsewhere).
    let directory: String

    func url(host: String, database: String, _ parameters: String) -> String {
        "postgres://\(PostgresTestServer.serverAccount)@\(host):\(server.port)/\(database)?\(parameters)"
    }

    /// A new empty database's name.
    func freshDatabase(_ prefix: String) async throws -> String {
        let name = PostgresTestSupport.freshName(prefix)
        try await server.psqlAsync("CREATE DATABASE \(name)")
        return name
    }

    /// The server log's records of connections to `database` that passed authentication,
    /// e.g. `connection authorized: user=postgres database=x application_name=y SSL
    /// enabled (protocol=TLSv1.3, ...)`. Each is written before the client is told the
    /// connection is ready.
    func connectionsAuthorized(database: String) async throws -> [String] {
        let path = server.logPath
        let log = try await SpawnedServer.offThread { try String(contentsOfFile: path, encoding: .utf8) }
        return log.split(separator: "\n").map(String.init).filter {
            $0.contains("connection authorized:") && $0.contains(" database=\(database) ")
        }
    }

    static func shared() async throws -> TLSFixture {
        let task = sharedFixture.withLock { state -> Task<TLSFixture, any Error> in
            if let task = state { return task }
            let task = Task { try await start() }
            state = task
            return task
        }
        return try await task.value
    }

    private static func start() async throws -> TLSFixture {
        let directory = NSTemporaryDirectory() + "pg-tls-\(UUID().uuidString)"
        try await SpawnedServer.offThread {
            // Traversable by the server account, which reads the certificate and rules.
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        }
        let certificates = try await TestCertificates.make(in: directory, names: ["localhost"])
        let rules = directory + "/pg_hba.conf"
        // First match wins: over TCP, TLS everywhere; cleartext for one database only.
        let hba = """
            local all all trust
            hostssl all all 127.0.0.1/32 trust
            host \(PostgresTLSTests.cleartextDatabase) all 127.0.0.1/32 trust

            """
        try await SpawnedServer.offThread {
            try Data(hba.utf8).write(to: URL(fileURLWithPath: rules))
            // PostgreSQL refuses a key others can read, or one owned by another account.
            try giveToServerAccount(certificates.serverKey, mode: 0o600)
            try giveToServerAccount(certificates.serverCertificate, mode: 0o644)
            try giveToServerAccount(rules, mode: 0o644)
        }
        let server = try await PostgresTestServer.startAsync(
            maxConnections: 50,
            settings: [
                "ssl": "on", "ssl_cert_file": "'\(certificates.serverCertificate)'",
                "ssl_key_file": "'\(certificates.serverKey)'", "hba_file": "'\(rules)'", "log_connections": "on",
            ])
        fixtureForExit.withLock { $0 = (server, directory) }
        atexit {
            guard let started = fixtureForExit.withLock({ $0 }) else { return }
            started.server.remove()
            try? FileManager.default.removeItem(atPath: started.directory)
        }
        try await server.psqlAsync("CREATE DATABASE \(PostgresTLSTests.cleartextDatabase)")
        return TLSFixture(server: server, certificates: certificates, directory: directory)
    }

    /// Sets `path`'s mode and, when this process is root (the server then runs as the
    /// server account), gives it to that account.
    private static func giveToServerAccount(_ path: String, mode: mode_t) throws {
        guard chmod(path, mode) == 0 else { throw PostgresServerError("chmod \(path): \(String(cString: strerror(errno)))") }
        guard geteuid() == 0 else { return }
        guard let account = getpwnam(PostgresTestServer.serverAccount) else {
            throw PostgresServerError("no account named \(PostgresTestServer.serverAccount)")
        }
        guard chown(path, account.pointee.pw_uid, account.pointee.pw_gid) == 0 else {
            throw PostgresServerError("chown \(path): \(String(cString: strerror(errno)))")
        }
    }
}

private let sharedFixture = Mutex<Task<TLSFixture, any Error>?>(nil)
/// The fixture's server and directory once started, for the exit handler.
private let fixtureForExit = Mutex<(server: PostgresTestServer, directory: String)?>(nil)
