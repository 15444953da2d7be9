import Foundation
import Logging
import NIOCore
import NIOSSL
import PersistCore
import PersistLocation
import PostgresNIO
import Synchronization

/// A `Consensus` in a PostgreSQL (or CockroachDB) table, reached through a pool of
/// connections (spec/persist.md §2.5).
///
/// Each key's versions are rows of `consensus(shard, sequence_number, data)`, keyed by
/// both. Every operation is one statement (a mismatch and an empty truncation read the
/// head in a second one): compare-and-set is a conditional `INSERT ... SELECT ... ON
/// CONFLICT DO NOTHING` that inserts only when the key's greatest sequence number is the
/// expected one, run in an explicit `SERIALIZABLE` transaction, so even two writers that
/// expect the same head but propose different new sequence numbers cannot both commit
/// (the primary key alone stops only equal ones). The transaction is explicit because a
/// serializable statement can still fail when it commits, after its rows were sent, and
/// the driver reports that failure only for an explicit `COMMIT`. Reads and truncations
/// are single statements at the session's `READ COMMITTED`.
///
/// Errors say whether the statement may have run: a failure before the statement was
/// handed to a connection, or a server error that proves it was rolled back, is
/// determinate; a lost connection, a timeout after sending or anything unknown is
/// indeterminate. Serialization failures and deadlocks (the statement was rolled back
/// because of a concurrent one) are retried here, within the operation's deadline.
///
/// `open` checks the connection and creates the table if it is missing; `close` must be
/// called when done (it stops the pool).
public final class PostgresConsensus: Consensus {
    /// Where the database is and how to use it.
    public struct Configuration: Sendable {
        public var location: PostgresLocation
        /// The password, or nil when the server needs none. Never part of the location.
        public var password: String?
        /// How long one connection attempt may take.
        public var connectTimeout: Duration = .seconds(10)
        /// How long one operation may take, retries and waiting for a connection
        /// included, before it fails with a timeout.
        public var operationTimeout: Duration = .seconds(60)

        /// The pool size when the location's `max_connections` is not given.
        public static let defaultMaxConnections = 16

        public init(location: PostgresLocation, password: String?) {
            self.location = location
            self.password = password
        }

        /// The configuration for `location`, with the password from its `password_file` or
        /// from `PGPASSWORD` in `environment`.
        public init(
            location: PostgresLocation, environment: [String: String] = ProcessInfo.processInfo.environment
        ) throws(StorageError) {
            self.init(
                location: location,
                password: try PostgresPassword.resolve(passwordFile: location.passwordFile, environment: environment))
        }

        var maxConnections: Int { location.maxConnections ?? Self.defaultMaxConnections }

        /// `user@host:port/database` (or the socket path), for messages. Has no secrets.
        public var serverDescription: String {
            switch location.endpoint {
            case .tcp(let host, let port):
                let shownHost = host.contains(":") ? "[\(host)]" : host
                return "\(location.user)@\(shownHost):\(port)/\(location.database)"
            case .unixSocket:
                return "\(location.user)@\(location.socketPath ?? "")/\(location.database)"
            }
        }
    }

    /// The table's name, in the connection's default schema.
    public static let tableName = "consensus"

    /// Retries of a statement the server rolled back because of a concurrent one.
    static let maxAttempts = 60

    public let configuration: Configuration
    private let client: PostgresClient
    private let runTask: Task<Void, Never>
    private let watch = ConnectionWatch()
    private let logger: Logger

    private init(configuration: Configuration, client: PostgresClient, runTask: Task<Void, Never>, logger: Logger) {
        self.configuration = configuration
        self.client = client
        self.runTask = runTask
        self.logger = logger
    }

