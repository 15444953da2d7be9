import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistPostgres
import PersistServices
import Testing

/// PostgresConsensus against a real server, beyond the conformance suite: opening
/// (concurrently, with and without passwords, failing clearly), how keys are stored,
/// timeouts before and after sending, and opening through location URLs.
@Suite struct PostgresConsensusTests {
    static let v1 = VersionedData(seqno: SeqNo(1), data: Array("one".utf8))

    @Test func severalProcessesMayCreateTheTableAtOnce() async throws {
        let (_, url) = try await PostgresTestSupport.freshDatabase("concurrent_open")
        let clients = OpenClients()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<6 {
                group.addTask { _ = clients.add(try await PostgresTestSupport.open(url)) }
            }
            try await group.waitForAll()
        }
        let a = try await PostgresTestSupport.open(url)
        let b = try await PostgresTestSupport.open(url)
        #expect(try await a.compareAndSet("k", expected: nil, new: Self.v1) == .committed)
        #expect(try await b.head("k") == Self.v1)
        await a.close()
        await b.close()
        await clients.closeAll()
    }

    @Test func persistKeysAreStoredAsTheyAreAndOddOnesRoundTrip() async throws {
        let (server, url) = try await PostgresTestSupport.freshDatabase("keys")
        let c = try await PostgresTestSupport.open(url)
        let shard = "s7a5a0000-0000-4000-8000-000000000001"
        let odd = "100%\u{0}done"
        #expect(try await c.compareAndSet(shard, expected: nil, new: Self.v1) == .committed)
        #expect(try await c.compareAndSet(odd, expected: nil, new: Self.v1) == .committed)
        #expect(try await c.listKeys() == [odd, shard])
        #expect(try await c.head(odd) == Self.v1)
        let database = String(url.split(separator: "/").last ?? "")
        let stored = try await server.psqlAsync("SELECT shard FROM consensus ORDER BY shard", database: database)
        #expect(stored.split(separator: "\n") == ["100%25%00done", Substring(shard)])
        await c.close()
    }

    @Test func aClosedClientFailsDeterminately() async throws {
        let (_, url) = try await PostgresTestSupport.freshDatabase("closed")
        let c = try await PostgresTestSupport.open(url)
        await c.close()
        await c.close()  // twice is fine
        do throws(StorageError) {
            _ = try await c.compareAndSet("k", expected: nil, new: Self.v1)
            Issue.record("a closed client must refuse")
        } catch {
            #expect(error.isDeterminate, "nothing was sent: \(error)")
            #expect(error.code == .unavailable)
        }
    }

    @Test func openingFailsClearly() async throws {
        // Nothing listens on a port that was just free.
        let port = try PostgresTestServer.freeLoopbackPort()
        await #expect {
            _ = try await PostgresTestSupport.open("postgres://postgres@127.0.0.1:\(port)/db")
        } throws: { error in
            let e = error as? StorageError
            return e?.isDeterminate == true && e?.code == .unavailable && e?.message.contains("127.0.0.1:\(port)") == true
        }
        let server = try await PostgresTestServer.shared()
        await #expect {
            _ = try await PostgresTestSupport.open(server.url(database: "no_such_database"))
        } throws: { error in
            (error as? StorageError)?.message.contains("does not exist") == true
        }
        // A table of another shape is not silently used.
        let name = PostgresTestSupport.freshName("other_table")
        let url = try await server.createDatabase(name)
        try await server.psqlAsync("CREATE TABLE consensus (k integer)", database: name)
        await #expect {
            _ = try await PostgresTestSupport.open(url)
        } throws: { error in
            (error as? StorageError)?.message.contains("lacks the columns") == true
        }
    }

    /// A statement held up by a lock after it was sent times out indeterminately, and
    /// indeed takes effect later; one still waiting for the pool's only connection times
    /// out determinately, and indeed never runs.
    @Test func timeoutsSayWhetherTheStatementWasSent() async throws {
        let (server, url) = try await PostgresTestSupport.freshDatabase("timeouts")
        let database = String(url.split(separator: "/").last ?? "")
        let setup = try await PostgresTestSupport.open(url)
        #expect(try await setup.compareAndSet("held", expected: nil, new: Self.v1) == .committed)
        await setup.close()

        // Opened first: opening reads the table, which the locker is about to take.
        let c = try await PostgresTestSupport.open(url + "?max_connections=1", operationTimeout: .seconds(3))
        // Another session takes the table and keeps it until it is terminated.
        let locker = TableLocker(server: server, database: database, name: "timeouts-locker")
        let v2 = VersionedData(seqno: SeqNo(2), data: Array("two".utf8))
        do {
            try await locker.waitUntilHeld()
            let sent = Task { try await c.compareAndSet("held", expected: SeqNo(1), new: v2) }
            // Once that statement waits for the lock in the server, the pool's only
            // connection is busy: the next statement cannot even be sent.
            try await Self.waitFor("the compare-and-set to wait for the lock", server: server, database: database) {
                """
                SELECT count(*) FROM pg_stat_activity WHERE application_name = 'txn-wal-consensus' \
                AND wait_event_type = 'Lock' AND datname = current_database()
                """
            }
            do throws(StorageError) {
                _ = try await c.head("held")
                Issue.record("the head must time out waiting for a connection")
            } catch {
                #expect(error.code == .timeout)
                #expect(error.isDeterminate, "it never reached the server: \(error)")
            }
            let outcome = await sent.result
            if case .failure(let failure) = outcome, let error = failure as? StorageError {
                #expect(error.code == .timeout)
                #expect(!error.isDeterminate, "it was sent and may still run: \(error)")
            } else {
                Issue.record("the held compare-and-set must time out, got \(outcome)")
            }
        } catch {
            try? await locker.release()
            await c.close()
            throw error
        }

        // Let it run: it commits, although its caller was told it timed out.
        try await locker.release()
        let patient = try await PostgresTestSupport.open(url)
        let deadline = ContinuousClock.now + .seconds(120)
        while try await patient.head("held") != v2, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(try await patient.scanAll("held") == [Self.v1, v2])
        await patient.close()
        await c.close()
    }

    /// A compare-and-set whose insert fails inside its serializable transaction (here:
    /// the table is locked and the database's lock_timeout fires) rolls the transaction
    /// back, so the pool's only connection serves the next one; an aborted transaction
    /// left open would refuse every later statement (SQLSTATE 25P02).
    @Test func aFailedInsertRollsItsTransactionBack() async throws {
        let (server, url) = try await PostgresTestSupport.freshDatabase("rollback")
        let database = String(url.split(separator: "/").last ?? "")
        let setup = try await PostgresTestSupport.open(url)
        #expect(try await setup.compareAndSet("held", expected: nil, new: Self.v1) == .committed)
        await setup.close()
        try await server.psqlAsync("ALTER DATABASE \(database) SET lock_timeout = '100ms'", database: "postgres")

        let c = try await PostgresTestSupport.open(url + "?max_connections=1")
        let locker = TableLocker(server: server, database: database, name: "rollback-locker")
        let v2 = VersionedData(seqno: SeqNo(2), data: Array("two".utf8))
        do {
            try await locker.waitUntilHeld()
            do throws(StorageError) {
                _ = try await c.compareAndSet("held", expected: SeqNo(1), new: v2)
                Issue.record("the compare-and-set must fail while the table is locked")
            } catch {
                #expect(error.message.contains("55P03"), "the lock timeout, not something else: \(error)")
            }
        } catch {
            try? await locker.release()
            await c.close()
            throw error
        }
        try await locker.release()
        #expect(try await c.compareAndSet("held", expected: SeqNo(1), new: v2) == .committed)
        #expect(try await c.scanAll("held") == [Self.v1, v2])
        await c.close()
    }

    /// Polls `sql` (a count) on `database` until it is positive; a hang guard, not a timing.
    static func waitFor(
        _ what: String, server: PostgresTestServer, database: String, _ sql: () -> String
    ) async throws {
        let query = sql()
        let deadline = ContinuousClock.now + .seconds(120)
        while ContinuousClock.now < deadline {
            let count = try await server.psqlAsync(query, database: database).trimmingCharacters(in: .whitespacesAndNewlines)
            if (Int(count) ?? 0) > 0 { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw PostgresServerError("gave up waiting for \(what)")
    }

    // MARK: location URLs

    @Test func backendsWithoutTheModuleRefusePostgresClearly() async throws {
        #expect {
            _ = try Backends.consensus("postgres://app@db.internal:5432/txn")
        } throws: { error in
            let e = error as? StorageError
            return e?.isDeterminate == true && e?.message.contains("PersistPostgres") == true
        }
        await #expect {
            _ = try await Backends.consensus("postgres://app@db.internal:5432/txn", postgres: nil)
        } throws: { error in
            (error as? StorageError)?.message.contains("PersistPostgres") == true
        }
    }

    @Test func theOpenerOpensPostgresAndBackendsEverythingElse() async throws {
        let (_, url) = try await PostgresTestSupport.freshDatabase("backends")
        let opened = try await Backends.consensus(url, postgres: PostgresBackends.opener(environment: [:]))
        #expect(opened.backend is PostgresConsensus)
        #expect(try await opened.backend.compareAndSet("k", expected: nil, new: Self.v1) == .committed)
        await opened.close()
        let again = try await Backends.consensus(url + "?max_connections=2", postgres: PostgresBackends.opener(environment: [:]))
        #expect(try await again.backend.head("k") == Self.v1)
        await again.close()

        let memory = try await Backends.consensus("mem://postgres-backends-\(UUID().uuidString.prefix(8))", postgres: PostgresBackends.opener())
        #expect(!(memory.backend is PostgresConsensus))
        await memory.close()
        await #expect(throws: LocationParseError.self) { _ = try await Backends.consensus("nonsense", postgres: PostgresBackends.opener()) }
    }

    /// A server that wants passwords over TCP: they come from the password file or from
    /// PGPASSWORD, never from the URL, and every failure says what to do.
    @Test func passwordsComeFromAFileOrTheEnvironment() async throws {
        let server = try await PostgresTestServer.startAsync(maxConnections: 50, passwordsOverTCP: true)
        let scratch = NSTemporaryDirectory() + "pg-passwords-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        do {
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            let secret = "s3cret-\(UUID().uuidString.prefix(6))"
            try await server.psqlAsync("ALTER ROLE postgres PASSWORD '\(secret)'")
            let url = try await server.createDatabase("passwords")
            try Data("\(secret)\n".utf8).write(to: URL(fileURLWithPath: scratch + "/right"))
            try Data("wrong\n".utf8).write(to: URL(fileURLWithPath: scratch + "/wrong"))

            let fromFile = try await Backends.consensus(url + "?password_file=\(scratch)/right", postgres: PostgresBackends.opener(environment: [:]))
            #expect(try await fromFile.backend.compareAndSet("k", expected: nil, new: Self.v1) == .committed)
            await fromFile.close()

            let fromEnvironment = try await Backends.consensus(url, postgres: PostgresBackends.opener(environment: ["PGPASSWORD": secret]))
            #expect(try await fromEnvironment.backend.head("k") == Self.v1)
            await fromEnvironment.close()

            await #expect {
                _ = try await Backends.consensus(url + "?password_file=\(scratch)/wrong", postgres: PostgresBackends.opener(environment: [:]))
            } throws: { error in
                let text = "\(error)"
                return text.contains("password authentication failed") && text.contains("\(scratch)/wrong")
            }
            await #expect {
                _ = try await Backends.consensus(url, postgres: PostgresBackends.opener(environment: [:]))
            } throws: { error in
                "\(error)".contains("password_file") && "\(error)".contains("PGPASSWORD")
            }
            await #expect {
                _ = try await Backends.consensus(url + "?password_file=\(scratch)/missing", postgres: PostgresBackends.opener(environment: [:]))
            } throws: { error in
                (error as? StorageError)?.code == .invalidArgument
            }
            // In the URL: refused before anything is tried, without repeating the secret.
            let inline = url.replacingOccurrences(of: "postgres@", with: "postgres:\(secret)@")
            await #expect {
                _ = try await Backends.consensus(inline, postgres: PostgresBackends.opener(environment: [:]))
            } throws: { error in
                let text = "\(error)"
                return error is LocationParseError && !text.contains(secret) && text.contains("password_file")
                    && text.contains("PGPASSWORD")
            }
        } catch {
            await server.removeAsync()
            throw error
        }
        await server.removeAsync()
    }
}

