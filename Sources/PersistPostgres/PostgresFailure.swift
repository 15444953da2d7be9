import PersistCore

/// What went wrong with one statement, in the terms that decide whether it may have
/// taken effect. Built from the driver's errors by `PostgresConsensus`; mapped to a
/// `StorageError` by `storageError(sent:operation:)`, which is pure and tested alone.
enum PostgresFailure: Hashable, Sendable {
    /// The server answered with an error (`sqlState` is the five-character SQLSTATE,
    /// `severity` the non-localized ERROR, FATAL or PANIC).
    case server(sqlState: String, severity: String, message: String)
    /// The connection closed or broke, on either side.
    case connectionLost(String)
    /// `PostgresConsensus.close()` closed the pool.
    case closed
    /// The pool could not connect for a long time and gave up on waiting requests.
    case unreachable
    /// The operation's deadline passed.
    case timedOut
    /// The waiting was cancelled (a deadline or the caller's task).
    case cancelled
    /// Anything else: a protocol or decoding failure, an unexpected error type.
    case other(String)

    /// SQLSTATEs (with severity ERROR) that prove the statement's transaction was rolled
    /// back: the server refused it before or while running it, and nothing committed.
    ///
    /// Whole classes: 22 data exception, 23 integrity constraint violation, 42 syntax
    /// error or access rule violation, 0A feature not supported, 28 invalid
    /// authorization. Single codes: 40001 serialization failure and 40P01 deadlock
    /// (the transaction was aborted; retrying is safe), 3D000 no such database, 3F000 no
    /// such schema, 53300 too many connections, 25006 read-only transaction.
    ///
    /// Deliberately absent: FATAL and PANIC (the backend died, possibly after
    /// committing), 40003 (CockroachDB's "statement completion unknown"), class 57
    /// (operator intervention: a shutdown or cancel can land after the commit), 08
    /// (connection exception), 53100 and 58 (disk and system errors), XX (internal).
    static let determinateClasses: Set<String> = ["22", "23", "42", "0A", "28"]
    static let determinateStates: Set<String> = ["40001", "40P01", "3D000", "3F000", "53300", "25006"]

    /// States worth retrying at once: the statement was aborted only because of a
    /// concurrent one, and the same statement may well succeed now.
    static let retryableStates: Set<String> = ["40001", "40P01"]

    /// Whether the server's answer proves the statement did not take effect.
    var provesNothingHappened: Bool {
        guard case .server(let state, let severity, _) = self, severity == "ERROR", state.count == 5 else { return false }
        return Self.determinateStates.contains(state) || Self.determinateClasses.contains(String(state.prefix(2)))
    }

    /// Whether `PostgresConsensus` should run the statement again by itself.
    var isRetryable: Bool {
        guard case .server(let state, _, _) = self else { return false }
        return provesNothingHappened && Self.retryableStates.contains(state)
    }

    /// The storage error for this failure of `operation`. `sent` says whether the
    /// statement may have reached the server: when it cannot have, the error is
    /// determinate whatever the failure; when it may have, it is determinate only if the
    /// server's answer proves the statement was rolled back.
    func storageError(sent: Bool, operation: String) -> StorageError {
        let determinacy: StorageError.Determinacy = !sent || provesNothingHappened ? .determinate : .indeterminate
        let message: String
        let code: StorageError.Code
        switch self {
        case .server(let state, let severity, let text):
            message = "PostgreSQL \(severity) \(state): \(text)"
            code = Self.code(sqlState: state)
        case .connectionLost(let text):
            message = "the connection to PostgreSQL was lost (\(text))"
            code = .unavailable
        case .closed:
            message = "the PostgreSQL consensus client is closed"
            code = .unavailable
        case .unreachable:
            message = "cannot connect to PostgreSQL (the pool gave up after repeated failures; the log has each one)"
            code = .unavailable
        case .timedOut:
            message = "no answer from PostgreSQL in time"
            code = .timeout
        case .cancelled:
            message = "cancelled"
            code = .timeout
        case .other(let text):
            message = text
            code = .io
        }
        let when = sent ? "" : " (before it reached the server)"
        return StorageError(code, determinacy, "\(operation)\(when): \(message)")
    }

    static func code(sqlState: String) -> StorageError.Code {
        switch sqlState.prefix(2) {
        case "40", "28": return .rejected
        case "22", "23": return .invalidArgument
        case "53", "57", "08": return .unavailable
        case "42", "0A", "3D", "3F", "25": return .rejected
        default: return .io
        }
    }
}