    /// Connects once to check the server (credentials, database, isolation), creates
    /// the consensus table if it is missing, and starts the connection pool.
    ///
    /// Several processes may open the same database at once.
    ///
    /// - Throws: a determinate error saying what is wrong (an unusable `sslrootcert`
    ///   file, unreachable server, a certificate that fails `verify-full`, refused
    ///   credentials, missing database, a table of another shape).
    public static func open(
        _ configuration: Configuration, logger: Logger = Logger(label: "persist.postgres")
    ) async throws(StorageError) -> PostgresConsensus {
        let tls = try TLSUse(configuration.location)
        // Bounded like an operation: a lock held on the table must not stall a start forever.
        let prepared = await FirstOutcome<Void>.race(deadline: ContinuousClock.now + configuration.operationTimeout) {
            () async throws(StorageError) in try await prepareDatabase(configuration, tls: tls, logger: logger)
        }
        guard let prepared else {
            throw .determinate(
                .timeout,
                "cannot open PostgreSQL consensus at \(configuration.serverDescription): no answer within "
                    + "\(configuration.operationTimeout) (is the consensus table locked?)")
        }
        try prepared.get()
        let client = PostgresClient(
            configuration: clientConfiguration(configuration, tls: tls), eventLoopGroup: PostgresClient.defaultEventLoopGroup,
            backgroundLogger: logger)
        // Detached: the pool must not inherit a caller's task-local graceful-shutdown
        // trigger; it stops when `close` cancels it, and only then.
        let runTask = Task.detached { await client.run() }
        logger.debug("postgres consensus open", metadata: ["server": "\(configuration.serverDescription)"])
        return PostgresConsensus(configuration: configuration, client: client, runTask: runTask, logger: logger)
    }

    /// Stops the pool: waiting operations fail (determinately), connections close.
    /// Returns once the pool has stopped. Safe to call more than once.
    public func close() async {
        runTask.cancel()
        await runTask.value
    }

