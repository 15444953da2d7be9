import Crypto
import Foundation
import Metrics
import NIOCore
import PersistCore
import PersistLocation
import PersistS3

/// What a response carries after its head.
enum BlobStoreResponseBody: Sendable {
    /// Bytes in memory (XML documents).
    case bytes(ByteBuffer)
    /// `range` of an object's file, read piece by piece as it is sent, so that an object
    /// is never held in memory whole.
    case file(BlobStoreObjectFile, range: Range<Int>)

    static let empty = BlobStoreResponseBody.bytes(ByteBuffer())

    /// The number of bytes sent.
    var count: Int {
        switch self {
        case .bytes(let buffer): buffer.readableBytes
        case .file(_, let range): range.count
        }
    }
}

/// A response of the blob-store, before it is put on the wire.
struct BlobStoreResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)] = []
    var body = BlobStoreResponseBody.empty
    /// The Content-Length to announce when it differs from the body sent (HEAD).
    var announcedLength: Int?
    /// Close the connection after this response.
    var close = false
    /// The S3 error code, for error responses.
    var errorCode: String?
}

/// A request that passed routing, authentication and the bucket check, ready to run.
struct BlobStorePreparedRequest: Sendable {
    var operation: BlobStoreOperation
    /// The addressed bucket, for operations on an existing bucket.
    var bucket: FileBlob?
    /// How to receive the body (PutObject only).
    var payload: BlobStorePayloadPlan?
}

/// The request and its outcome, as metrics count them.
struct BlobStoreMetrics: Sendable {
    let factory: any MetricsFactory
    let receivedBytes: Counter
    let sentBytes: Counter

    init(factory: any MetricsFactory) {
        self.factory = factory
        receivedBytes = Counter(label: "blob_store_received_bytes_total", dimensions: [], factory: factory)
        sentBytes = Counter(label: "blob_store_sent_bytes_total", dimensions: [], factory: factory)
    }

    /// One request done: `blob_store_requests_total{op,status}`,
    /// `blob_store_request_duration_seconds{op}`, and `blob_store_errors_total{code}` for
    /// S3 errors.
    func finished(op: String, status: Int, errorCode: String?, duration: Duration) {
        Counter(label: "blob_store_requests_total", dimensions: [("op", op), ("status", String(status))], factory: factory).increment()
        let (seconds, attoseconds) = duration.components
        let nanos = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        Metrics.Timer(label: "blob_store_request_duration_seconds", dimensions: [("op", op)], factory: factory).recordNanoseconds(nanos)
        if let errorCode {
            Counter(label: "blob_store_errors_total", dimensions: [("code", errorCode)], factory: factory).increment()
        }
    }
}

/// The S3 semantics of the blob-store over its buckets: deciding whether a request may
/// run (routing, SigV4, bucket existence, body plan) and running it. Knows nothing of
/// channels: the connection shell hands it request heads and complete bodies, and sends
/// the bodies it answers with (bytes, or a range of an open object file).
struct BlobStoreHandler: Sendable {
    let configuration: BlobStoreConfiguration
    let buckets: BlobStoreBuckets
    let etags: BlobStoreETagCache
    let now: @Sendable () -> Date

    /// Everything that can be decided from the request head.
    func prepare(method: String, target: String, headers: [(name: String, value: String)]) throws(BlobStoreError)
        -> BlobStorePreparedRequest
    {
        let signing = SigV4Request(method: method, target: target, headers: headers)
        let operation = try BlobStoreRouter.route(method: method, target: target, header: signing.header)
        try authenticate(signing)
        var prepared = BlobStorePreparedRequest(operation: operation)
        switch operation {
        case .listBuckets, .createBucket:
            break
        default:
            guard let name = operation.bucket, let bucket = buckets.bucket(name) else { throw .noSuchBucket }
            prepared.bucket = bucket
        }
        if case .putObject = operation {
            prepared.payload = try BlobStorePayloadPlan.make(header: signing.header, maxObjectSize: configuration.maxObjectSize)
        }
        return prepared
    }

