/// A failure of a blob or consensus operation.
///
/// Every storage failure says whether it is *determinate* (the operation definitely did
/// not take effect, so it is safe to report failure or retry with new inputs) or
/// *indeterminate* (it may or may not have taken effect; a caller must find out by
/// reading, never by guessing). Anything not known to be determinate is indeterminate.
public struct StorageError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What went wrong, coarsely; `message` has the specifics.
    public enum Code: String, Hashable, Sendable {
        /// The arguments broke the operation's contract (a programming error upstream).
        case invalidArgument = "invalid_argument"
        /// An operating-system I/O failure.
        case io
        /// The operation did not complete in time.
        case timeout
        /// The backend is unreachable or shutting down.
        case unavailable
        /// Stored bytes failed verification.
        case corruption
        /// The backend refused the request (authentication, permission, contention).
        case rejected
        /// The backend entered a failed state and must be reopened.
        case failed
    }

    public enum Determinacy: String, Hashable, Sendable {
        /// Definitely did not happen.
        case determinate
        /// May have happened.
        case indeterminate
    }

    public var code: Code
    public var determinacy: Determinacy
    public var message: String

    public init(_ code: Code, _ determinacy: Determinacy, _ message: String) {
        self.code = code
        self.determinacy = determinacy
        self.message = message
    }

    /// The operation definitely did not take effect.
    public static func determinate(_ code: Code, _ message: String) -> StorageError {
        StorageError(code, .determinate, message)
    }

    /// The operation may or may not have taken effect.
    public static func indeterminate(_ code: Code, _ message: String) -> StorageError {
        StorageError(code, .indeterminate, message)
    }

    public var isDeterminate: Bool { determinacy == .determinate }

    public var description: String { "\(determinacy) \(code.rawValue) error: \(message)" }
}
