import Foundation
import PersistCore
import Testing

@testable import PersistS3

/// The worked examples of AWS's S3 documentation, "Signature Calculations for the
/// Authorization Header: Transferring Payload in a Single Chunk" (the examplebucket
/// examples signed on 2013-05-24 with the documentation's example key pair). The expected
/// hashes and signatures below are the values printed there.
enum AWSExample {
    static let credentials = S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let host = "examplebucket.s3.amazonaws.com"
    /// 2013-05-24T00:00:00Z.
    static let date = Date(timeIntervalSince1970: 1_369_353_600)
    static let emptyHash = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
}

@Suite struct SigV4Tests {
    // MARK: AWS's published examples

    @Test func awsGetObjectExample() {
        let request = SigV4Request(method: "GET", path: "/test.txt", headers: [("Host", AWSExample.host), ("Range", "bytes=0-9")])
        let signedHeaders = ["host", "range", "x-amz-content-sha256", "x-amz-date"]
        var withAmz = request
        withAmz.headers += [("x-amz-content-sha256", AWSExample.emptyHash), ("x-amz-date", "20130524T000000Z")]
        let canonical = SigV4.canonicalRequest(withAmz, signedHeaders: signedHeaders, payloadHash: AWSExample.emptyHash)
        #expect(
            canonical == """
                GET
                /test.txt

                host:examplebucket.s3.amazonaws.com
                range:bytes=0-9
                x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                x-amz-date:20130524T000000Z

                host;range;x-amz-content-sha256;x-amz-date
                e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
                """)
        let toSign = SigV4.stringToSign(
            canonicalRequest: canonical, amzDate: "20130524T000000Z", credentialScope: "20130524/us-east-1/s3/aws4_request")
        #expect(
            toSign == """
                AWS4-HMAC-SHA256
                20130524T000000Z
                20130524/us-east-1/s3/aws4_request
                7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972
                """)
        let added = SigV4.sign(
            request: request, credentials: AWSExample.credentials, region: "us-east-1", service: "s3", date: AWSExample.date,
            payloadHash: AWSExample.emptyHash)
        #expect(
            value(added, "Authorization")
                == "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
                + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
        #expect(value(added, "x-amz-date") == "20130524T000000Z")
        #expect(value(added, "x-amz-content-sha256") == AWSExample.emptyHash)
        #expect(value(added, "x-amz-security-token") == nil)
    }

    @Test func awsPutObjectExample() throws {
        let body = Array("Welcome to Amazon S3.".utf8)
        let payloadHash = SigV4.sha256Hex(body)
        #expect(payloadHash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        // The example's request line has an unescaped `$`; the canonical URI escapes it once.
        let request = SigV4Request(
            method: "PUT", path: "/test$file.text",
            headers: [("Host", AWSExample.host), ("Date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY")])
        #expect(SigV4.canonicalURI(request.path) == "/test%24file.text")
        var withAmz = request
        withAmz.headers += [("x-amz-date", "20130524T000000Z"), ("x-amz-content-sha256", payloadHash)]
        let canonical = SigV4.canonicalRequest(
            withAmz, signedHeaders: ["date", "host", "x-amz-content-sha256", "x-amz-date", "x-amz-storage-class"], payloadHash: payloadHash)
        #expect(SigV4.sha256Hex(Array(canonical.utf8)) == "9e0e90d9c76de8fa5b200d8c849cd5b8dc7a3be3951ddb7f6a76b4158342019d")
        let added = SigV4.sign(
            request: request, credentials: AWSExample.credentials, region: "us-east-1", date: AWSExample.date, payloadHash: payloadHash)
        let auth = try SigV4.parseAuthorization(try #require(value(added, "Authorization")))
        #expect(auth.signedHeaders == ["date", "host", "x-amz-content-sha256", "x-amz-date", "x-amz-storage-class"])
        #expect(auth.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
        // The same request with the `$` already escaped on the wire signs identically.
        var escaped = request
        escaped.path = "/test%24file.text"
        let again = SigV4.sign(
            request: escaped, credentials: AWSExample.credentials, region: "us-east-1", date: AWSExample.date, payloadHash: payloadHash)
        #expect(value(again, "Authorization") == value(added, "Authorization"))
    }

    @Test func awsGetBucketLifecycleExample() throws {
        // A sub-resource without a value is canonicalised as `lifecycle=`.
        #expect(SigV4.canonicalQuery("lifecycle") == "lifecycle=")
        let request = SigV4Request(method: "GET", path: "/", query: "lifecycle", headers: [("Host", AWSExample.host)])
        let added = SigV4.sign(
            request: request, credentials: AWSExample.credentials, region: "us-east-1", date: AWSExample.date,
            payloadHash: AWSExample.emptyHash)
        let auth = try SigV4.parseAuthorization(try #require(value(added, "Authorization")))
        #expect(auth.signedHeaders == ["host", "x-amz-content-sha256", "x-amz-date"])
        #expect(auth.signature == "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543")
    }

    @Test func awsListObjectsExample() throws {
        let request = SigV4Request(method: "GET", path: "/", query: "max-keys=2&prefix=J", headers: [("Host", AWSExample.host)])
        var withAmz = request
        withAmz.headers += [("x-amz-content-sha256", AWSExample.emptyHash), ("x-amz-date", "20130524T000000Z")]
        let canonical = SigV4.canonicalRequest(
            withAmz, signedHeaders: ["host", "x-amz-content-sha256", "x-amz-date"], payloadHash: AWSExample.emptyHash)
        #expect(SigV4.sha256Hex(Array(canonical.utf8)) == "df57d21db20da04d7fa30298dd4488ba3a2b47ca3a489c74750e0f1e7df1b9b7")
        let added = SigV4.sign(
            request: request, credentials: AWSExample.credentials, region: "us-east-1", date: AWSExample.date,
            payloadHash: AWSExample.emptyHash)
        let auth = try SigV4.parseAuthorization(try #require(value(added, "Authorization")))
        #expect(auth.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
        // Parameter order on the wire does not change the signature.
        var reordered = request
        reordered.query = "prefix=J&max-keys=2"
        let again = SigV4.sign(
            request: reordered, credentials: AWSExample.credentials, region: "us-east-1", date: AWSExample.date,
            payloadHash: AWSExample.emptyHash)
        #expect(value(again, "Authorization") == value(added, "Authorization"))
    }

    @Test func awsExamplesVerify() throws {
        // The server side accepts the documented GET request as sent, at the documented time.
        let request = SigV4Request(
            method: "GET", path: "/test.txt",
            headers: [
                ("Host", AWSExample.host), ("Range", "bytes=0-9"), ("x-amz-content-sha256", AWSExample.emptyHash),
                ("x-amz-date", "20130524T000000Z"),
                (
                    "Authorization",
                    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                        + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
                        + "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
                ),
            ])
        let auth = try SigV4.authenticate(request: request, secretFor: Self.secrets, now: AWSExample.date)
        #expect(auth.accessKeyID == "AKIAIOSFODNN7EXAMPLE")
        #expect(auth.region == "us-east-1")
        #expect(auth.service == "s3")
    }

    // MARK: Canonical forms

    @Test func uriEncodingFollowsS3Rules() {
        #expect(SigV4.uriEncode("aZ09-_.~", encodeSlash: true) == "aZ09-_.~")
        #expect(SigV4.uriEncode("a b/c+d=é", encodeSlash: false) == "a%20b/c%2Bd%3D%C3%A9")
        #expect(SigV4.uriEncode("a b/c+d=é", encodeSlash: true) == "a%20b%2Fc%2Bd%3D%C3%A9")
        #expect(SigV4.uriEncode("!'()*", encodeSlash: true) == "%21%27%28%29%2A")
        #expect(SigV4.uriEncode("\u{0}\u{7F}", encodeSlash: true) == "%00%7F")
        #expect(SigV4.percentDecode("%41%zz%4") == Array("A%zz%4".utf8))
        #expect(SigV4.percentDecode("a+b%2b") == Array("a+b+".utf8))
    }

    @Test func canonicalURIEncodesOnce() {
        #expect(SigV4.canonicalURI("") == "/")
        #expect(SigV4.canonicalURI("/") == "/")
        #expect(SigV4.canonicalURI("/b/a%20b") == "/b/a%20b")
        #expect(SigV4.canonicalURI("/b/a b") == "/b/a%20b")
        #expect(SigV4.canonicalURI("/b/%25") == "/b/%25")
        // No normalisation: dot segments and double slashes are part of S3 keys.
        #expect(SigV4.canonicalURI("/b/./../x//y") == "/b/./../x//y")
        // Encoding is idempotent on already-encoded paths.
        for key in ["a", "a b", "%", "%2F", "é", "\u{1}", "a+b", "~x"] {
            let wire = "/bucket/" + SigV4.uriEncode(key, encodeSlash: false)
            #expect(SigV4.canonicalURI(wire) == wire)
        }
    }

    @Test func canonicalQuerySortsAndEncodes() {
        #expect(SigV4.canonicalQuery(nil) == "")
        #expect(SigV4.canonicalQuery("") == "")
        #expect(SigV4.canonicalQuery("b=2&a=1&a=0") == "a=0&a=1&b=2")
        #expect(SigV4.canonicalQuery("list-type=2&prefix=a/b c&encoding-type=url") == "encoding-type=url&list-type=2&prefix=a%2Fb%20c")
        #expect(SigV4.canonicalQuery("x&&y=") == "x=&y=")
        #expect(SigV4.canonicalQuery("k=a%2Fb") == "k=a%2Fb")
        // Sorted by the encoded name: "A" (0x41) before "_" (0x5F) before "a".
        #expect(SigV4.canonicalQuery("a=1&_=2&A=3") == "A=3&_=2&a=1")
    }

    @Test func headerValuesAreTrimmedAndCollapsed() {
        let request = SigV4Request(method: "GET", path: "/", headers: [("Host", "h"), ("X-Multi", "  a   b\t c  "), ("x-multi", "d")])
        let canonical = SigV4.canonicalRequest(request, signedHeaders: ["host", "x-multi"], payloadHash: SigV4.unsignedPayload)
        #expect(canonical.contains("\nx-multi:a b c,d\n"))
    }

    // MARK: Round trips and tampering

    static func secrets(_ id: String) -> String? {
        switch id {
        case "AKIAIOSFODNN7EXAMPLE": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        case "other": "other-secret"
        default: nil
        }
    }

    static let now = Date(timeIntervalSince1970: 1_700_000_000)

    /// A signed PUT as our client would send it.
    static func signedPut(
        path: String = "/bucket/some%20key", query: String? = nil, body: [UInt8] = Array("payload".utf8),
        credentials: S3Credentials = AWSExample.credentials, at date: Date = now
    ) -> SigV4Request {
        var request = SigV4Request(
            method: "PUT", path: path, query: query,
            headers: [("Host", "127.0.0.1:9000"), ("Content-Length", String(body.count)), ("Content-MD5", SigV4.contentMD5(body))])
        for (name, value) in SigV4.sign(
            request: request, credentials: credentials, region: "us-east-1", date: date, payloadHash: SigV4.sha256Hex(body))
        {
            request.headers.append((name: name, value: value))
        }
        return request
    }

    static func verifyError(_ request: SigV4Request, now: Date = now) -> SigV4Error? {
        do {
            try SigV4.authenticate(request: request, secretFor: secrets, now: now)
            return nil
        } catch {
            return error
        }
    }

    static func replacing(_ request: SigV4Request, _ name: String, with value: String) -> SigV4Request {
        var copy = request
        copy.headers = copy.headers.map { $0.name.lowercased() == name.lowercased() ? (name: $0.name, value: value) : $0 }
        return copy
    }

    @Test func signThenVerifyRoundTrips() throws {
        #expect(Self.verifyError(Self.signedPut()) == nil)
        #expect(Self.verifyError(Self.signedPut(path: "/b/%E2%9C%93/a%26b%3Cc%3E", query: "x-id=PutObject")) == nil)
        #expect(Self.verifyError(Self.signedPut(path: "/")) == nil)
        // Temporary credentials: the token is sent and signed.
        let temporary = S3Credentials(accessKeyID: "other", secretAccessKey: "other-secret", sessionToken: "token/+=")
        let request = Self.signedPut(credentials: temporary)
        #expect(request.header("x-amz-security-token") == "token/+=")
        let auth = try SigV4.authenticate(request: request, secretFor: Self.secrets, now: Self.now)
        #expect(auth.signedHeaders.contains("x-amz-security-token"))
        #expect(Self.verifyError(Self.replacing(request, "x-amz-security-token", with: "other")) == .signatureDoesNotMatch)
        // Within the allowed skew on both sides.
        #expect(Self.verifyError(Self.signedPut(), now: Self.now.addingTimeInterval(899)) == nil)
        #expect(Self.verifyError(Self.signedPut(), now: Self.now.addingTimeInterval(-899)) == nil)
    }

    @Test func signingIgnoresHopByHopHeadersAndReplacesAmzHeaders() throws {
        let base = SigV4Request(
            method: "GET", path: "/b/k",
            headers: [("Host", "h"), ("User-Agent", "x"), ("Connection", "keep-alive"), ("x-amz-date", "19990101T000000Z")])
        let added = SigV4.sign(
            request: base, credentials: AWSExample.credentials, region: "r", date: Self.now, payloadHash: SigV4.emptyPayloadHash)
        let auth = try SigV4.parseAuthorization(try #require(value(added, "Authorization")))
        #expect(auth.signedHeaders == ["host", "x-amz-content-sha256", "x-amz-date"])
        #expect(value(added, "x-amz-date") == S3Time.amz(Self.now))
    }

    @Test func tamperingIsDetected() {
        let good = Self.signedPut()
        var path = good
        path.path = "/bucket/other%20key"
        #expect(Self.verifyError(path) == .signatureDoesNotMatch)
        var query = good
        query.query = "uploads"
        #expect(Self.verifyError(query) == .signatureDoesNotMatch)
        var method = good
        method.method = "DELETE"
        #expect(Self.verifyError(method) == .signatureDoesNotMatch)
        #expect(Self.verifyError(Self.replacing(good, "Host", with: "evil:9000")) == .signatureDoesNotMatch)
        #expect(Self.verifyError(Self.replacing(good, "Content-MD5", with: SigV4.contentMD5([1]))) == .signatureDoesNotMatch)
        #expect(
            Self.verifyError(Self.replacing(good, "x-amz-content-sha256", with: SigV4.sha256Hex(Array("other".utf8))))
                == .signatureDoesNotMatch)
        #expect(Self.verifyError(Self.replacing(good, "x-amz-content-sha256", with: SigV4.unsignedPayload)) == .signatureDoesNotMatch)
        // A signed header that was dropped.
        var dropped = good
        dropped.headers.removeAll { $0.name == "Content-MD5" }
        #expect(Self.verifyError(dropped) == .signatureDoesNotMatch)
        // An unsigned header added later is harmless.
        var extra = good
        extra.headers.append((name: "User-Agent", value: "curl"))
        #expect(Self.verifyError(extra) == nil)
    }

    @Test func wrongSecretOrUnknownKeyIsRejected() {
        let wrongSecret = S3Credentials(accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "not-the-secret")
        #expect(Self.verifyError(Self.signedPut(credentials: wrongSecret)) == .signatureDoesNotMatch)
        let unknown = S3Credentials(accessKeyID: "nobody", secretAccessKey: "x")
        #expect(Self.verifyError(Self.signedPut(credentials: unknown)) == .invalidAccessKeyID("nobody"))
        #expect(SigV4Error.invalidAccessKeyID("nobody").code == "InvalidAccessKeyId")
        #expect(SigV4Error.invalidAccessKeyID("nobody").httpStatus == 403)
    }

    @Test func skewedRequestTimeIsRejected() {
        let old = Self.signedPut(at: Self.now.addingTimeInterval(-901))
        let error = Self.verifyError(old)
        #expect(error == .requestTimeTooSkewed(requestTime: Self.now.addingTimeInterval(-901), serverTime: Self.now))
        #expect(error?.code == "RequestTimeTooSkewed")
        let future = Self.signedPut(at: Self.now.addingTimeInterval(3600))
        #expect(Self.verifyError(future)?.code == "RequestTimeTooSkewed")
        // A custom allowance.
        #expect(throws: Never.self) {
            try SigV4.authenticate(request: old, secretFor: Self.secrets, now: Self.now, maxSkew: 3600)
        }
        // A request time that is not a date at all.
        #expect(Self.verifyError(Self.replacing(Self.signedPut(), "x-amz-date", with: "yesterday"))?.code == "AccessDenied")
    }

    @Test func missingPiecesMapToS3Codes() throws {
        let good = Self.signedPut()
        var unsigned = good
        unsigned.headers.removeAll { $0.name == "Authorization" }
        #expect(Self.verifyError(unsigned)?.code == "AccessDenied")
        var noHash = good
        noHash.headers.removeAll { $0.name == "x-amz-content-sha256" }
        #expect(Self.verifyError(noHash) == .missingSecurityHeader("x-amz-content-sha256"))
        #expect(Self.verifyError(Self.replacing(good, "x-amz-content-sha256", with: "abc"))?.code == "InvalidArgument")
        var noDate = good
        noDate.headers.removeAll { $0.name == "x-amz-date" }
        #expect(Self.verifyError(noDate)?.code == "AccessDenied")
        // A scope date that is not the request's date.
        let header = try #require(good.header("Authorization"))
        let otherDay = Self.replacing(good, "Authorization", with: header.replacingOccurrences(of: String(S3Time.amz(Self.now).prefix(8)) + "/", with: "20000101/"))
        #expect(Self.verifyError(otherDay)?.code == "AuthorizationHeaderMalformed")
        // Host must be signed.
        let noHost = Self.replacing(good, "Authorization", with: header.replacingOccurrences(of: "SignedHeaders=content-length;content-md5;host;", with: "SignedHeaders=content-length;content-md5;"))
        #expect(Self.verifyError(noHost)?.code == "AuthorizationHeaderMalformed")
    }

    @Test func requestTimeMayComeFromTheDateHeader() throws {
        // A client that sends no x-amz-date signs with the Date header's time.
        var request = SigV4Request(
            method: "GET", path: "/b/k",
            headers: [("Host", "h"), ("Date", S3Time.http(Self.now)), ("x-amz-content-sha256", SigV4.emptyPayloadHash)])
        let signed = ["date", "host", "x-amz-content-sha256"]
        let scope = "\(S3Time.amz(Self.now).prefix(8))/us-east-1/s3/aws4_request"
        let toSign = SigV4.stringToSign(
            canonicalRequest: SigV4.canonicalRequest(request, signedHeaders: signed, payloadHash: SigV4.emptyPayloadHash),
            amzDate: S3Time.amz(Self.now), credentialScope: scope)
        let key = SigV4.signingKey(
            secret: AWSExample.credentials.secretAccessKey, date: String(S3Time.amz(Self.now).prefix(8)), region: "us-east-1", service: "s3")
        let signature = SigV4.signature(stringToSign: toSign, key: key)
        request.headers.append(
            (name: "Authorization", value: "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/\(scope), SignedHeaders=date;host;x-amz-content-sha256, Signature=\(signature)"))
        #expect(Self.verifyError(request) == nil)
        #expect(Self.verifyError(Self.replacing(request, "Date", with: S3Time.http(Self.now.addingTimeInterval(1)))) == .signatureDoesNotMatch)
        // Signing x-amz-date and then dropping it cannot pass.
        var dropped = Self.signedPut()
        dropped.headers.removeAll { $0.name == "x-amz-date" }
        dropped.headers.append((name: "Date", value: S3Time.http(Self.now)))
        #expect(Self.verifyError(dropped) == .signatureDoesNotMatch)
    }

    @Test(arguments: [
        "", "AWS AKIAIOSFODNN7EXAMPLE:abc", "Basic dXNlcjpwYXNz", "AWS4-HMAC-SHA256",
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request",
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3,SignedHeaders=host,Signature=" + String(repeating: "0", count: 64),
        "AWS4-HMAC-SHA256 Credential=a/2013052/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" + String(repeating: "0", count: 64),
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request,SignedHeaders=Host,Signature=" + String(repeating: "0", count: 64),
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;;x,Signature=" + String(repeating: "0", count: 64),
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" + String(repeating: "0", count: 63),
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" + String(repeating: "A", count: 64),
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" + String(repeating: "0", count: 64)
            + ",Signature=" + String(repeating: "0", count: 64),
        "AWS4-HMAC-SHA256 Credential=a/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" + String(repeating: "0", count: 64)
            + ",Extra=1",
        "AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request,SignedHeaders=host,Signature=" + String(repeating: "0", count: 64),
    ])
    func malformedAuthorizationIsRefused(_ header: String) {
        #expect(throws: SigV4Error.self) { try SigV4.parseAuthorization(header) }
        do {
            _ = try SigV4.parseAuthorization(header)
        } catch {
            #expect(["AccessDenied", "AuthorizationHeaderMalformed"].contains(error.code), "\(error)")
        }
    }

    @Test func authorizationParsesWithOrWithoutSpaces() throws {
        let sig = String(repeating: "ab", count: 32)
        let tight = try SigV4.parseAuthorization("AWS4-HMAC-SHA256 Credential=K/20130524/eu-west-1/s3/aws4_request,SignedHeaders=host;x-amz-date,Signature=\(sig)")
        let loose = try SigV4.parseAuthorization(
            "AWS4-HMAC-SHA256   Credential=K/20130524/eu-west-1/s3/aws4_request,  SignedHeaders=host;x-amz-date ,Signature=\(sig) ")
        #expect(tight == loose)
        #expect(tight.accessKeyID == "K")
        #expect(tight.credentialScope == "20130524/eu-west-1/s3/aws4_request")
        #expect(tight.signedHeaders == ["host", "x-amz-date"])
    }

    @Test func cachedSigningKeysEqualFreshOnesForEveryScope() {
        let secret = AWSExample.credentials.secretAccessKey
        // More scopes than the cache holds, each asked twice: the second answer may come
        // from the cache, and must be the key derived afresh.
        for round in 0..<2 {
            for day in 0..<(SigV4.maxCachedSigningKeys + 4) {
                let date = String(20130500 + day + 1)
                for (region, service) in [("us-east-1", "s3"), ("eu-west-1", "s3")] {
                    let fresh = SigV4.signingKey(secret: secret, date: date, region: region, service: service)
                    let cached = SigV4.cachedSigningKey(secret: secret, date: date, region: region, service: service)
                    #expect(cached == fresh, "round \(round), \(date) \(region)")
                }
            }
        }
        let other = SigV4.cachedSigningKey(secret: "another", date: "20130524", region: "us-east-1", service: "s3")
        #expect(other != SigV4.cachedSigningKey(secret: secret, date: "20130524", region: "us-east-1", service: "s3"))
    }

    @Test func authorizationTrimsTabsAndSpacesOnly() throws {
        let sig = String(repeating: "cd", count: 32)
        let tabbed = try SigV4.parseAuthorization(
            "\tAWS4-HMAC-SHA256 Credential=K/20130524/us-east-1/s3/aws4_request,\tSignedHeaders=host , Signature=\(sig)\t")
        #expect(tabbed.signedHeaders == ["host"] && tabbed.signature == sig)
        #expect(SigV4.trimSpaces(" \t ") == "")
        #expect(SigV4.trimSpaces("a b") == "a b")
    }

    @Test func payloadCheck() {
        let body = Array("hello".utf8)
        #expect(throws: Never.self) { try SigV4.checkPayload(body, declaredHash: SigV4.sha256Hex(body)) }
        #expect(throws: Never.self) { try SigV4.checkPayload(body, declaredHash: SigV4.sha256Hex(body).uppercased()) }
        #expect(throws: Never.self) { try SigV4.checkPayload(body, declaredHash: SigV4.unsignedPayload) }
        #expect(throws: Never.self) { try SigV4.checkPayload(body, declaredHash: "STREAMING-AWS4-HMAC-SHA256-PAYLOAD") }
        #expect(throws: SigV4Error.contentSHA256Mismatch) { try SigV4.checkPayload(body, declaredHash: SigV4.emptyPayloadHash) }
        #expect(SigV4Error.contentSHA256Mismatch.code == "XAmzContentSHA256Mismatch")
        #expect(SigV4.contentMD5([]) == "1B2M2Y8AsgTpgAmY7PhCfg==")
        #expect(SigV4.sha256Hex([]) == SigV4.emptyPayloadHash)
    }

    @Test func credentialsFromEnvironment() {
        #expect(S3Credentials.fromEnvironment([:]) == nil)
        #expect(S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "a"]) == nil)
        #expect(S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": ""]) == nil)
        #expect(
            S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"])
                == S3Credentials(accessKeyID: "a", secretAccessKey: "s"))
        #expect(
            S3Credentials.fromEnvironment(["AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s", "AWS_SESSION_TOKEN": "t"])?.sessionToken
                == "t")
    }

    @Test func requestTargetSplits() {
        let request = SigV4Request(method: "GET", target: "/b?list-type=2&prefix=a", headers: [])
        #expect(request.path == "/b")
        #expect(request.query == "list-type=2&prefix=a")
        #expect(SigV4Request(method: "GET", target: "/b", headers: []).query == nil)
        #expect(SigV4Request(method: "GET", target: "/b?", headers: []).query == "")
    }

    // MARK: Time formats

    @Test func timeFormatsRoundTrip() {
        #expect(S3Time.amz(AWSExample.date) == "20130524T000000Z")
        #expect(S3Time.http(AWSExample.date) == "Fri, 24 May 2013 00:00:00 GMT")
        #expect(S3Time.iso8601(AWSExample.date) == "2013-05-24T00:00:00.000Z")
        #expect(S3Time.amz(Date(timeIntervalSince1970: 0)) == "19700101T000000Z")
        #expect(S3Time.http(Date(timeIntervalSince1970: 951_782_400)) == "Tue, 29 Feb 2000 00:00:00 GMT")
        #expect(S3Time.iso8601(Date(timeIntervalSince1970: -1.5)) == "1969-12-31T23:59:58.500Z")
        var rng = SeededGenerator(seed: 7)
        for _ in 0..<2000 {
            let seconds = Double(Int64.random(in: -2_000_000_000...8_000_000_000, using: &rng))
            let date = Date(timeIntervalSince1970: seconds)
            #expect(S3Time.parseAmz(S3Time.amz(date)) == date)
            #expect(S3Time.parseHTTP(S3Time.http(date)) == date)
            #expect(S3Time.parseISO8601(S3Time.iso8601(date)) == date)
        }
        #expect(S3Time.parseISO8601("2013-05-24T00:00:00Z") == AWSExample.date)
        #expect(S3Time.parseISO8601("2013-05-24T00:00:00.250Z") == AWSExample.date.addingTimeInterval(0.25))
        for bad in ["", "20130524T000000", "20130230T000000Z", "2013052AT000000Z", "20131324T000000Z", "20130524T240000Z"] {
            #expect(S3Time.parseAmz(bad) == nil, "\(bad)")
        }
        for bad in ["Fri, 24 May 2013 00:00:00 UTC", "Fri, 24 Mai 2013 00:00:00 GMT", "Xyz, 24 May 2013 00:00:00 GMT", "24 May 2013"] {
            #expect(S3Time.parseHTTP(bad) == nil, "\(bad)")
        }
        for bad in ["2013-05-24 00:00:00Z", "2013-05-24T00:00:00.2Z", "2013-02-29T00:00:00Z"] {
            #expect(S3Time.parseISO8601(bad) == nil, "\(bad)")
        }
    }
}

/// The value of the first pair named `name` (case-insensitive) in `headers`.
func value(_ headers: [(String, String)], _ name: String) -> String? {
    headers.first { $0.0.lowercased() == name.lowercased() }?.1
}
