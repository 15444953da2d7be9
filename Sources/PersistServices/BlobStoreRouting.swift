import PersistS3

/// What a blob-store request asks for, decided from its method and request target alone
/// (path-style addressing: `/bucket/key...`).
public enum BlobStoreOperation: Hashable, Sendable {
    /// `GET /` (answered NotImplemented: the XML renderer has no bucket list yet).
    case listBuckets
    /// `PUT /bucket`; idempotent.
    case createBucket(bucket: String)
    /// `HEAD /bucket`.
    case headBucket(bucket: String)
    /// `GET /bucket?list-type=2...`.
    case listObjectsV2(bucket: String, query: ListObjectsV2Query)
    /// `PUT /bucket/key`.
    case putObject(bucket: String, key: String)
    /// `GET /bucket/key`, optionally with `Range`.
    case getObject(bucket: String, key: String)
    /// `HEAD /bucket/key`.
    case headObject(bucket: String, key: String)
    /// `DELETE /bucket/key`; idempotent.
    case deleteObject(bucket: String, key: String)

    /// The S3 operation name, as used in metric labels and logs.
    public var name: String {
        switch self {
        case .listBuckets: "ListBuckets"
        case .createBucket: "CreateBucket"
        case .headBucket: "HeadBucket"
        case .listObjectsV2: "ListObjectsV2"
        case .putObject: "PutObject"
        case .getObject: "GetObject"
        case .headObject: "HeadObject"
        case .deleteObject: "DeleteObject"
        }
    }

    /// The bucket the operation addresses, if any.
    public var bucket: String? {
        switch self {
        case .listBuckets: nil
        case .createBucket(let b), .headBucket(let b), .listObjectsV2(let b, _), .putObject(let b, _), .getObject(let b, _),
            .headObject(let b, _), .deleteObject(let b, _):
            b
        }
    }

    /// Whether the request carries a body the operation consumes (others must send none,
    /// or a body that is read and dropped).
    public var consumesBody: Bool {
        if case .putObject = self { return true }
        return false
    }
}

/// The parameters of a ListObjectsV2 request, validated.
public struct ListObjectsV2Query: Hashable, Sendable {
    /// Only keys starting with this are listed.
    public var prefix: String = ""
    /// Keys containing this after the prefix are rolled up into common prefixes.
    public var delimiter: String?
    /// At most this many keys and common prefixes in one page (0...1000).
    public var maxKeys: Int = BlobStoreRouter.maxListKeys
    /// Resume after the page that returned this token (wins over `startAfter`).
    public var continuationToken: String?
    /// List only keys after this one.
    public var startAfter: String?
    /// `encoding-type=url`: keys, prefixes and delimiters in the response are URL-encoded.
    public var urlEncoded: Bool = false

    /// The defaults: every key, pages of 1000, no encoding.
    public init() {}
}

/// Turns request heads into `BlobStoreOperation`s, with S3's validation rules. Pure: no
/// I/O, no state; every refusal is a `BlobStoreError` with the S3 code a client expects.
public enum BlobStoreRouter {
    /// S3's limit on key length, in UTF-8 bytes.
    public static let maxKeyBytes = 1024
    /// The largest (and default) page of ListObjectsV2.
    public static let maxListKeys = 1000

    /// Query parameters that name no subresource and that every operation tolerates:
    /// newer SDKs add `x-id=<Operation>` to object requests.
    static let harmlessParameters: Set<String> = ["x-id"]
    static let listParameters: Set<String> = [
        "list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "encoding-type", "fetch-owner",
    ]