    /// Checks the request's SigV4 `Authorization` header against the configured keys and
    /// region; an unsigned request passes only with `allowAnonymous`.
    func authenticate(_ request: SigV4Request) throws(BlobStoreError) {
        guard let header = request.header("authorization") else {
            guard configuration.allowAnonymous else {
                throw .accessDenied("Anonymous access is not allowed: sign requests with AWS Signature Version 4.")
            }
            return
        }
        let credentials = configuration.credentials
        let skew = Double(configuration.maxClockSkew.components.seconds)
        do throws(SigV4Error) {
            let authorization = try SigV4.parseAuthorization(header)
            guard authorization.service == "s3" else {
                throw SigV4Error.authorizationHeaderMalformed("the service \"\(authorization.service)\" is wrong; expecting \"s3\"")
            }
            guard authorization.region == configuration.region else {
                throw SigV4Error.authorizationHeaderMalformed(
                    "the region \"\(authorization.region)\" is wrong; expecting \"\(configuration.region)\"")
            }
            try SigV4.verify(request: request, authorization: authorization, secretFor: { credentials[$0] }, now: now(), maxSkew: skew)
        } catch {
            throw BlobStoreError(error)
        }
    }

    /// Runs a prepared request; `body` is the verified object of a PutObject. Storage
    /// failures become `InternalError` (a client retries those; for a PUT the object may
    /// or may not have been written, which a retry makes right).
    func execute(
        _ request: BlobStorePreparedRequest, body: (object: [UInt8], md5: BlobStoreObjectMD5)?, rangeHeader: String?, requestID: String
    ) async throws(BlobStoreError) -> BlobStoreResponse {
        switch request.operation {
        case .listBuckets:
            throw .notImplemented("ListBuckets")
        case .createBucket(let name):
            _ = try await storage { () throws(StorageError) in try buckets.create(name) }
            return BlobStoreResponse(status: 200, headers: [("Location", "/" + name)])
        case .headBucket:
            return BlobStoreResponse(status: 200, headers: [("x-amz-bucket-region", configuration.region)])
        case .listObjectsV2(let name, let query):
            return try await list(name, query: query, in: try bucket(request))
        case .putObject(let name, let key):
            guard let body else { throw .internalError("No body was received.") }
            let blob = try bucket(request)
            let (object, md5) = body
            // Every declared digest was verified already and nothing stored depends on the
            // ETag's MD5, so whatever is left of it runs beside the write and its fsync.
            async let digest = md5.digest(of: object)
            try await storage { () async throws(StorageError) in try await blob.set(key, object) }
            await Failpoints.hitAsync(.blobAfterFsyncBeforeReply)
            let etag = BlobStoreETagCache.etag(md5: await digest)
            if let file = BlobStoreFileInfo.of(key, in: blob) { etags.remember(bucket: name, key: key, file: file, etag: etag) }
            return BlobStoreResponse(status: 200, headers: [("ETag", etag)])
        case .getObject(let name, let key):
            return try await get(name, key, in: try bucket(request), range: rangeHeader, head: false, requestID: requestID)
        case .headObject(let name, let key):
            return try await get(name, key, in: try bucket(request), range: rangeHeader, head: true, requestID: requestID)
        case .deleteObject(let name, let key):
            let blob = try bucket(request)
            _ = try await storage { () async throws(StorageError) in try await blob.delete(key) }
            etags.forget(bucket: name, key: key)
            return BlobStoreResponse(status: 204)
        }
    }

    /// Runs a storage call, turning its failure into `InternalError`.
    private func storage<T>(_ body: () async throws(StorageError) -> T) async throws(BlobStoreError) -> T {
        do throws(StorageError) {
            return try await body()
        } catch {
            throw .internalError("Storage failure: \(error)")
        }
    }

    private func bucket(_ request: BlobStorePreparedRequest) throws(BlobStoreError) -> FileBlob {
        guard let bucket = request.bucket else { throw .noSuchBucket }
        return bucket
    }

