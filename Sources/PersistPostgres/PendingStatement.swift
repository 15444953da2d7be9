import Logging
import PersistCore
import PostgresNIO
import Synchronization

/// A statement's failure and whether it may have reached the server.
struct FailedStatement: Error {
    let failure: PostgresFailure
    let sent: Bool
}

/// One run of a statement on a pooled connection, raced by a deadline and by the
/// caller's cancellation (`StatementAttempt` decides which wins).
///
/// The statement runs in a task of its own: the driver cannot abandon a statement it has
/// sent, so when the deadline wins, that task is left to finish in the background (its
/// connection goes back to the pool when the server answers or the connection breaks)
/// and the caller gets its timeout at once.
final class PendingStatement<T: Sendable>: Sendable {
    private struct State {
        var attempt = StatementAttempt()
        var continuation: CheckedContinuation<Result<T, FailedStatement>, Never>?
        /// The outcome, when it was decided before the continuation was installed.
        var early: Result<T, FailedStatement>?
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
    }

    private let state = Mutex(State())

    /// Why a statement was not sent.
    private enum NotSent: Error {
        case abandoned
        case connectionClosed
    }

    func run(
        client: PostgresClient, watch: ConnectionWatch, logger: Logger, deadline: ContinuousClock.Instant,
        _ body: @escaping @Sendable (PostgresConnection, Logger) async throws -> T
    ) async -> Result<T, FailedStatement> {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Result<T, FailedStatement>, Never>) in
                let early = state.withLock { s -> Result<T, FailedStatement>? in
                    if let early = s.early { return early }
                    s.continuation = continuation
                    return nil
                }
                if let early {
                    continuation.resume(returning: early)
                    return
                }
                let work = Task {
                    do {
                        let value = try await client.withConnection { connection in
                            // A connection the server already closed cannot have run it.
                            guard !connection.isClosed else { throw NotSent.connectionClosed }
                            guard self.state.withLock({ $0.attempt.send() }) else { throw NotSent.abandoned }
                            // The driver can lose a statement written just as its connection
                            // closes (its answer then never comes): the close decides then.
                            let token = watch.register(connection) {
                                self.abandon(.connectionLost("the connection closed before the answer came"))
                            }
                            defer { watch.unregister(connection.id, token) }
                            return try await body(connection, logger)
                        }
                        self.finish(.success(value))
                    } catch {
                        self.finish(.failure(error))
                    }
                }
                let timer = Task {
                    do {
                        try await Task.sleep(until: deadline, clock: .continuous)
                    } catch {
                        return  // the statement finished first
                    }
                    self.abandon(.timedOut)
                }
                let decided = state.withLock { s -> Bool in
                    s.work = work
                    s.timer = timer
                    return s.continuation == nil
                }
                // Decided while the tasks were being recorded: stop whichever still runs
                // (an abandoned statement must not keep waiting for a connection).
                if decided {
                    timer.cancel()
                    work.cancel()
                }
            }
        } onCancel: {
            self.abandon(.cancelled)
        }
    }

    /// The statement's own outcome.
    private func finish(_ result: Result<T, any Error>) {
        let (continuation, outcome, timer) = state.withLock {
            s -> (CheckedContinuation<Result<T, FailedStatement>, Never>?, Result<T, FailedStatement>?, Task<Void, Never>?) in
            let (decided, sent) = s.attempt.finish()
            guard decided else { return (nil, nil, nil) }
            let outcome = result.mapError { error in
                let failure: PostgresFailure
                switch error as? NotSent {
                case .abandoned: failure = .cancelled
                case .connectionClosed: failure = .connectionLost("the pooled connection was already closed")
                case nil: failure = PostgresFailure(error)
                }
                return FailedStatement(failure: failure, sent: sent)
            }
            let c = s.continuation
            s.continuation = nil
            if c == nil { s.early = outcome }
            return (c, outcome, s.timer)
        }
        timer?.cancel()
        if let continuation, let outcome { continuation.resume(returning: outcome) }
    }

    /// The deadline passed or the caller was cancelled.
    private func abandon(_ failure: PostgresFailure) {
        let (continuation, outcome, work) = state.withLock {
            s -> (CheckedContinuation<Result<T, FailedStatement>, Never>?, Result<T, FailedStatement>?, Task<Void, Never>?) in
            guard let afterSending = s.attempt.deadlinePassed() else { return (nil, nil, nil) }
            let outcome = Result<T, FailedStatement>.failure(FailedStatement(failure: failure, sent: afterSending))
            let c = s.continuation
            s.continuation = nil
            if c == nil { s.early = outcome }
            return (c, outcome, s.work)
        }
        // Still waiting for a connection: stop waiting (it will never be sent now).
        work?.cancel()
        if let continuation, let outcome { continuation.resume(returning: outcome) }
    }
}