    /// Routes a request.
    ///
    /// - Parameters:
    ///   - method: the HTTP method, upper case.
    ///   - target: the raw request target (`/bucket/key?query`), as sent.
    ///   - header: looks up a request header by case-insensitive name.
    /// - Throws: `InvalidArgument` for a target that is not a valid percent-encoded
    ///   UTF-8 path, `InvalidBucketName`, `KeyTooLongError`, `NotImplemented` for S3
    ///   operations and subresources this server does not have, `MethodNotAllowed`.
    public static func route(
        method: String, target: String, header: (String) -> String? = { _ in nil }
    ) throws(BlobStoreError) -> BlobStoreOperation {
        // Split where SigV4 splits it, so the path routed is the path signed.
        let wire = SigV4Request(method: method, target: target, headers: [])
        let rawPath = wire.path
        guard rawPath.hasPrefix("/") else {
            throw .invalidArgument("The request target must be an absolute path (path-style addressing: /bucket/key).")
        }
        let query = try parseQuery(wire.query)
        if query.contains(where: { $0.name.lowercased().hasPrefix("x-amz-") }) {
            throw .notImplemented("Query-string (presigned URL) authentication")
        }
        let afterSlash = rawPath.dropFirst()
        let bucketPart: Substring
        let keyPart: Substring?
        if let slash = afterSlash.firstIndex(of: "/") {
            bucketPart = afterSlash[..<slash]
            let rest = afterSlash[afterSlash.index(after: slash)...]
            keyPart = rest.isEmpty ? nil : rest
        } else {
            bucketPart = afterSlash
            keyPart = nil
        }

        if bucketPart.isEmpty {
            guard keyPart == nil else { throw .invalidBucketName("") }
            try allowOnly(harmlessParameters, in: query)
            guard method == "GET" else { throw .methodNotAllowed(method) }
            return .listBuckets
        }
        let bucket = try decodeComponent(bucketPart, what: "bucket name")
        guard isValidBucketName(bucket) else { throw .invalidBucketName(bucket) }

        guard let keyPart else { return try routeBucket(method: method, bucket: bucket, query: query) }
        let key = try decodeComponent(keyPart, what: "object key")
        let keyBytes = key.utf8.count
        guard keyBytes <= maxKeyBytes else { throw .keyTooLong(keyBytes, limit: maxKeyBytes) }
        return try routeObject(method: method, bucket: bucket, key: key, query: query, header: header)
    }

    static func routeBucket(method: String, bucket: String, query: [QueryItem]) throws(BlobStoreError) -> BlobStoreOperation {
        switch method {
        case "GET":
            try allowOnly(harmlessParameters.union(listParameters), in: query)
            guard let listType = value("list-type", in: query) else {
                throw .notImplemented("ListObjects (version 1; send list-type=2 for ListObjectsV2)")
            }
            guard listType == "2" else { throw .invalidArgument("Invalid list-type \"\(listType)\": only 2 is supported.") }
            return .listObjectsV2(bucket: bucket, query: try listQuery(query))
        case "HEAD":
            try allowOnly(harmlessParameters, in: query)
            return .headBucket(bucket: bucket)
        case "PUT":
            try allowOnly(harmlessParameters, in: query)
            return .createBucket(bucket: bucket)
        case "DELETE":
            try allowOnly(harmlessParameters, in: query)
            throw .notImplemented("DeleteBucket")
        case "POST":
            try allowOnly(harmlessParameters, in: query)
            throw .methodNotAllowed(method)
        default:
            throw .methodNotAllowed(method)
        }
    }

    static func routeObject(
        method: String, bucket: String, key: String, query: [QueryItem], header: (String) -> String?
    ) throws(BlobStoreError) -> BlobStoreOperation {
        switch method {
        case "GET", "HEAD", "PUT", "DELETE", "POST":
            try allowOnly(harmlessParameters, in: query)
        default:
            throw .methodNotAllowed(method)
        }
        switch method {
        case "GET": return .getObject(bucket: bucket, key: key)
        case "HEAD": return .headObject(bucket: bucket, key: key)
        case "DELETE": return .deleteObject(bucket: bucket, key: key)
        case "PUT":
            if header("x-amz-copy-source") != nil { throw .notImplemented("CopyObject") }
            return .putObject(bucket: bucket, key: key)
        default: throw .methodNotAllowed(method)
        }
    }

    static func listQuery(_ items: [QueryItem]) throws(BlobStoreError) -> ListObjectsV2Query {
        var q = ListObjectsV2Query()
        q.prefix = value("prefix", in: items) ?? ""
        if let d = value("delimiter", in: items), !d.isEmpty { q.delimiter = d }
        if let text = value("max-keys", in: items) {
            guard let n = Int(text), n >= 0 else { throw .invalidArgument("Provided max-keys not an integer or within integer range") }
            q.maxKeys = min(n, maxListKeys)
        }
        if let token = value("continuation-token", in: items) {
            guard !token.isEmpty else { throw .invalidArgument("The continuation token provided is incorrect") }
            q.continuationToken = token
        }
        if let s = value("start-after", in: items), !s.isEmpty { q.startAfter = s }
        if let e = value("encoding-type", in: items) {
            guard e == "url" else { throw .invalidArgument("Invalid Encoding Method specified in Request") }
            q.urlEncoded = true
        }
        return q
    }

