import Crypto
import Foundation
import Synchronization

/// An AWS access key pair, optionally with the session token of temporary credentials.
/// Its descriptions and mirror show the access key ID only, so printing, logging or
/// dumping it leaks no secret.
public struct S3Credentials: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The public half, named in every signature's credential scope.
    public var accessKeyID: String
    /// The secret half; it never leaves the process, only signatures made with it do.
    public var secretAccessKey: String
    /// Sent as `x-amz-security-token` when present (temporary STS credentials).
    public var sessionToken: String?

    /// Credentials from their parts.
    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    /// `S3Credentials(AKIA..., secret and session token withheld)`.
    public var description: String {
        "S3Credentials(\(accessKeyID), secret\(sessionToken == nil ? "" : " and session token") withheld)"
    }

    public var debugDescription: String { description }

    /// The access key ID alone.
    public var customMirror: Mirror { Mirror(self, children: ["accessKeyID": accessKeyID], displayStyle: .struct) }
}

/// The parts of an HTTP request that SigV4 covers, as they appear on the wire.
public struct SigV4Request: Sendable {
    /// The request method, upper case (`GET`, `PUT`, ...).
    public var method: String
    /// The raw request-target path exactly as sent (already percent-encoded), without the
    /// query. An empty path means `/`.
    public var path: String
    /// The raw query string after `?` (nil when there is none).
    public var query: String?
    /// Every header of the request in order; names are compared case-insensitively and a
    /// repeated name contributes all of its values.
    public var headers: [(name: String, value: String)]

    /// A request from its wire parts.
    public init(method: String, path: String, query: String? = nil, headers: [(name: String, value: String)]) {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
    }

    /// Splits a raw request target (`/bucket/key?list-type=2`) into path and query.
    public init(method: String, target: String, headers: [(name: String, value: String)]) {
        if let q = target.firstIndex(of: "?") {
            self.init(method: method, path: String(target[..<q]), query: String(target[target.index(after: q)...]), headers: headers)
        } else {
            self.init(method: method, path: target, query: nil, headers: headers)
        }
    }

    /// The values of header `name` (case-insensitive) joined by commas, or nil when absent.
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        let values = headers.filter { $0.name.lowercased() == lower }.map(\.value)
        return values.isEmpty ? nil : values.joined(separator: ",")
    }
}

/// The fields of a parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
public struct SigV4Authorization: Hashable, Sendable {
    /// The access key that claims to have signed.
    public var accessKeyID: String
    /// The scope's date, `yyyyMMdd`.
    public var date: String
    /// The scope's region (`us-east-1`).
    public var region: String
    /// The scope's service (`s3`).
    public var service: String
    /// The lower-case header names the signature covers, in the order given.
    public var signedHeaders: [String]
    /// 64 lower-case hex digits.
    public var signature: String

    /// A header's fields; see the properties.
    public init(accessKeyID: String, date: String, region: String, service: String, signedHeaders: [String], signature: String) {
        self.accessKeyID = accessKeyID
        self.date = date
        self.region = region
        self.service = service
        self.signedHeaders = signedHeaders
        self.signature = signature
    }

    /// `date/region/service/aws4_request`.
    public var credentialScope: String { "\(date)/\(region)/\(service)/aws4_request" }
}

/// Why a request failed SigV4 authentication. Every case corresponds to the S3 error
/// code (`code`) and HTTP status (`httpStatus`) a server should answer with.
public enum SigV4Error: Error, Hashable, Sendable, CustomStringConvertible {
    /// No `Authorization` header, or authentication the subset does not support.
    case accessDenied(String)
    /// The `Authorization` header does not parse, or its scope contradicts the request.
    case authorizationHeaderMalformed(String)
    /// The access key is unknown to the server.
    case invalidAccessKeyID(String)
    /// The signature is well formed but wrong: the request was altered, or signed with
    /// a different secret.
    case signatureDoesNotMatch
    /// The request time is further from the server's clock than the allowed skew.
    case requestTimeTooSkewed(requestTime: Date, serverTime: Date)
    /// A header SigV4 needs (`x-amz-content-sha256`) is missing.
    case missingSecurityHeader(String)
    /// A header has a value that cannot be right (for example a malformed payload hash).
    case invalidArgument(String)
    /// The body's SHA-256 differs from the declared `x-amz-content-sha256`.
    case contentSHA256Mismatch