/// Another session (psql, named `name`) that takes the consensus table of `database` in
/// ACCESS EXCLUSIVE mode and keeps it until `release` terminates it.
struct TableLocker: Sendable {
    let server: PostgresTestServer
    let database: String
    let name: String
    private let session: Task<ChildProgram.Outcome, any Error>

    init(server: PostgresTestServer, database: String, name: String) {
        self.server = server
        self.database = database
        self.name = name
        let arguments = server.connectionArguments(tcp: false) + [
            "-X", "-q", "-d", database, "-c",
            "SET application_name = '\(name)'; BEGIN; LOCK TABLE consensus IN ACCESS EXCLUSIVE MODE; "
                + "SELECT pg_sleep(600); COMMIT;",
        ]
        let psql = server.binaries.psql
        session = Task { try await ChildProgram.run(executable: psql, arguments: arguments, timeout: .seconds(900)) }
    }

    /// Returns once the lock is granted (polling `pg_locks` of this database).
    func waitUntilHeld() async throws {
        try await PostgresConsensusTests.waitFor("\(name)'s lock", server: server, database: database) {
            """
            SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation \
            WHERE c.relname = 'consensus' AND l.mode = 'AccessExclusiveLock' AND l.granted \
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            """
        }
    }

    /// Ends the session, which drops the lock.
    func release() async throws {
        try await server.psqlAsync(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = '\(name)'", database: database)
        _ = try? await session.value
    }
}