    // MARK: Names

    /// S3's bucket naming rules: 3 to 63 characters of lower-case letters, digits, `.` and
    /// `-`, starting and ending with a letter or digit, no `..`, not shaped like an IPv4
    /// address, and none of the reserved prefixes and suffixes. (So a valid name is never
    /// `.`, `..`, or anything containing `/`.)
    public static func isValidBucketName(_ name: String) -> Bool {
        let b = Array(name.utf8)
        guard (3...63).contains(b.count) else { return false }
        func alnum(_ c: UInt8) -> Bool {
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9"))
        }
        guard b.allSatisfy({ alnum($0) || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }) else { return false }
        guard let first = b.first, let last = b.last, alnum(first), alnum(last) else { return false }
        guard !name.contains("..") else { return false }
        let dotted = name.split(separator: ".", omittingEmptySubsequences: false)
        if dotted.count == 4, dotted.allSatisfy({ !$0.isEmpty && $0.count <= 3 && $0.allSatisfy(\.isASCII) && UInt8($0) != nil }) {
            return false
        }
        for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] where name.hasPrefix(prefix) { return false }
        for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] where name.hasSuffix(suffix) { return false }
        return true
    }

    // MARK: Percent-encoding

    /// One `name=value` pair of a query string, decoded.
    struct QueryItem: Hashable {
        var name: String
        var value: String
    }

    /// The query's `name=value` pairs in order, strictly decoded. (SigV4.canonicalQuery
    /// splits pairs the same way, but decodes leniently, re-encodes and sorts: it answers
    /// a different question, so only the decoding is shared.)
    static func parseQuery(_ raw: String?) throws(BlobStoreError) -> [QueryItem] {
        guard let raw, !raw.isEmpty else { return [] }
        var items: [QueryItem] = []
        for part in raw.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let eq = part.firstIndex(of: "=") {
                name = part[..<eq]
                value = part[part.index(after: eq)...]
            } else {
                name = part
                value = ""
            }
            items.append(QueryItem(name: try decodeComponent(name, what: "query parameter"), value: try decodeComponent(value, what: "query parameter")))
        }
        return items
    }

    static func value(_ name: String, in items: [QueryItem]) -> String? {
        items.first { $0.name == name }?.value
    }

    static func allowOnly(_ allowed: Set<String>, in items: [QueryItem]) throws(BlobStoreError) {
        for item in items where !allowed.contains(item.name) {
            throw .notImplemented("The \"\(item.name)\" query parameter (subresource)")
        }
    }

    /// Strictly decodes `%XX` escapes: a `%` without two hex digits after it is refused
    /// with nil (a lenient decoder would let two different wire forms name the same key).
    ///
    /// The decoding itself is PersistS3's (`SigV4.percentDecode`, which signature
    /// checking uses on the same target, so the key stored is the key signed). That one
    /// is lenient, keeping a stray `%` literally, as SigV4 canonicalisation must; so
    /// stray escapes are refused here first. Once every `%` starts a valid escape the two
    /// decodings agree: the lenient decoder then decodes each `%` it meets and only ever
    /// skips hex digits.
    public static func percentDecode(_ text: some StringProtocol) -> [UInt8]? {
        let b = Array(text.utf8)
        for (i, c) in b.enumerated() where c == UInt8(ascii: "%") {
            guard i + 2 < b.count, hexValue(b[i + 1]) != nil, hexValue(b[i + 2]) != nil else { return nil }
        }
        return SigV4.percentDecode(text)
    }

    static func decodeComponent(_ text: Substring, what: String) throws(BlobStoreError) -> String {
        guard let bytes = percentDecode(text) else { throw .invalidArgument("The \(what) is not valid percent-encoding.") }
        guard let string = String(validating: bytes, as: UTF8.self) else { throw .invalidArgument("The \(what) is not valid UTF-8.") }
        return string
    }

    /// The value of an ASCII hex digit. (PersistS3 keeps its own internal; this one also
    /// serves the server's aws-chunked parser.)
    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
