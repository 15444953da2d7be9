import PersistS3

/// An S3 error the blob-store answers with: the `Code` of the XML error document, the
/// HTTP status that goes with it, and a human-readable message.
///
/// Codes and statuses are S3's, so that S3 clients react to them the way they would with
/// AWS (boto3 raises `NoSuchKey`, retries `InternalError`, and so on).
public struct BlobStoreError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The S3 error code, e.g. `NoSuchKey`.
    public var code: String
    /// The HTTP status code sent with it.
    public var status: Int
    /// What went wrong, for people.
    public var message: String

    /// An error with S3 code `code` answered with HTTP `status`.
    public init(code: String, status: Int, message: String) {
        self.code = code
        self.status = status
        self.message = message
    }

    public var description: String { "\(status) \(code): \(message)" }

    // 400
    static func invalidArgument(_ message: String) -> Self { Self(code: "InvalidArgument", status: 400, message: message) }
    static func invalidRequest(_ message: String) -> Self { Self(code: "InvalidRequest", status: 400, message: message) }
    static func invalidBucketName(_ name: String) -> Self {
        Self(code: "InvalidBucketName", status: 400, message: "The specified bucket is not valid: \"\(name)\".")
    }
    static func keyTooLong(_ bytes: Int, limit: Int) -> Self {
        Self(code: "KeyTooLongError", status: 400, message: "Your key is too long: \(bytes) bytes, the limit is \(limit).")
    }
    static let badDigest = Self(
        code: "BadDigest", status: 400, message: "The Content-MD5 you specified did not match what we received.")
    static func checksumMismatch(_ algorithm: String) -> Self {
        Self(code: "BadDigest", status: 400, message: "The \(algorithm) you specified did not match the calculated checksum.")
    }
    static func invalidDigest(_ message: String) -> Self { Self(code: "InvalidDigest", status: 400, message: message) }
    static let contentSHA256Mismatch = Self(
        code: "XAmzContentSHA256Mismatch", status: 400,
        message: "The provided 'x-amz-content-sha256' header does not match what was computed.")
    static func entityTooLarge(limit: Int) -> Self {
        Self(code: "EntityTooLarge", status: 400, message: "Your proposed upload exceeds the maximum allowed object size of \(limit) bytes.")
    }
    static func incompleteBody(_ message: String) -> Self { Self(code: "IncompleteBody", status: 400, message: message) }
    static func authorizationHeaderMalformed(_ message: String) -> Self {
        Self(code: "AuthorizationHeaderMalformed", status: 400, message: message)
    }
    static let invalidContinuationToken = Self(
        code: "InvalidArgument", status: 400, message: "The continuation token provided is incorrect.")
    // 403
    static func accessDenied(_ message: String = "Access Denied") -> Self { Self(code: "AccessDenied", status: 403, message: message) }
    // 404
    static let noSuchKey = Self(code: "NoSuchKey", status: 404, message: "The specified key does not exist.")
    static let noSuchBucket = Self(code: "NoSuchBucket", status: 404, message: "The specified bucket does not exist.")
    // 405, 409, 411, 416
    static func methodNotAllowed(_ method: String) -> Self {
        Self(code: "MethodNotAllowed", status: 405, message: "The specified method \(method) is not allowed against this resource.")
    }
    static let bucketAlreadyOwnedByYou = Self(
        code: "BucketAlreadyOwnedByYou", status: 409,
        message: "Your previous request to create the named bucket succeeded and you already own it.")
    static let missingContentLength = Self(
        code: "MissingContentLength", status: 411, message: "You must provide the Content-Length HTTP header.")
    static let invalidRange = Self(code: "InvalidRange", status: 416, message: "The requested range is not satisfiable.")
    // 5xx
    static func notImplemented(_ what: String) -> Self {
        Self(code: "NotImplemented", status: 501, message: "\(what) is not implemented by this blob-store.")
    }
    static func internalError(_ message: String = "We encountered an internal error. Please try again.") -> Self {
        Self(code: "InternalError", status: 500, message: message)
    }
    static func serviceUnavailable(_ message: String) -> Self { Self(code: "ServiceUnavailable", status: 503, message: message) }

    /// The S3 error for a failed SigV4 check.
    init(_ error: SigV4Error) {
        self.init(code: error.code, status: error.httpStatus, message: error.message)
    }
}