    /// The S3 error code, for an `<Error><Code>` element.
    public var code: String {
        switch self {
        case .accessDenied: "AccessDenied"
        case .authorizationHeaderMalformed: "AuthorizationHeaderMalformed"
        case .invalidAccessKeyID: "InvalidAccessKeyId"
        case .signatureDoesNotMatch: "SignatureDoesNotMatch"
        case .requestTimeTooSkewed: "RequestTimeTooSkewed"
        case .missingSecurityHeader: "MissingSecurityHeader"
        case .invalidArgument: "InvalidArgument"
        case .contentSHA256Mismatch: "XAmzContentSHA256Mismatch"
        }
    }

    /// The HTTP status S3 answers with for this code.
    public var httpStatus: Int {
        switch self {
        case .accessDenied, .invalidAccessKeyID, .signatureDoesNotMatch, .requestTimeTooSkewed: 403
        case .authorizationHeaderMalformed, .missingSecurityHeader, .invalidArgument, .contentSHA256Mismatch: 400
        }
    }

    /// A human-readable explanation, for an `<Error><Message>` element.
    public var message: String {
        switch self {
        case .accessDenied(let why): "Access Denied: \(why)"
        case .authorizationHeaderMalformed(let why): "The authorization header is malformed: \(why)"
        case .invalidAccessKeyID(let id): "The AWS access key ID \"\(id)\" does not exist in our records."
        case .signatureDoesNotMatch:
            "The request signature we calculated does not match the signature you provided. Check your key and signing method."
        case .requestTimeTooSkewed(let requestTime, let serverTime):
            "The difference between the request time (\(S3Time.amz(requestTime))) and the server time (\(S3Time.amz(serverTime))) is too large."
        case .missingSecurityHeader(let header): "Your request is missing a required header: \(header)"
        case .invalidArgument(let why): why
        case .contentSHA256Mismatch: "The provided x-amz-content-sha256 header does not match what was computed."
        }
    }

    /// `Code: message`.
    public var description: String { "\(code): \(message)" }
}

/// AWS Signature Version 4 for S3, as pure functions: building the canonical request and
/// string to sign, deriving the signing key, signing a request, and parsing and verifying
/// an `Authorization` header. No I/O and no clock: times are arguments.
///
/// S3's variant differs from the generic one in two ways that matter here: the path is
/// URI-encoded exactly once (never normalised or double-encoded), and the payload hash
/// line is the `x-amz-content-sha256` header's value (a hex SHA-256, `UNSIGNED-PAYLOAD`,
/// or a `STREAMING-...` marker).
public enum SigV4 {
    /// The only algorithm supported.
    public static let algorithm = "AWS4-HMAC-SHA256"
    /// `x-amz-content-sha256` of a request whose body is not covered by the signature.
    public static let unsignedPayload = "UNSIGNED-PAYLOAD"
    /// The hex SHA-256 of no bytes.
    public static let emptyPayloadHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    /// Headers never signed by `sign` because proxies and HTTP stacks may add, drop or
    /// rewrite them in transit.
    static let unsignableHeaders: Set<String> = [
        "authorization", "connection", "expect", "keep-alive", "proxy-authorization", "te", "trailer", "transfer-encoding",
        "upgrade", "user-agent", "x-amzn-trace-id",
    ]

    // MARK: Encoding

