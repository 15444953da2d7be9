/// One statement's way to the server, raced by its deadline (pure; `PostgresConsensus`
/// holds it in a lock).
///
/// The statement first waits for a pooled connection, then is sent. The deadline may
/// fire at any point: before sending, it abandons the statement for good (`send` then
/// refuses, so the statement can never reach the server later, and the timeout is
/// determinate); after sending, it only stops waiting for the answer (the statement may
/// still run, so the timeout is indeterminate). Whichever of the answer and the deadline
/// comes first decides the outcome; the other is ignored.
struct StatementAttempt: Sendable {
    enum State: Hashable, Sendable {
        case waiting
        case sent
        /// The deadline decided; `afterSending` says whether the statement had been sent.
        case abandoned(afterSending: Bool)
        /// The answer (or a failure) decided; `sent` says whether the statement had been sent.
        case finished(sent: Bool)
    }

    private(set) var state: State = .waiting

    /// Called just before the statement is handed to the connection. False when the
    /// deadline already abandoned it: the caller must not send it.
    mutating func send() -> Bool {
        guard state == .waiting else { return false }
        state = .sent
        return true
    }

    /// Whether the statement may have reached the server.
    var maySendOrHaveSent: Bool {
        switch state {
        case .waiting: return false
        case .sent: return true
        case .abandoned(let afterSending): return afterSending
        case .finished(let sent): return sent
        }
    }

    /// The deadline fired. Returns nil if the answer already decided, else whether the
    /// statement had been sent (the timeout's determinacy).
    mutating func deadlinePassed() -> Bool? {
        switch state {
        case .waiting:
            state = .abandoned(afterSending: false)
            return false
        case .sent:
            state = .abandoned(afterSending: true)
            return true
        case .abandoned, .finished:
            return nil
        }
    }

    /// The answer or a failure arrived. False if the deadline already decided (the
    /// result is dropped). `sent` reports whether the statement had been sent.
    mutating func finish() -> (decided: Bool, sent: Bool) {
        switch state {
        case .waiting:
            state = .finished(sent: false)
            return (true, false)
        case .sent:
            state = .finished(sent: true)
            return (true, true)
        case .abandoned, .finished:
            return (false, maySendOrHaveSent)
        }
    }
}
