import Foundation
import PersistCore
import Testing

@testable import PersistPostgres

/// The pure parts: which failures are determinate, the deadline race, key encoding and
/// password lookup. No server.
@Suite struct PostgresFailureTests {
    static func server(_ state: String, _ severity: String = "ERROR") -> PostgresFailure {
        .server(sqlState: state, severity: severity, message: "test")
    }

    @Test(arguments: ["40001", "40P01", "42601", "42P01", "42501", "23505", "22021", "0A000", "28P01", "3D000", "53300"])
    func serverErrorsThatProveARollbackAreDeterminate(_ state: String) {
        let error = Self.server(state).storageError(sent: true, operation: "cas")
        #expect(error.isDeterminate, "\(state) should be determinate: \(error)")
    }

    @Test(arguments: ["40003", "57P01", "57014", "08006", "XX000", "53100", "58030", "", "4000"])
    func otherServerErrorsAreIndeterminate(_ state: String) {
        let error = Self.server(state).storageError(sent: true, operation: "cas")
        #expect(!error.isDeterminate, "\(state) should be indeterminate: \(error)")
    }

    @Test func fatalAndPanicAreIndeterminateWhateverTheState() {
        for severity in ["FATAL", "PANIC", ""] {
            #expect(!Self.server("42601", severity).storageError(sent: true, operation: "cas").isDeterminate)
        }
    }

    @Test func failuresAfterSendingAreIndeterminate() {
        for failure: PostgresFailure in [.connectionLost("reset"), .timedOut, .cancelled, .other("decoding"), .closed] {
            let error = failure.storageError(sent: true, operation: "compare-and-set of k")
            #expect(!error.isDeterminate, "\(failure)")
            #expect(error.message.hasPrefix("compare-and-set of k"))
        }
        #expect(PostgresFailure.timedOut.storageError(sent: true, operation: "x").code == .timeout)
        #expect(PostgresFailure.connectionLost("x").storageError(sent: true, operation: "x").code == .unavailable)
    }

    @Test func anythingBeforeSendingIsDeterminate() {
        for failure: PostgresFailure in [
            .connectionLost("reset"), .timedOut, .cancelled, .other("x"), .closed, .unreachable, Self.server("XX000", "FATAL"),
        ] {
            let error = failure.storageError(sent: false, operation: "cas")
            #expect(error.isDeterminate, "\(failure)")
            #expect(error.message.contains("before it reached the server"))
        }
    }

    @Test func onlyConcurrencyFailuresAreRetried() {
        #expect(Self.server("40001").isRetryable)
        #expect(Self.server("40P01").isRetryable)
        #expect(!Self.server("40001", "FATAL").isRetryable)
        #expect(!Self.server("40003").isRetryable)
        #expect(!Self.server("23505").isRetryable)
        #expect(!PostgresFailure.connectionLost("x").isRetryable)
    }

    // MARK: the deadline race

    @Test func aDeadlineBeforeSendingStopsTheStatementForGood() {
        var a = StatementAttempt()
        let abandoned = a.deadlinePassed()
        #expect(abandoned == false)
        let sent = a.send()
        #expect(!sent, "an abandoned statement must never be sent")
        let finished = a.finish()
        #expect(finished.decided == false)
        #expect(!a.maySendOrHaveSent)
    }

    @Test func aDeadlineAfterSendingIsIndeterminateAndWins() {
        var a = StatementAttempt()
        let sent = a.send()
        #expect(sent)
        let abandoned = a.deadlinePassed()
        #expect(abandoned == true)
        let finished = a.finish()
        #expect(finished.decided == false, "the late answer is dropped")
        #expect(a.maySendOrHaveSent)
    }

    @Test func anAnswerBeforeTheDeadlineWins() {
        var a = StatementAttempt()
        let sent = a.send()
        #expect(sent)
        let f = a.finish()
        #expect(f.decided && f.sent)
        let late = a.deadlinePassed()
        #expect(late == nil)

        var unsent = StatementAttempt()
        let g = unsent.finish()  // e.g. the pool refused before sending
        #expect(g.decided && !g.sent)
        let lateToo = unsent.deadlinePassed()
        #expect(lateToo == nil)
        let sentAfter = unsent.send()
        #expect(!sentAfter)
    }

    // MARK: keys

    @Test func keysWithoutPercentOrNulAreStoredAsThemselves() {
        for key in ["s7a5a0000-0000-4000-8000-000000000001", "", "a/b", "caf\u{E9}", "x y"] {
            #expect(ShardKeyEncoding.encode(key) == key)
            #expect(ShardKeyEncoding.decode(key) == key)
        }
    }

    @Test func encodingIsOneToOne() {
        let keys = ["%", "%25", "%00", "\u{0}", "a\u{0}b", "%%", "100%", "%2", "\u{0}\u{0}", "%\u{0}"]
        let encoded = keys.map(ShardKeyEncoding.encode)
        #expect(Set(encoded).count == keys.count)
        for (key, stored) in zip(keys, encoded) {
            #expect(!stored.utf8.contains(0), "no NUL may reach the text column")
            #expect(ShardKeyEncoding.decode(stored) == key)
        }
        #expect(ShardKeyEncoding.encode("a%b\u{0}") == "a%25b%00")
        #expect(ShardKeyEncoding.decode("bad%zz") == nil)
        #expect(ShardKeyEncoding.decode("trailing%2") == nil)
    }

    // MARK: passwords

    @Test func passwordFileWinsOverTheEnvironment() throws {
        let files = ["/secret": Data("from-file\nsecond line\n".utf8), "/crlf": Data("p w\r\n".utf8), "/empty": Data("\n".utf8)]
        let read: (String) -> Data? = { files[$0] }
        let env = ["PGPASSWORD": "from-env"]
        #expect(try PostgresPassword.resolve(passwordFile: "/secret", environment: env, readFile: read) == "from-file")
        #expect(try PostgresPassword.resolve(passwordFile: "/crlf", environment: [:], readFile: read) == "p w")
        #expect(try PostgresPassword.resolve(passwordFile: nil, environment: env, readFile: read) == "from-env")
        #expect(try PostgresPassword.resolve(passwordFile: nil, environment: [:], readFile: read) == nil)
        #expect {
            try PostgresPassword.resolve(passwordFile: "/missing", environment: env, readFile: read)
        } throws: { error in
            let e = error as? StorageError
            return e?.code == .invalidArgument && e?.isDeterminate == true && e?.message.contains("/missing") == true
        }
        #expect(throws: StorageError.self) { try PostgresPassword.resolve(passwordFile: "/empty", environment: env, readFile: read) }
    }
}