    private func get(
        _ bucketName: String, _ key: String, in blob: FileBlob, range: String?, head: Bool, requestID: String
    ) async throws(BlobStoreError) -> BlobStoreResponse {
        // HEAD answers from the ETag cache when it can, without opening the object.
        if head, let file = BlobStoreFileInfo.of(key, in: blob), let etag = etags.etag(bucket: bucketName, key: key, file: file) {
            return objectResponse(size: file.size, etag: etag, modified: file.modified, range: range, body: nil, requestID: requestID)
        }
        let opened = try await storage { () async throws(StorageError) in try await BlobStoreObjectFile.open(key, in: blob) }
        guard let file = opened else { throw .noSuchKey }
        // The ETag is the MD5 of the whole object, a pass over all of it: taken from the
        // cache when it was computed for this very file (as after a PutObject here).
        let etag: String
        if let cached = etags.etag(bucket: bucketName, key: key, file: file.info) {
            etag = cached
        } else {
            etag = BlobStoreETagCache.etag(md5: try await storage { () async throws(StorageError) in try await file.md5() })
            etags.remember(bucket: bucketName, key: key, file: file.info, etag: etag)
        }
        return objectResponse(
            size: file.info.size, etag: etag, modified: file.info.modified, range: range, body: head ? nil : file,
            requestID: requestID)
    }

    /// The answer for an object of `size` bytes; `body` is the open file for GetObject,
    /// nil for HeadObject.
    private func objectResponse(
        size: Int, etag: String, modified: Date, range: String?, body: BlobStoreObjectFile?, requestID: String
    ) -> BlobStoreResponse {
        var response = BlobStoreResponse(status: 200)
        response.headers = [
            ("ETag", etag), ("Last-Modified", S3Time.http(modified)), ("Accept-Ranges", "bytes"),
            ("Content-Type", "application/octet-stream"),
        ]
        switch HTTPByteRange.resolve(range, size: size) {
        case .whole:
            if let body { response.body = .file(body, range: 0..<size) }
            response.announcedLength = size
        case .partial(let r):
            response.status = 206
            response.headers.append(("Content-Range", HTTPByteRange.contentRange(r, size: size)))
            if let body { response.body = .file(body, range: r.lowerBound..<(r.upperBound + 1)) }
            response.announcedLength = r.count
        case .unsatisfiable:
            var error = BlobStoreResponse.error(.invalidRange, requestID: requestID, head: body == nil)
            error.headers.append(("Content-Range", HTTPByteRange.unsatisfiedContentRange(size: size)))
            return error
        }
        return response
    }

    private func list(_ name: String, query: ListObjectsV2Query, in blob: FileBlob) async throws(BlobStoreError) -> BlobStoreResponse {
        let listing = try await storage { () async throws(StorageError) in try await blob.list(prefix: query.prefix) }
        let page = try BlobStoreListing.page(listing, query: query)
        // Listings carry no ETag: it would take reading every object listed.
        let contents = page.contents.map { object in
            S3ListedObject(key: object.key, size: object.sizeBytes, lastModified: BlobStoreFileInfo.of(object.key, in: blob)?.modified ?? now())
        }
        let result = S3ListBucketResult(
            name: name, prefix: query.prefix, keyCount: page.keyCount, maxKeys: query.maxKeys, isTruncated: page.isTruncated,
            continuationToken: query.continuationToken, nextContinuationToken: page.nextContinuationToken,
            startAfter: query.startAfter, delimiter: query.delimiter, encodingTypeURL: query.urlEncoded, contents: contents,
            commonPrefixes: page.commonPrefixes)
        return BlobStoreResponse(status: 200, headers: [("Content-Type", "application/xml")], body: .bytes(ByteBuffer(bytes: S3XML.render(result))))
    }
}

extension BlobStoreResponse {
    /// The XML error document for `error` (headers only for HEAD requests, as S3 does).
    static func error(_ error: BlobStoreError, requestID: String?, key: String? = nil, head: Bool) -> BlobStoreResponse {
        var response = BlobStoreResponse(status: error.status)
        response.errorCode = error.code
        guard !head else {
            response.announcedLength = 0
            return response
        }
        response.headers = [("Content-Type", "application/xml")]
        response.body = .bytes(
            ByteBuffer(bytes: S3XML.render(S3ErrorDocument(code: error.code, message: error.message, key: key, requestID: requestID))))
        return response
    }
}