    // MARK: Consensus

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        let shard = ShardKeyEncoding.encode(key)
        return try await perform("head of \(key)") { connection, logger in
            var binds = PostgresBindings(capacity: 1)
            binds.append(shard)
            let rows = try await connection.query(PostgresQuery(unsafeSQL: ConsensusSQL.head, binds: binds), logger: logger)
            return try await Self.versions(rows).first
        }
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        try ConsensusPreconditions.checkCaS(key, expected: expected, new: new)
        let shard = ShardKeyEncoding.encode(key)
        let operation = "compare-and-set of \(key) from \(expected.map { "\($0)" } ?? "nothing") to \(new.seqno)"
        // A mismatch reads the head afterwards. If that head is the expected one after
        // all (it moved between the two statements in a way only concurrent writers can
        // make it), the insert is simply tried again: it did not happen, so it may.
        for _ in 0..<8 {
            let inserted = try await perform(operation) { connection, logger in
                var binds = PostgresBindings(capacity: 4)
                binds.append(shard)
                binds.append(Int64(new.seqno.rawValue))
                binds.append(ByteBuffer(bytes: new.data))
                if let expected { binds.append(Int64(expected.rawValue)) }
                let sql = expected == nil ? ConsensusSQL.insertFirst : ConsensusSQL.insertNext
                let rows = try await Self.inSerializableTransaction(
                    connection, PostgresQuery(unsafeSQL: sql, binds: binds), logger)
                return rows.count
            }
            if inserted > 0 { return .committed }
            let current: VersionedData?
            do throws(StorageError) {
                current = try await head(key)
            } catch {
                // The insert certainly did not happen; only the report of the head failed.
                throw .determinate(error.code, "\(operation) did not commit (mismatch), then reading the head failed: \(error.message)")
            }
            if current?.seqno != expected { return .expectationMismatch(current: current) }
        }
        throw .determinate(.rejected, "\(operation) did not commit: the head kept changing under concurrent writers")
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try ConsensusPreconditions.checkScanLimit(limit)
        let shard = ShardKeyEncoding.encode(key)
        return try await perform("scan of \(key) from \(from)") { connection, logger in
            var binds = PostgresBindings(capacity: 3)
            binds.append(shard)
            binds.append(Int64(from.rawValue))
            binds.append(Int64(clamping: limit))
            let rows = try await connection.query(PostgresQuery(unsafeSQL: ConsensusSQL.scan, binds: binds), logger: logger)
            return try await Self.versions(rows)
        }
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        let shard = ShardKeyEncoding.encode(key)
        let deleted = try await perform("truncation of \(key) below \(seqno)") { connection, logger in
            var binds = PostgresBindings(capacity: 2)
            binds.append(shard)
            binds.append(Int64(seqno.rawValue))
            let rows = try await connection.query(PostgresQuery(unsafeSQL: ConsensusSQL.truncate, binds: binds), logger: logger)
            var count = 0
            for try await _ in rows { count += 1 }
            return count
        }
        if deleted > 0 { return deleted }
        // Nothing deleted: either nothing is below `seqno` (fine, if the head is at or
        // above it) or no version is at or above it (an error). A key's head only grows,
        // so reading it now tells which.
        let head = try await head(key)
        guard let head, head.seqno >= seqno else {
            throw ConsensusPreconditions.truncateError(key, seqno: seqno, head: head?.seqno)
        }
        return 0
    }

    public func listKeys() async throws(StorageError) -> [String] {
        let stored = try await perform("listing keys") { connection, logger in
            let rows = try await connection.query(PostgresQuery(unsafeSQL: ConsensusSQL.listKeys), logger: logger)
            var keys: [String] = []
            for try await row in rows { keys.append(try row.decode(String.self)) }
            return keys
        }
        var keys: [String] = []
        keys.reserveCapacity(stored.count)
        for s in stored {
            guard let key = ShardKeyEncoding.decode(s) else {
                throw .indeterminate(.corruption, "the consensus table holds a shard value this client never writes: \(s)")
            }
            keys.append(key)
        }
        // By bytes, whatever the database's collation.
        return keys.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    // MARK: running statements

    /// Runs `statement` between `BEGIN ISOLATION LEVEL SERIALIZABLE` and `COMMIT` and
    /// returns its rows, only once the commit succeeded. When the statement fails the
    /// transaction is rolled back (or, if even that fails, the connection is closed) so
    /// that the connection goes back to the pool idle.
    ///
    /// The three statements are chained on the connection's event loop, each sent as the
    /// previous one's answer arrives there: awaiting each in turn would cost two thread
    /// switches per statement, which at a few hundred microseconds each is most of a
    /// compare-and-set's latency on a local server.
    private static func inSerializableTransaction(
        _ connection: PostgresConnection, _ statement: PostgresQuery, _ logger: Logger
    ) async throws -> [PostgresRow] {
        @Sendable func run(_ query: PostgresQuery) -> EventLoopFuture<PostgresQueryResult> {
            connection.query(query, logger: logger)
        }
        let done = run(PostgresQuery(unsafeSQL: ConsensusSQL.begin)).flatMap { _ in
            run(statement).flatMapError { error in
                run(PostgresQuery(unsafeSQL: ConsensusSQL.rollback)).map { _ in () }
                    .flatMapError { _ in connection.close() }
                    .flatMapThrowing { () -> PostgresQueryResult in throw error }
            }
        }.flatMap { result in
            // A serialization failure here is reported as this statement's error (and the
            // server has rolled the transaction back).
            // The server answers COMMIT of an aborted transaction with the tag ROLLBACK
            // and no error; nothing here leaves one aborted, but a commit is only
            // believed when it says so.
            run(PostgresQuery(unsafeSQL: ConsensusSQL.commit)).flatMapThrowing { committed in
                guard committed.metadata.command == "COMMIT" else {
                    throw UnexpectedCommitAnswer(tag: committed.metadata.command)
                }
                return result.rows
            }
        }
        return try await done.get()
    }

    /// COMMIT answered with another command tag (the transaction did not commit).
    struct UnexpectedCommitAnswer: Error, CustomStringConvertible {
        let tag: String
        var description: String { "COMMIT was answered \(tag), not COMMIT: the transaction did not commit" }
    }

    /// Rows of `(sequence_number, data)` as versions.
    private static func versions(_ rows: PostgresRowSequence) async throws -> [VersionedData] {
        var versions: [VersionedData] = []
        for try await row in rows {
            let (number, data) = try row.decode((Int64, ByteBuffer).self)
            guard number >= 0, let seqno = SeqNo(UInt64(number)) else { throw StoredValueError.negativeSequenceNumber(number) }
            versions.append(VersionedData(seqno: seqno, data: Array(data.readableBytesView)))
        }
        return versions
    }

    /// Runs `body` on a pooled connection within the operation's deadline, retrying
    /// statements the server rolled back because of concurrent ones, and maps failures
    /// to storage errors (`PostgresFailure`).
    private func perform<T: Sendable>(
        _ operation: @autoclosure () -> String,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async throws(StorageError) -> T {
        let deadline = ContinuousClock.now + configuration.operationTimeout
        var attempt = 0
        while true {
            attempt += 1
            let statement = PendingStatement<T>()
            let outcome = await statement.run(client: client, watch: watch, logger: logger, deadline: deadline, body)
            switch outcome {
            case .success(let value):
                return value
            case .failure(let failed):
                if failed.failure.isRetryable, attempt < Self.maxAttempts, ContinuousClock.now < deadline {
                    // Short, growing, jittered pauses: the competing statement has
                    // usually committed by the next try.
                    let millis = min(100.0, 0.5 * Double(1 << min(attempt, 8))) * Double.random(in: 0.5...1.5)
                    try? await Task.sleep(for: .microseconds(Int(millis * 1000)))
                    continue
                }
                if attempt > 1 { logger.debug("postgres statement retried", metadata: ["attempts": "\(attempt)"]) }
                throw failed.failure.storageError(sent: failed.sent, operation: operation())
            }
        }
    }

    // MARK: opening

    private static func clientConfiguration(_ c: Configuration, tls use: TLSUse) -> PostgresClient.Configuration {
        let location = c.location
        var configuration: PostgresClient.Configuration
        switch location.endpoint {
        case .tcp(let host, let port):
            let tls: PostgresClient.Configuration.TLS
            switch use {
            case .off: tls = .disable
            case .preferred(let settings): tls = .prefer(settings)
            case .required(let settings): tls = .require(settings)
            }
            configuration = PostgresClient.Configuration(
                host: host, port: port, username: location.user, password: c.password, database: location.database, tls: tls)
        case .unixSocket:
            configuration = PostgresClient.Configuration(
                unixSocketPath: location.socketPath ?? "", username: location.user, password: c.password,
                database: location.database)
        }
        configuration.options.connectTimeout = c.connectTimeout
        configuration.options.minimumConnections = 0
        configuration.options.maximumConnections = c.maxConnections
        configuration.options.additionalStartupParameters = startupParameters
        // CockroachDB sends no cancellation key data; PostgreSQL's is not needed here.
        configuration.options.requireBackendKeyData = false
        return configuration
    }

    /// Session settings sent when connecting. Single statements run at `READ
    /// COMMITTED` whatever the server's default, so that their implicit commit cannot
    /// fail with a serialization error after their rows were sent (which the driver
    /// would not report); compare-and-set asks for `SERIALIZABLE` explicitly.
    static let startupParameters: [(String, String)] = [
        ("default_transaction_isolation", "read committed"),
        ("application_name", "txn-wal-consensus"),
    ]

    /// What a location's `sslmode` asks of the driver: no TLS, TLS when the server
    /// offers it, or TLS or nothing; only `verify-full` checks the certificate (against
    /// the system's roots and those of `sslrootcert`) and the host name.
    private enum TLSUse: Sendable {
        case off
        case preferred(TLSConfiguration)
        case required(TLSConfiguration)

        /// Reads the location's `sslrootcert` file, if any.
        init(_ location: PostgresLocation) throws(StorageError) {
            var unverified = TLSConfiguration.makeClientConfiguration()
            unverified.certificateVerification = .none
            switch location.tls {
            case .disable: self = .off
            case .prefer: self = .preferred(unverified)
            case .require: self = .required(unverified)
            case .verifyFull:
                var verified = TLSConfiguration.makeClientConfiguration()
                if let path = location.trustRootsFile {
                    verified.additionalTrustRoots = [.certificates(try PostgresTrustRoots.load(path))]
                }
                self = .required(verified)
            }
        }
    }

    private static func connectionConfiguration(
        _ c: Configuration, tls use: TLSUse
    ) throws(StorageError) -> PostgresConnection.Configuration {
        let location = c.location
        var configuration: PostgresConnection.Configuration
        switch location.endpoint {
        case .tcp(let host, let port):
            let tls: PostgresConnection.Configuration.TLS
            do {
                switch use {
                case .off: tls = .disable
                case .preferred(let settings): tls = .prefer(try NIOSSLContext(configuration: settings))
                case .required(let settings): tls = .require(try NIOSSLContext(configuration: settings))
                }
            } catch {
                throw .determinate(.invalidArgument, "cannot set up TLS for \(c.serverDescription): \(error)")
            }
            configuration = PostgresConnection.Configuration(
                host: host, port: port, username: location.user, password: c.password, database: location.database, tls: tls)
        case .unixSocket:
            configuration = PostgresConnection.Configuration(
                unixSocketPath: location.socketPath ?? "", username: location.user, password: c.password,
                database: location.database)
        }
        configuration.options.connectTimeout = TimeAmount(c.connectTimeout)
        configuration.options.additionalStartupParameters = startupParameters
        configuration.options.requireBackendKeyData = false
        return configuration
    }

    /// One connection, outside the pool, so that what is wrong surfaces at once with the
    /// server's reason (the pool retries connecting quietly): creates the table if
    /// missing and checks its columns.
    private static func prepareDatabase(_ c: Configuration, tls: TLSUse, logger: Logger) async throws(StorageError) {
        let configuration = try connectionConfiguration(c, tls: tls)
        let what = "cannot open PostgreSQL consensus at \(c.serverDescription)"
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        } catch {
            if let (code, problem) = describeTLSFailure(error, c) { throw .determinate(code, "\(what): \(problem)") }
            throw .determinate(.unavailable, "\(what): \(describeConnectFailure(error, c))")
        }
        do {
            // Several processes may create the table at once; PostgreSQL can then refuse
            // all but one (a duplicate catalog row), and CockroachDB may ask to retry.
            var attempt = 0
            while true {
                attempt += 1
                do {
                    try await connection.query(PostgresQuery(unsafeSQL: ConsensusSQL.createTable), logger: logger)
                    break
                } catch let error as PSQLError where attempt < 20 && ["23505", "42P07", "40001", "40P01"].contains(
                    error.serverInfo?[.sqlState] ?? "")
                {
                    try? await Task.sleep(for: .milliseconds(10 * attempt))
                }
            }
            do {
                try await connection.query(PostgresQuery(unsafeSQL: ConsensusSQL.checkTable), logger: logger)
            } catch {
                throw OpenFailure(
                    "a table named \(tableName) exists but lacks the columns shard, sequence_number and data "
                        + "(\(describe(error)))")
            }
        } catch {
            try? await connection.close()
            if let failure = error as? OpenFailure { throw .determinate(.rejected, "\(what): \(failure.message)") }
            throw .determinate(.rejected, "\(what): \(describe(error))")
        }
        try? await connection.close()
    }

    private struct OpenFailure: Error {
        let message: String
        init(_ message: String) { self.message = message }
    }

    enum StoredValueError: Error, CustomStringConvertible {
        case negativeSequenceNumber(Int64)

        var description: String {
            switch self {
            case .negativeSequenceNumber(let n): return "the consensus table holds a negative sequence number \(n)"
            }
        }
    }

    /// What a failed first connection means for the person running the program.
    private static func describeConnectFailure(_ error: any Error, _ c: Configuration) -> String {
        if let e = error as? PSQLError {
            switch e.code {
            case .authMechanismRequiresPassword:
                return "the server asks for a password and none was given (add ?password_file=/path to the URL or set PGPASSWORD)"
            case .server:
                let state = e.serverInfo?[.sqlState] ?? ""
                if state == "28P01" {
                    return "password authentication failed for \(c.location.user) (\(describe(error))); "
                        + (c.location.passwordFile.map { "the password came from \($0)" } ?? "the password came from PGPASSWORD")
                }
                if state == "3D000" { return "the database \(c.location.database) does not exist (\(describe(error)))" }
                // pg_hba.conf has no rule for this client; with `disable` it may well be
                // that the rules only admit TLS connections (hostssl).
                if state == "28000", c.location.tls == .disable {
                    return "\(describe(error)); the server may accept only TLS connections from here: "
                        + "try sslmode=require or sslmode=verify-full"
                }
            default:
                break
            }
        }
        return describe(error)
    }

    /// What a first connection's failure means when TLS is the cause: the error code and
    /// the words, or nil when TLS is not to blame. A certificate that fails `verify-full`
    /// is `rejected` (trying again will not help); a server without TLS is `unavailable`.
    private static func describeTLSFailure(_ error: any Error, _ c: Configuration) -> (StorageError.Code, String)? {
        var cause = error
        if let e = error as? PSQLError {
            if e.code == .sslUnsupported {
                return (
                    .unavailable,
                    "the server does not offer TLS, which sslmode=\(c.location.tls.rawValue) requires "
                        + "(enable ssl on the server, or use sslmode=prefer or disable on a trusted network)"
                )
            }
            if let underlying = e.underlying { cause = underlying }
        }
        if let extra = cause as? NIOSSLExtraError, extra == .failedToValidateHostname {
            let host: String
            if case .tcp(let name, _) = c.location.endpoint { host = name } else { host = "" }
            return (
                .rejected,
                "the server's certificate does not name \(host) (sslmode=verify-full checks the URL's host, a name or an IP "
                    + "address, against the names the certificate carries)"
            )
        }
        if let ssl = cause as? NIOSSLError, case .handshakeFailed(let reason) = ssl {
            if "\(reason)".contains("CERTIFICATE_VERIFY_FAILED") {
                let roots = c.location.trustRootsFile.map { "the system's or those in \($0)" } ?? "the system's"
                return (
                    .rejected,
                    "the server's certificate is not trusted: not issued by a trusted root (\(roots)), expired, or otherwise "
                        + "invalid (a private CA's certificate is trusted with sslrootcert=/path/ca.pem)"
                )
            }
            return (.unavailable, "the TLS handshake failed: \(reason)")
        }
        return nil
    }

    /// A driver error in words, without the statement's bound values (they can be large).
    static func describe(_ error: any Error) -> String {
        switch PostgresFailure(error) {
        case .server(let state, let severity, let message): return "\(severity) \(state): \(message)"
        case .connectionLost(let text): return text
        case .closed: return "the client is closed"
        case .unreachable: return "cannot connect"
        case .timedOut: return "timed out"
        case .cancelled: return "cancelled"
        case .other(let text): return text
        }
    }
}