    /// Percent-encodes `bytes` with S3's rules: every byte except the RFC 3986 unreserved
    /// characters (`A-Z a-z 0-9 - _ . ~`) becomes `%XX` (upper-case hex); `/` is kept as is
    /// unless `encodeSlash` is set (it is set for query names and values).
    public static func uriEncode<Bytes: Sequence<UInt8>>(_ bytes: Bytes, encodeSlash: Bool) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 3)
        for b in bytes {
            if isUnreserved(b) || (b == UInt8(ascii: "/") && !encodeSlash) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hexDigitsUpper[Int(b >> 4)])
                out.append(hexDigitsUpper[Int(b & 0x0F)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// `uriEncode` of a string's UTF-8 bytes.
    public static func uriEncode(_ text: String, encodeSlash: Bool) -> String { uriEncode(text.utf8, encodeSlash: encodeSlash) }

    /// Decodes `%XX` escapes into bytes. A `%` not followed by two hex digits is kept as a
    /// literal `%`; `+` is kept as `+` (S3 does not use form encoding in paths).
    public static func percentDecode(_ text: some StringProtocol) -> [UInt8] {
        let b = Array(text.utf8)
        var out: [UInt8] = []
        out.reserveCapacity(b.count)
        var i = 0
        while i < b.count {
            if b[i] == UInt8(ascii: "%"), i + 2 < b.count, let hi = hexValue(b[i + 1]), let lo = hexValue(b[i + 2]) {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(b[i])
                i += 1
            }
        }
        return out
    }

    /// The canonical URI of a raw wire path: decoded once, then encoded once with S3's
    /// rules (slashes kept), so that a client that left `$` unescaped and one that sent
    /// `%24` sign the same string. An empty path is `/`.
    public static func canonicalURI(_ rawPath: String) -> String {
        if rawPath.isEmpty { return "/" }
        return uriEncode(percentDecode(rawPath), encodeSlash: false)
    }

    /// The canonical query string of a raw query: each `name=value` pair decoded and
    /// re-encoded with S3's rules (slashes encoded too), a missing value written `name=`,
    /// sorted by encoded name and then encoded value, joined with `&`. Nil or empty gives
    /// the empty string.
    public static func canonicalQuery(_ rawQuery: String?) -> String {
        guard let rawQuery, !rawQuery.isEmpty else { return "" }
        var pairs: [(String, String)] = []
        for item in rawQuery.split(separator: "&", omittingEmptySubsequences: true) {
            let name: Substring
            let value: Substring
            if let eq = item.firstIndex(of: "=") {
                name = item[..<eq]
                value = item[item.index(after: eq)...]
            } else {
                name = item
                value = ""
            }
            pairs.append((uriEncode(percentDecode(name), encodeSlash: true), uriEncode(percentDecode(value), encodeSlash: true)))
        }
        // Encoded strings are ASCII, so String's ordering is byte order here.
        pairs.sort { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// A header value as SigV4 canonicalises it: surrounding whitespace trimmed and every
    /// run of spaces or tabs inside collapsed to one space.
    static func canonicalHeaderValue(_ value: String) -> String {
        var out: [UInt8] = []
        var pendingSpace = false
        for b in value.utf8 {
            if b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(UInt8(ascii: " ")) }
                pendingSpace = false
                out.append(b)
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    // MARK: Signing

    /// The canonical request: method, canonical URI, canonical query, one `name:value` line
    /// per signed header (values of a repeated header joined by commas; an absent header
    /// has an empty value), a blank line, the signed header list, and `payloadHash`.
    ///
    /// `signedHeaders` are lower-case names; they are used in the order given (callers
    /// that sign pass them sorted, as SigV4 requires).
    public static func canonicalRequest(_ request: SigV4Request, signedHeaders: [String], payloadHash: String) -> String {
        var values: [String: [String]] = [:]
        for (name, value) in request.headers {
            values[name.lowercased(), default: []].append(canonicalHeaderValue(value))
        }
        var lines = [request.method, canonicalURI(request.path), canonicalQuery(request.query)]
        for name in signedHeaders {
            lines.append("\(name):\((values[name] ?? []).joined(separator: ","))")
        }
        lines.append("")
        lines.append(signedHeaders.joined(separator: ";"))
        lines.append(payloadHash)
        return lines.joined(separator: "\n")
    }

    /// The string to sign: the algorithm, the request time (`yyyyMMdd'T'HHmmss'Z'`), the
    /// credential scope and the hex SHA-256 of the canonical request, one per line.
    public static func stringToSign(canonicalRequest: String, amzDate: String, credentialScope: String) -> String {
        [algorithm, amzDate, credentialScope, sha256Hex(Array(canonicalRequest.utf8))].joined(separator: "\n")
    }

    /// The signing key: HMAC-SHA256 chained over `date` (`yyyyMMdd`), `region`, `service`
    /// and `aws4_request`, starting from `"AWS4" + secret`.
    public static func signingKey(secret: String, date: String, region: String, service: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array(("AWS4" + secret).utf8))
        for part in [date, region, service, "aws4_request"] {
            key = SymmetricKey(data: Array(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        return key
    }

    /// `signingKey`, remembered per secret, date, region and service: the key changes only
    /// once a day, while deriving it costs four HMACs on every request signed or checked.
    /// Holds a handful of keys; when more are asked for, it starts over.
    static func cachedSigningKey(secret: String, date: String, region: String, service: String) -> SymmetricKey {
        let scope = SigningScope(secret: secret, date: date, region: region, service: service)
        if let bytes = signingKeys.withLock({ $0[scope] }) { return SymmetricKey(data: bytes) }
        let key = signingKey(secret: secret, date: date, region: region, service: service)
        let bytes = key.withUnsafeBytes { Array($0) }
        signingKeys.withLock { keys in
            if keys.count >= maxCachedSigningKeys { keys.removeAll() }
            keys[scope] = bytes
        }
        return key
    }

    struct SigningScope: Hashable {
        var secret: String
        var date: String
        var region: String
        var service: String
    }

    static let maxCachedSigningKeys = 16
    private static let signingKeys = Mutex<[SigningScope: [UInt8]]>([:])

    /// The hex signature of `stringToSign` under `key`.
    public static func signature(stringToSign: String, key: SymmetricKey) -> String {
        hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
    }

    /// Signs `request` and returns the headers to add to it: `Authorization`, `x-amz-date`,
    /// `x-amz-content-sha256` and, for temporary credentials, `x-amz-security-token`.
    ///
    /// Every header of `request` is signed except hop-by-hop ones (`Connection`,
    /// `User-Agent`, ...); `Host` must be among them. Any `x-amz-date`,
    /// `x-amz-content-sha256` or `x-amz-security-token` already in `request` is ignored and
    /// replaced by the returned values, which the caller must send instead.
    public static func sign(
        request: SigV4Request, credentials: S3Credentials, region: String, service: String = "s3", date: Date, payloadHash: String
    ) -> [(String, String)] {
        let amzDate = S3Time.amz(date)
        var added: [(String, String)] = [("x-amz-date", amzDate), ("x-amz-content-sha256", payloadHash)]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }
        let replaced = Set(added.map(\.0))
        var signing = request
        signing.headers = request.headers.filter { !replaced.contains($0.name.lowercased()) } + added.map { (name: $0.0, value: $0.1) }
        let signedHeaders = Set(signing.headers.map { $0.name.lowercased() }).subtracting(unsignableHeaders).sorted()
        let scopeDate = String(amzDate.prefix(8))
        let authorization = SigV4Authorization(
            accessKeyID: credentials.accessKeyID, date: scopeDate, region: region, service: service, signedHeaders: signedHeaders,
            signature: "")
        let canonical = canonicalRequest(signing, signedHeaders: signedHeaders, payloadHash: payloadHash)
        let toSign = stringToSign(canonicalRequest: canonical, amzDate: amzDate, credentialScope: authorization.credentialScope)
        let key = cachedSigningKey(secret: credentials.secretAccessKey, date: scopeDate, region: region, service: service)
        let header = "\(algorithm) Credential=\(credentials.accessKeyID)/\(authorization.credentialScope),"
            + "SignedHeaders=\(signedHeaders.joined(separator: ";")),Signature=\(signature(stringToSign: toSign, key: key))"
        return [("Authorization", header)] + added
    }

    // MARK: Verification

    /// Parses an `Authorization` header value of the form
    /// `AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
    /// SignedHeaders=<a;b;c>, Signature=<hex>` (spaces after the commas optional).
    ///
    /// Throws `accessDenied` for another scheme (SigV2, Basic, ...) and
    /// `authorizationHeaderMalformed` for a SigV4 header that does not parse.
    public static func parseAuthorization(_ header: String) throws(SigV4Error) -> SigV4Authorization {
        let trimmed = trimSpaces(Substring(header))
        guard trimmed.hasPrefix(algorithm + " ") else {
            throw .accessDenied("only \(algorithm) authorization is supported")
        }
        var fields: [String: String] = [:]
        for part in trimmed.dropFirst(algorithm.count + 1).split(separator: ",", omittingEmptySubsequences: false) {
            let item = trimSpaces(part)
            guard let eq = item.firstIndex(of: "=") else { throw .authorizationHeaderMalformed("expected name=value, found \"\(item)\"") }
            let name = String(item[..<eq])
            guard ["Credential", "SignedHeaders", "Signature"].contains(name) else {
                throw .authorizationHeaderMalformed("unexpected component \"\(name)\"")
            }
            guard fields[name] == nil else { throw .authorizationHeaderMalformed("repeated component \"\(name)\"") }
            fields[name] = String(item[item.index(after: eq)...])
        }
        guard let credential = fields["Credential"], let signed = fields["SignedHeaders"], let signature = fields["Signature"] else {
            throw .authorizationHeaderMalformed("Credential, SignedHeaders and Signature are all required")
        }
        // The scope is the last four components; what precedes them is the key ID.
        let parts = credential.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count >= 5, parts[parts.count - 1] == "aws4_request" else {
            throw .authorizationHeaderMalformed("the Credential must be <key>/<date>/<region>/<service>/aws4_request")
        }
        let accessKeyID = parts[0..<(parts.count - 4)].joined(separator: "/")
        let date = String(parts[parts.count - 4])
        let region = String(parts[parts.count - 3])
        let service = String(parts[parts.count - 2])
        guard !accessKeyID.isEmpty, !region.isEmpty, !service.isEmpty else {
            throw .authorizationHeaderMalformed("empty access key, region or service in the Credential")
        }
        guard date.utf8.count == 8, date.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw .authorizationHeaderMalformed("the credential date \"\(date)\" is not yyyyMMdd")
        }
        let names = signed.split(separator: ";", omittingEmptySubsequences: false).map(String.init)
        guard !names.isEmpty, names.allSatisfy({ !$0.isEmpty && $0 == $0.lowercased() && !$0.contains(where: \.isWhitespace) }) else {
            throw .authorizationHeaderMalformed("SignedHeaders must be a list of lower-case header names separated by ';'")
        }
        guard signature.utf8.count == 64, signature.utf8.allSatisfy({ isLowerHex($0) }) else {
            throw .authorizationHeaderMalformed("the Signature must be 64 lower-case hex digits")
        }
        return SigV4Authorization(
            accessKeyID: accessKeyID, date: date, region: region, service: service, signedHeaders: names, signature: signature)
    }

    /// Checks that `request` carries a valid signature as described by `authorization`.
    ///
    /// The order of the checks decides which error a bad request gets, as S3 does: the
    /// request time (`x-amz-date`, else `Date`) must parse and be within `maxSkew` of
    /// `now`; the scope date must be that time's date; `host` must be signed;
    /// `x-amz-content-sha256` must be present and well formed; the key must be known to
    /// `secretFor`; and finally the recomputed signature must equal the given one
    /// (compared in constant time). Whether the body matches a hex payload hash is not
    /// checked here (the body may not have arrived yet): see `checkPayload`.
    public static func verify(
        request: SigV4Request, authorization: SigV4Authorization, secretFor: (String) -> String?, now: Date,
        maxSkew: TimeInterval = 900
    ) throws(SigV4Error) {
        let amzDate: String
        let requestTime: Date
        if let text = request.header("x-amz-date") {
            guard let parsed = S3Time.parseAmz(text) else { throw .accessDenied("the x-amz-date header \"\(text)\" is not yyyyMMdd'T'HHmmss'Z'") }
            amzDate = text
            requestTime = parsed
        } else if let text = request.header("date") {
            guard let parsed = S3Time.parseHTTP(text) else { throw .accessDenied("the Date header \"\(text)\" is not an HTTP date") }
            amzDate = S3Time.amz(parsed)
            requestTime = parsed
        } else {
            throw .accessDenied("AWS authentication requires a valid Date or x-amz-date header")
        }
        guard abs(requestTime.timeIntervalSince(now)) <= maxSkew else {
            throw .requestTimeTooSkewed(requestTime: requestTime, serverTime: now)
        }
        guard authorization.date == String(amzDate.prefix(8)) else {
            throw .authorizationHeaderMalformed("the credential date \(authorization.date) is not the request's date \(amzDate.prefix(8))")
        }
        guard authorization.signedHeaders.contains("host") else {
            throw .authorizationHeaderMalformed("the host header must be signed")
        }
        guard let payloadHash = request.header("x-amz-content-sha256") else {
            throw .missingSecurityHeader("x-amz-content-sha256")
        }
        guard isValidPayloadHash(payloadHash) else {
            throw .invalidArgument("x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-..., or a hex SHA-256; found \"\(payloadHash)\"")
        }
        guard let secret = secretFor(authorization.accessKeyID) else {
            throw .invalidAccessKeyID(authorization.accessKeyID)
        }
        // A signed header that did not arrive cannot have been signed as sent.
        guard authorization.signedHeaders.allSatisfy({ request.header($0) != nil }) else { throw .signatureDoesNotMatch }
        let canonical = canonicalRequest(request, signedHeaders: authorization.signedHeaders, payloadHash: payloadHash)
        let toSign = stringToSign(canonicalRequest: canonical, amzDate: amzDate, credentialScope: authorization.credentialScope)
        let key = cachedSigningKey(
            secret: secret, date: authorization.date, region: authorization.region, service: authorization.service)
        let expected = signature(stringToSign: toSign, key: key)
        guard constantTimeEqual(Array(expected.utf8), Array(authorization.signature.utf8)) else {
            throw .signatureDoesNotMatch
        }
    }

    /// Parses the request's `Authorization` header and verifies it (see `verify`);
    /// returns the parsed header so that the caller can check the region or service.
    /// Throws `accessDenied` when the request carries no `Authorization` header.
    @discardableResult
    public static func authenticate(
        request: SigV4Request, secretFor: (String) -> String?, now: Date, maxSkew: TimeInterval = 900
    ) throws(SigV4Error) -> SigV4Authorization {
        guard let header = request.header("authorization") else {
            throw .accessDenied("the request is not signed (no Authorization header)")
        }
        let authorization = try parseAuthorization(header)
        try verify(request: request, authorization: authorization, secretFor: secretFor, now: now, maxSkew: maxSkew)
        return authorization
    }

    /// Checks a received body against the declared `x-amz-content-sha256`: a hex hash must
    /// match (`contentSHA256Mismatch` otherwise); `UNSIGNED-PAYLOAD` and `STREAMING-...`
    /// values are accepted as they are (streaming chunk signatures are not verified).
    public static func checkPayload(_ body: [UInt8], declaredHash: String) throws(SigV4Error) {
        guard declaredHash.utf8.count == 64, declaredHash.utf8.allSatisfy({ isLowerHex($0) || isUpperHex($0) }) else { return }
        guard sha256Hex(body) == declaredHash.lowercased() else { throw .contentSHA256Mismatch }
    }

    /// Whether `value` is an acceptable `x-amz-content-sha256`.
    public static func isValidPayloadHash(_ value: String) -> Bool {
        if value == unsignedPayload || value.hasPrefix("STREAMING-") { return true }
        return value.utf8.count == 64 && value.utf8.allSatisfy { isLowerHex($0) || isUpperHex($0) }
    }

    /// `text` without leading and trailing spaces and tabs (the only whitespace an HTTP
    /// header value carries).
    static func trimSpaces(_ text: Substring) -> Substring {
        func isSpace(_ c: Character) -> Bool { c == " " || c == "\t" }
        guard let first = text.firstIndex(where: { !isSpace($0) }), let last = text.lastIndex(where: { !isSpace($0) }) else {
            return text[text.endIndex...]
        }
        return text[first...last]
    }

    // MARK: Hashing

    /// The lower-case hex SHA-256 of `bytes`.
    public static func sha256Hex(_ bytes: [UInt8]) -> String { hex(SHA256.hash(data: bytes)) }

    /// The base64 MD5 of `bytes`, as the `Content-MD5` header carries it.
    public static func contentMD5(_ bytes: [UInt8]) -> String {
        Data(Insecure.MD5.hash(data: bytes)).base64EncodedString()
    }

    static func hex<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> String {
        var out: [UInt8] = []
        for b in bytes {
            out.append(hexDigitsLower[Int(b >> 4)])
            out.append(hexDigitsLower[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func hex(_ digest: some Digest) -> String { hex(Array(digest)) }

    static func hex(_ code: HashedAuthenticationCode<SHA256>) -> String { hex(Array(code)) }

    /// Equality whose running time depends only on the lengths, not on where the first
    /// difference is.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for i in a.indices { diff |= a[i] ^ b[i] }
        return diff == 0
    }

    private static let hexDigitsUpper = Array("0123456789ABCDEF".utf8)
    private static let hexDigitsLower = Array("0123456789abcdef".utf8)

    static func isUnreserved(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z")) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
            || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
            || b == UInt8(ascii: ".") || b == UInt8(ascii: "~")
    }

    private static func isLowerHex(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9")) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "f"))
    }

    private static func isUpperHex(_ b: UInt8) -> Bool { b >= UInt8(ascii: "A") && b <= UInt8(ascii: "F") }

    static func hexValue(_ b: UInt8) -> UInt8? {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): b - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): b - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): b - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}
