import PersistCore

extension S3Blob {
    /// How often, and after what pauses, `S3Blob` sends a request again when S3 refused it
    /// for a passing reason (throttling, an internal error, a busy or restarting server) or
    /// the connection failed before an answer.
    ///
    /// Pauses grow exponentially: the one before retry `n` is drawn between half and all
    /// of `min(maxBackoff, initialBackoff * 2^(n-1))` ("equal jitter"), so clients throttled
    /// together spread out, yet none comes back at once. Retries stop after `maxAttempts`
    /// attempts, or earlier when a pause would end more than `maxElapsed` after the first
    /// attempt began. Each attempt has the whole `requestTimeout`.
    ///
    /// What is retried (see `S3RetryRules`): answers 429, 500, 502, 503 and 504 and the S3
    /// error codes of throttling (`SlowDown`, `Throttling`, ...) and of transient failures
    /// (`RequestTimeout`, `InternalError`, ...) whatever their status; connections that
    /// could not be made or broke before the answer was complete. Not retried: any other
    /// answer (the request was understood and refused), and attempts that ran out of time
    /// (the budget is spent). Every `Blob` operation is safe to send again: reads change
    /// nothing, and writing or deleting a key again leaves what the first one left
    /// (`Blob` keys are written once with fixed bytes, spec/persist.md §2.2).
    ///
    /// Determinacy survives the retries: when any attempt of a write may have taken effect
    /// (an answer such as 500, or a connection lost after sending), the final failure is
    /// indeterminate even if the last attempt was refused determinately.
    ///
    /// Layering with `PersistClient`: the shard layer wraps every blob call in its own
    /// unbounded retry (`Retry.external`, which starts at a few milliseconds). The retries
    /// here are few and bounded, and absorb what S3 itself calls transient inside one call,
    /// with pauses long enough for S3's request-rate scaling; the outer loop sees an error
    /// only when they did not help, and then retries the whole call. Tools that use
    /// `S3Blob` directly get the same behaviour. `.never` leaves all retrying to the caller.
    public struct RetryPolicy: Hashable, Sendable {
        /// Attempts in all, the first one included; 1 sends every request once.
        public var maxAttempts: Int
        /// The upper end of the first pause; later ones double, up to `maxBackoff`.
        public var initialBackoff: Duration
        /// The longest pause.
        public var maxBackoff: Duration
        /// No pause may end later than this after the first attempt began; nil leaves
        /// `maxAttempts` as the only bound.
        public var maxElapsed: Duration?
        /// Seeds the jitter, making the pauses of a client a reproducible sequence; nil
        /// draws them from the system's generator.
        public var jitterSeed: UInt64?

        /// A policy; `maxAttempts` is at least 1 and `maxBackoff` at least `initialBackoff`.
        public init(
            maxAttempts: Int = 4, initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(5),
            maxElapsed: Duration? = nil, jitterSeed: UInt64? = nil
        ) {
            self.maxAttempts = max(1, maxAttempts)
            self.initialBackoff = max(.zero, initialBackoff)
            self.maxBackoff = max(self.initialBackoff, maxBackoff)
            self.maxElapsed = maxElapsed
            self.jitterSeed = jitterSeed
        }

        /// Four attempts, pauses from 50-100 ms up to 5 s.
        public static let standard = RetryPolicy()
        /// Every request is sent once.
        public static let never = RetryPolicy(maxAttempts: 1)

        /// The exponential step before retry `retry` (1 for the first): `initialBackoff`
        /// doubled `retry - 1` times, at most `maxBackoff`.
        public func step(beforeRetry retry: Int) -> Duration {
            var step = initialBackoff
            var doublings = max(0, retry - 1)
            while doublings > 0, step < maxBackoff {
                step = step > maxBackoff / 2 ? maxBackoff : step * 2
                doublings -= 1
            }
            return min(step, maxBackoff)
        }

        /// The pause before retry `retry`, for `unit` drawn uniformly from [0, 1): between
        /// half and all of `step(beforeRetry:)`.
        public func backoff(beforeRetry retry: Int, unit: Double) -> Duration {
            let step = step(beforeRetry: retry)
            return step / 2 + step / 2 * min(max(unit, 0), 1)
        }
    }
}

/// Where a request stands in its retries. Pure: the caller measures time, draws the jitter
/// and sleeps.
struct S3RetrySchedule: Sendable {
    let policy: S3Blob.RetryPolicy
    /// Attempts begun so far (the first one is begun when the schedule is made).
    private(set) var attempts = 1

    init(_ policy: S3Blob.RetryPolicy) { self.policy = policy }

    /// The pause before the next attempt, which it counts as begun; nil when the policy
    /// allows no more: the attempts are used up, or the pause would end past `maxElapsed`.
    /// `elapsed` is the time since the first attempt began.
    /// `unit` draws the jitter (only when a pause is due).
    mutating func nextPause(elapsed: Duration, unit: () -> Double) -> Duration? {
        guard attempts < policy.maxAttempts else { return nil }
        let pause = policy.backoff(beforeRetry: attempts, unit: unit())
        if let limit = policy.maxElapsed, elapsed + pause > limit { return nil }
        attempts += 1
        return pause
    }
}

/// Which failed attempts are worth repeating. Pure.
enum S3RetryRules {
    /// Statuses that say "not now" rather than "no": too many requests, and the server
    /// errors S3 documents as transient.
    static let transientStatuses: Set<Int> = [429, 500, 502, 503, 504]

    /// S3 (and other AWS services') error codes of throttling.
    static let throttlingCodes: Set<String> = [
        "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled", "RequestThrottledException",
        "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded", "ProvisionedThroughputExceededException",
        "TransactionInProgressException", "EC2ThrottledException",
    ]

    /// Error codes of failures that pass: the server gave up waiting for the body, had an
    /// internal error, or is (briefly) unavailable.
    static let transientCodes: Set<String> = [
        "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable", "PriorRequestNotComplete",
    ]

    /// Whether an answer refuses the request for a passing reason.
    static func isRetryable(_ response: S3HTTPResponse) -> Bool {
        guard !(200..<400).contains(response.status) else { return false }
        if transientStatuses.contains(response.status) { return true }
        guard let code = S3ResponseMapping.errorCode(response) else { return false }
        return throttlingCodes.contains(code) || transientCodes.contains(code)
    }
}

extension S3TransportFailure {
    /// Whether another attempt may succeed: yes when the connection failed (before or
    /// after sending), no when the attempt's time ran out.
    var isRetryable: Bool {
        switch self {
        case .notSent, .lost: true
        case .timedOut: false
        }
    }
}