/// The statements running on each pooled connection, told when their connection closes.
///
/// One close callback per connection (not per statement, which would pile up on a
/// long-lived connection); statements register for their run and unregister after.
final class ConnectionWatch: Sendable {
    private struct State {
        var nextToken = 0
        /// Connection id -> token -> what to do if it closes.
        var running: [PostgresConnection.ID: [Int: @Sendable () -> Void]] = [:]
        var watched: Set<PostgresConnection.ID> = []
    }

    private let state = Mutex(State())

    func register(_ connection: PostgresConnection, _ onClose: @escaping @Sendable () -> Void) -> Int {
        let id = connection.id
        let (token, newlyWatched) = state.withLock { s -> (Int, Bool) in
            s.nextToken += 1
            s.running[id, default: [:]][s.nextToken] = onClose
            return (s.nextToken, s.watched.insert(id).inserted)
        }
        // On a connection that is already closed this runs at once.
        if newlyWatched { connection.closeFuture.whenComplete { _ in self.closed(id) } }
        return token
    }

    func unregister(_ id: PostgresConnection.ID, _ token: Int) {
        state.withLock { s in
            s.running[id]?[token] = nil
            if s.running[id]?.isEmpty == true { s.running[id] = nil }
        }
    }

    private func closed(_ id: PostgresConnection.ID) {
        let callbacks = state.withLock { s -> [@Sendable () -> Void] in
            s.watched.remove(id)
            return Array((s.running.removeValue(forKey: id) ?? [:]).values)
        }
        for callback in callbacks { callback() }
    }
}

extension PostgresFailure {
    /// The failure a driver error stands for.
    init(_ error: any Error) {
        if let failed = error as? FailedStatement {
            self = failed.failure
            return
        }
        if let e = error as? PSQLError {
            switch e.code {
            case .server:
                let info = e.serverInfo
                var message = info?[.message] ?? "no message"
                if let detail = info?[.detail] { message += " (\(detail))" }
                self = .server(
                    sqlState: info?[.sqlState] ?? "", severity: info?[.severity] ?? info?[.localizedSeverity] ?? "",
                    message: message)
            case .serverClosedConnection, .clientClosedConnection, .uncleanShutdown, .connectionError:
                self = .connectionLost(Self.underlyingText(e))
            case .poolClosed:
                self = .closed
            case .queryCancelled:
                self = .cancelled
            default:
                self = .other("PostgreSQL client error \(e.code)\(e.underlying.map { ": \($0)" } ?? "")")
            }
            return
        }
        if error is CancellationError {
            self = .cancelled
            return
        }
        // The pool's own errors (ConnectionPoolError, from an underscored module) are
        // told apart by name; they all happen before a statement is sent, so only the
        // message depends on this.
        let text = String(describing: error)
        if text.contains("connectionCreationCircuitBreakerTripped") {
            self = .unreachable
        } else if text.contains("poolShutdown") {
            self = .closed
        } else if text.contains("requestCancelled") {
            self = .cancelled
        } else {
            self = .other(text)
        }
    }

    private static func underlyingText(_ e: PSQLError) -> String {
        "\(e.code)" + (e.underlying.map { ": \($0)" } ?? "")
    }
}

/// Whichever comes first of `body`'s outcome and a deadline. A body still running at the
/// deadline is left to finish in the background (its result dropped).
final class FirstOutcome<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<Result<T, StorageError>?, Never>?>(nil)

    private init() {}

    private func decide(_ outcome: Result<T, StorageError>?) {
        let c = continuation.withLock { c -> CheckedContinuation<Result<T, StorageError>?, Never>? in
            defer { c = nil }
            return c
        }
        c?.resume(returning: outcome)
    }

    /// `body`'s outcome, or nil if the deadline came first.
    static func race(
        deadline: ContinuousClock.Instant, _ body: @escaping @Sendable () async throws(StorageError) -> T
    ) async -> Result<T, StorageError>? {
        let race = FirstOutcome()
        return await withCheckedContinuation { (c: CheckedContinuation<Result<T, StorageError>?, Never>) in
            race.continuation.withLock { $0 = c }
            let timer = Task {
                guard (try? await Task.sleep(until: deadline, clock: .continuous)) != nil else { return }
                race.decide(nil)
            }
            Task {
                let outcome: Result<T, StorageError>
                do throws(StorageError) {
                    outcome = .success(try await body())
                } catch {
                    outcome = .failure(error)
                }
                timer.cancel()
                race.decide(outcome)
            }
        }
    }
}
