import Crypto
import Foundation
import PersistCodec

/// One S3 call of the subset `S3Blob` makes. `key` and `prefix` are the full object names
/// (the location's key prefix already prepended).
enum S3Operation: Sendable {
    case getObject(key: String)
    case putObject(key: String, body: [UInt8])
    case headObject(key: String)
    case deleteObject(key: String)
    case listObjectsV2(prefix: String, continuationToken: String?, maxKeys: Int?)

    /// Whether the call changes the bucket, so that a lost answer leaves its outcome unknown.
    var isMutation: Bool {
        switch self {
        case .putObject, .deleteObject: true
        case .getObject, .headObject, .listObjectsV2: false
        }
    }

    /// The S3 API name, for messages.
    var name: String {
        switch self {
        case .getObject: "GetObject"
        case .putObject: "PutObject"
        case .headObject: "HeadObject"
        case .deleteObject: "DeleteObject"
        case .listObjectsV2: "ListObjectsV2"
        }
    }
}

/// An HTTP/1.1 request ready for the wire: `target` is the raw request-target (encoded
/// path and query).
struct S3HTTPRequest: Sendable {
    var method: String
    var target: String
    var headers: [(name: String, value: String)]
    var body: [UInt8]
}

/// A complete HTTP response.
struct S3HTTPResponse: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    /// Whether the connection may carry another request afterwards.
    var keepAlive: Bool = true

    func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first { $0.name.lowercased() == lower }?.value
    }
}

/// Builds signed requests for a bucket. Pure: the time is an argument.
struct S3RequestBuilder: Sendable {
    var bucket: String
    var region: String
    var credentials: S3Credentials
    var pathStyle: Bool
    /// The `Host` header: the endpoint's authority (virtual-host style prepends the bucket).
    var host: String
    /// How PutObject bodies are protected.
    var payloadIntegrity: S3Blob.PayloadIntegrity = .crc32c

    /// The request-target path of an object: `/bucket/<key>` (path style) or `/<key>`,
    /// the key encoded with S3's rules (every byte but unreserved characters and `/`).
    /// The empty key gives `/bucket/` (or `/`), which S3 itself does not accept but our
    /// blob-store does.
    func objectPath(_ key: String) -> String {
        let encoded = SigV4.uriEncode(key, encodeSlash: false)
        return pathStyle ? "/\(SigV4.uriEncode(bucket, encodeSlash: true))/\(encoded)" : "/\(encoded)"
    }

    /// The request-target path of the bucket itself: `/bucket` (path style) or `/`.
    var bucketPath: String { pathStyle ? "/\(SigV4.uriEncode(bucket, encodeSlash: true))" : "/" }

    func request(_ operation: S3Operation, date: Date) -> S3HTTPRequest {
        var method = "GET"
        var target: String
        var headers: [(name: String, value: String)] = [(name: "Host", value: host)]
        var body: [UInt8] = []
        var payloadHash = SigV4.emptyPayloadHash
        switch operation {
        case .getObject(let key):
            target = objectPath(key)
        case .headObject(let key):
            method = "HEAD"
            target = objectPath(key)
        case .deleteObject(let key):
            method = "DELETE"
            target = objectPath(key)
        case .putObject(let key, let bytes):
            method = "PUT"
            target = objectPath(key)
            body = bytes
            headers.append((name: "Content-Length", value: String(bytes.count)))
            switch payloadIntegrity {
            case .crc32c:
                payloadHash = SigV4.unsignedPayload
                headers.append((name: "x-amz-checksum-crc32c", value: Self.crc32cBase64(bytes)))
            case .sha256AndMD5:
                let digests = Self.sha256AndMD5(bytes)
                payloadHash = SigV4.hex(digests.sha256)
                headers.append((name: "Content-MD5", value: Data(digests.md5).base64EncodedString()))
            }
            headers.append((name: "Content-Type", value: "application/octet-stream"))
        case .listObjectsV2(let prefix, let token, let maxKeys):
            var query = ["list-type=2", "encoding-type=url", "prefix=" + SigV4.uriEncode(prefix, encodeSlash: true)]
            if let token { query.append("continuation-token=" + SigV4.uriEncode(token, encodeSlash: true)) }
            if let maxKeys { query.append("max-keys=\(maxKeys)") }
            target = bucketPath + "?" + query.joined(separator: "&")
        }
        let unsigned = SigV4Request(method: method, target: target, headers: headers)
        for (name, value) in SigV4.sign(
            request: unsigned, credentials: credentials, region: region, service: "s3", date: date, payloadHash: payloadHash)
        {
            headers.append((name: name, value: value))
        }
        return S3HTTPRequest(method: method, target: target, headers: headers, body: body)
    }

    /// The `x-amz-checksum-crc32c` value of `bytes`: the base64 of the big-endian CRC32C.
    static func crc32cBase64(_ bytes: [UInt8]) -> String {
        withUnsafeBytes(of: CRC32C.checksum(bytes).bigEndian) { Data($0).base64EncodedString() }
    }

    /// The SHA-256 and MD5 of `bytes`, computed in one pass: each piece is fed to both
    /// hashes while it is still in the cache.
    static func sha256AndMD5(_ bytes: [UInt8]) -> (sha256: [UInt8], md5: [UInt8]) {
        var sha256 = SHA256()
        var md5 = Insecure.MD5()
        bytes.withUnsafeBytes { all in
            var offset = 0
            while offset < all.count {
                let piece = UnsafeRawBufferPointer(rebasing: all[offset..<min(offset + 64 * 1024, all.count)])
                sha256.update(bufferPointer: piece)
                md5.update(bufferPointer: piece)
                offset += piece.count
            }
        }
        return (Array(sha256.finalize()), Array(md5.finalize()))
    }
}