/// The statements, in the SQL subset PostgreSQL and CockroachDB both accept
/// (deploy/postgres.md lists it). `$1` is always the encoded key.
enum ConsensusSQL {
    static let createTable = """
        CREATE TABLE IF NOT EXISTS consensus (
            shard text NOT NULL,
            sequence_number bigint NOT NULL,
            data bytea NOT NULL,
            PRIMARY KEY (shard, sequence_number))
        """

    static let checkTable = "SELECT shard, sequence_number, data FROM consensus LIMIT 0"

    static let head = """
        SELECT sequence_number, data FROM consensus WHERE shard = $1 ORDER BY sequence_number DESC LIMIT 1
        """

    /// `$2`, `$3`: the new version; `$4`: the expected head's sequence number.
    static let insertNext = """
        INSERT INTO consensus (shard, sequence_number, data) \
        SELECT $1, $2, $3 WHERE (SELECT max(sequence_number) FROM consensus WHERE shard = $1) = $4 \
        ON CONFLICT DO NOTHING RETURNING sequence_number
        """

    /// The first version of a key: inserted only if the key has none.
    static let insertFirst = """
        INSERT INTO consensus (shard, sequence_number, data) \
        SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM consensus WHERE shard = $1) \
        ON CONFLICT DO NOTHING RETURNING sequence_number
        """

    /// `$2`: from; `$3`: limit.
    static let scan = """
        SELECT sequence_number, data FROM consensus WHERE shard = $1 AND sequence_number >= $2 \
        ORDER BY sequence_number ASC LIMIT $3
        """

    /// Deletes below `$2` only when a version at or above it exists, so the head stays.
    static let truncate = """
        DELETE FROM consensus WHERE shard = $1 AND sequence_number < $2 \
        AND EXISTS (SELECT 1 FROM consensus WHERE shard = $1 AND sequence_number >= $2) \
        RETURNING sequence_number
        """

    static let listKeys = "SELECT DISTINCT shard FROM consensus"

    static let begin = "BEGIN ISOLATION LEVEL SERIALIZABLE"
    static let commit = "COMMIT"
    static let rollback = "ROLLBACK"
}
