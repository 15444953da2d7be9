import PersistCore

/// How S3 answers become `Blob` results or `StorageError`s. Pure.
///
/// Status classes map as follows (the S3 code from the error body is kept in the message):
/// - 400: determinate `invalidArgument` (S3 validated the request and refused it), except
///   `BadDigest`/`XAmzContentSHA256Mismatch` (`corruption`: the body arrived damaged and
///   was not stored) and `RequestTimeout` (`timeout`: S3 gave up reading the body).
/// - 401/403 and other 4xx, 3xx redirects: determinate `rejected`.
/// - 429 and 503 (`SlowDown`, throttling): determinate `unavailable`; S3 refuses these
///   before acting, so they are safe to retry.
/// - Other 5xx: `unavailable`, indeterminate for PutObject/DeleteObject (the server may
///   have acted before failing) and determinate for reads.
///
/// Which of these `S3Blob` sends again before mapping the last one is `S3RetryRules`'s
/// business (S3Retry.swift).
enum S3ResponseMapping {
    /// GetObject: the body, nil for 404 `NoSuchKey`.
    static func object(_ response: S3HTTPResponse, operation: S3Operation) throws(StorageError) -> [UInt8]? {
        switch response.status {
        case 200..<300: return response.body
        case 404 where errorCode(response) != "NoSuchBucket": return nil
        default: throw error(response, operation: operation)
        }
    }

    /// HeadObject: the object's size, nil for 404 (a HEAD answer has no body, so a missing
    /// bucket cannot be told apart; the DeleteObject that follows will report it).
    static func size(_ response: S3HTTPResponse, operation: S3Operation) throws(StorageError) -> Int? {
        switch response.status {
        case 200..<300:
            guard let text = response.header("Content-Length"), let size = Int(text), size >= 0 else {
                throw .determinate(.io, "\(operation.name) answered without a valid Content-Length")
            }
            return size
        case 404: return nil
        default: throw error(response, operation: operation)
        }
    }

    /// PutObject or DeleteObject: success, or the error. Deleting a missing key succeeds
    /// (S3 answers 204 anyway; a 404 `NoSuchKey` from a stricter server is accepted too).
    static func done(_ response: S3HTTPResponse, operation: S3Operation) throws(StorageError) {
        switch response.status {
        case 200..<300: return
        case 404 where operation.isDeletion && errorCode(response) != "NoSuchBucket": return
        default: throw error(response, operation: operation)
        }
    }

    /// ListObjectsV2: the parsed page.
    static func listing(_ response: S3HTTPResponse, operation: S3Operation) throws(StorageError) -> S3ListBucketResult {
        guard (200..<300).contains(response.status) else { throw error(response, operation: operation) }
        do {
            return try S3XML.parseListBucketResult(response.body)
        } catch {
            throw .determinate(.io, "\(operation.name) answered with an unreadable listing: \(error)")
        }
    }

    /// The S3 error code in the body, if it has a readable `<Error>` document.
    static func errorCode(_ response: S3HTTPResponse) -> String? {
        guard !response.body.isEmpty else { return nil }
        return try? S3XML.parseError(response.body).code
    }

    /// The `StorageError` for an unsuccessful answer.
    static func error(_ response: S3HTTPResponse, operation: S3Operation) -> StorageError {
        let document = response.body.isEmpty ? nil : try? S3XML.parseError(response.body)
        let code = document?.code
        var message = "\(operation.name) failed with HTTP \(response.status)"
        if let document { message += " \(document.code): \(document.message)" }
        switch (response.status, code) {
        case (400, "BadDigest"), (400, "XAmzContentSHA256Mismatch"):
            return .determinate(.corruption, message)
        case (400, "RequestTimeout"):
            return .determinate(.timeout, message)
        case (400, _):
            return .determinate(.invalidArgument, message)
        case (429, _), (503, _):
            return .determinate(.unavailable, message)
        case (500..<600, _):
            return operation.isMutation ? .indeterminate(.unavailable, message) : .determinate(.unavailable, message)
        case (300..<500, _):
            return .determinate(.rejected, message)
        default:
            // 1xx (never final) or a status outside HTTP's range: nothing is known.
            return operation.isMutation ? .indeterminate(.failed, message) : .determinate(.failed, message)
        }
    }
}

extension S3Operation {
    var isDeletion: Bool {
        if case .deleteObject = self { return true }
        return false
    }
}
