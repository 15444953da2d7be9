import Crypto
import Foundation
import NIOCore
import PersistCore
import PersistLocation
import PersistS3
import Testing

@testable import PersistServices

/// The blob-store's pure parts: routing, bucket names, body plans, aws-chunked decoding,
/// checksums, listing pages and credentials files. No sockets.
@Suite struct BlobStoreLogicTests {
    // MARK: Routing

    func route(_ method: String, _ target: String, _ headers: [String: String] = [:]) -> Result<BlobStoreOperation, BlobStoreError> {
        Result { () throws(BlobStoreError) in
            try BlobStoreRouter.route(method: method, target: target, header: { name in headers[name.lowercased()] })
        }
    }

    func code(_ result: Result<BlobStoreOperation, BlobStoreError>) -> String? {
        if case .failure(let e) = result { return e.code }
        return nil
    }

    @Test func objectOperationsRoute() throws {
        #expect(try route("GET", "/bkt/a/b.txt").get() == .getObject(bucket: "bkt", key: "a/b.txt"))
        #expect(try route("HEAD", "/bkt/k").get() == .headObject(bucket: "bkt", key: "k"))
        #expect(try route("PUT", "/bkt/k?x-id=PutObject").get() == .putObject(bucket: "bkt", key: "k"))
        #expect(try route("DELETE", "/bkt/k").get() == .deleteObject(bucket: "bkt", key: "k"))
        // Keys are decoded once; slashes, dots and encoded bytes are just key bytes.
        #expect(try route("GET", "/bkt/%2e%2e/x").get() == .getObject(bucket: "bkt", key: "../x"))
        #expect(try route("GET", "/bkt/../../etc/passwd").get() == .getObject(bucket: "bkt", key: "../../etc/passwd"))
        #expect(try route("GET", "/bkt//a//b").get() == .getObject(bucket: "bkt", key: "/a//b"))
        #expect(try route("GET", "/bkt/%00nul").get() == .getObject(bucket: "bkt", key: "\u{0}nul"))
        #expect(try route("GET", "/bkt/%C3%A9t%C3%A9").get() == .getObject(bucket: "bkt", key: "été"))
        #expect(try route("GET", "/bkt/a%2Bb+c").get() == .getObject(bucket: "bkt", key: "a+b+c"))
    }

    @Test func bucketOperationsRoute() throws {
        #expect(try route("PUT", "/bkt").get() == .createBucket(bucket: "bkt"))
        #expect(try route("PUT", "/bkt/").get() == .createBucket(bucket: "bkt"))
        #expect(try route("HEAD", "/bkt").get() == .headBucket(bucket: "bkt"))
        var q = ListObjectsV2Query()
        q.prefix = "a/b c"
        q.maxKeys = 7
        q.continuationToken = "dG9r"
        q.startAfter = "a/"
        q.urlEncoded = true
        #expect(
            try route("GET", "/bkt?list-type=2&prefix=a%2Fb%20c&max-keys=7&continuation-token=dG9r&start-after=a%2F&encoding-type=url").get()
                == .listObjectsV2(bucket: "bkt", query: q))
        // max-keys is capped at 1000.
        if case .listObjectsV2(_, let query) = try route("GET", "/bkt?list-type=2&max-keys=5000").get() {
            #expect(query.maxKeys == 1000)
        } else {
            Issue.record("not a listing")
        }
        #expect(try route("GET", "/").get() == .listBuckets)
    }

    @Test func refusalsCarryS3Codes() {
        #expect(code(route("GET", "/bkt/%zz")) == "InvalidArgument")
        #expect(code(route("GET", "/bkt/abc%")) == "InvalidArgument")
        #expect(code(route("GET", "/bkt/%ff%fe")) == "InvalidArgument")  // not UTF-8
        #expect(code(route("GET", "http://host/bkt/k")) == "InvalidArgument")
        #expect(code(route("GET", "/bkt/" + String(repeating: "k", count: 1025))) == "KeyTooLongError")
        #expect(code(route("GET", "/bkt/" + String(repeating: "k", count: 1024))) == nil)
        #expect(code(route("GET", "/bkt/" + String(repeating: "%C3%A9", count: 513))) == "KeyTooLongError")  // 1026 bytes
        #expect(code(route("GET", "/BKT/k")) == "InvalidBucketName")
        #expect(code(route("GET", "/../k")) == "InvalidBucketName")
        #expect(code(route("GET", "/bkt/k?acl")) == "NotImplemented")
        #expect(code(route("GET", "/bkt/k?versionId=3")) == "NotImplemented")
        #expect(code(route("POST", "/bkt/k?uploads")) == "NotImplemented")
        #expect(code(route("POST", "/bkt?delete")) == "NotImplemented")
        #expect(code(route("GET", "/bkt")) == "NotImplemented")  // ListObjects v1
        #expect(code(route("GET", "/bkt?list-type=2&versioning")) == "NotImplemented")
        #expect(code(route("DELETE", "/bkt")) == "NotImplemented")
        #expect(code(route("GET", "/bkt/k?X-Amz-Signature=ab")) == "NotImplemented")
        #expect(code(route("PUT", "/bkt/k", ["x-amz-copy-source": "/bkt/j"])) == "NotImplemented")
        #expect(code(route("POST", "/bkt/k")) == "MethodNotAllowed")
        #expect(code(route("PATCH", "/bkt/k")) == "MethodNotAllowed")
        #expect(code(route("PUT", "/")) == "MethodNotAllowed")
        #expect(code(route("GET", "/bkt?list-type=1")) == "InvalidArgument")
        #expect(code(route("GET", "/bkt?list-type=2&max-keys=-1")) == "InvalidArgument")
        #expect(code(route("GET", "/bkt?list-type=2&max-keys=x")) == "InvalidArgument")
        #expect(code(route("GET", "/bkt?list-type=2&encoding-type=base64")) == "InvalidArgument")
    }

    @Test func bucketNamesFollowS3Rules() {
        for good in ["abc", "my-bucket", "my.bucket.1", "a1b", String(repeating: "a", count: 63), "1.2.3"] {
            #expect(BlobStoreRouter.isValidBucketName(good), "\(good)")
        }
        for bad in [
            "ab", String(repeating: "a", count: 64), "ABC", "-abc", "abc-", ".abc", "abc.", "a..b", "a_b", "a/b", "..", ".",
            "192.168.1.1", "xn--abc", "sthree-x", "abc-s3alias", "abc--ol-s3", "a b", "ab\u{0}", "été",
        ] {
            #expect(!BlobStoreRouter.isValidBucketName(bad), "\(bad.debugDescription)")
        }
    }

    @Test func strictPercentDecoding() {
        #expect(BlobStoreRouter.percentDecode("a%20b") == Array("a b".utf8))
        #expect(BlobStoreRouter.percentDecode("%") == nil)
        #expect(BlobStoreRouter.percentDecode("%4") == nil)
        #expect(BlobStoreRouter.percentDecode("%4g") == nil)
        #expect(BlobStoreRouter.percentDecode("%41%42") == Array("AB".utf8))
    }

    // MARK: Checksums and body plans

    @Test func checksumsMatchTheirCheckValues() {
        let input = Array("123456789".utf8)
        #expect(BlobStoreChecksum.base64(.crc32, of: input) == "y/Q5Jg==")
        #expect(BlobStoreChecksum.base64(.crc32c, of: input) == "4waSgw==")
        #expect(BlobStoreChecksum.base64(.crc64nvme, of: input) == "rosUhgp5mIg=")
        #expect(BlobStoreChecksum.base64(.sha1, of: input) == "98O8HYCOBHMq32eZZczDTKeuNEE=")
        // Fed in pieces, the same.
        var c = BlobStoreChecksum(.crc64nvme)
        for b in input { [b].withUnsafeBytes { c.update($0) } }
        #expect(Data(c.digest()).base64EncodedString() == "rosUhgp5mIg=")
    }

    func plan(_ headers: [String: String], max: Int = 1000) -> Result<BlobStorePayloadPlan, BlobStoreError> {
        Result { () throws(BlobStoreError) in
            try BlobStorePayloadPlan.make(header: { headers[$0.lowercased()] }, maxObjectSize: max)
        }
    }

    @Test func payloadPlans() throws {
        let hex = String(repeating: "ab", count: 32)
        let p = try plan(["x-amz-content-sha256": hex, "content-length": "5", "content-md5": "XUFAKrxLKna5cZ2REBfFkg=="]).get()
        #expect(!p.chunked && p.declaredLength == 5 && p.expectedSHA256?.count == 32 && p.expectedMD5?.count == 16)
        let c = try plan([
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": "10",
            "content-length": "5000", "x-amz-trailer": "x-amz-checksum-crc32",
        ]).get()
        #expect(c.chunked && c.declaredLength == 10 && c.trailerChecksum == .crc32)
        #expect(try plan(["content-encoding": "aws-chunked"]).get().chunked)
        #expect(try plan(["x-amz-content-sha256": "UNSIGNED-PAYLOAD"]).get().expectedSHA256 == nil)

        func failure(_ r: Result<BlobStorePayloadPlan, BlobStoreError>) -> String? {
            if case .failure(let e) = r { return e.code }
            return nil
        }
        #expect(failure(plan(["content-length": "1001"])) == "EntityTooLarge")
        #expect(failure(plan(["content-length": "1000"])) == nil)
        #expect(failure(plan(["x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": "2000"])) == "EntityTooLarge")
        #expect(failure(plan(["content-md5": "not base64!"])) == "InvalidDigest")
        #expect(failure(plan(["content-md5": "AAAA"])) == "InvalidDigest")
        #expect(failure(plan(["x-amz-content-sha256": "abc"])) == "InvalidArgument")
        #expect(failure(plan(["x-amz-content-sha256": "STREAMING-AWS4-ECDSA-P256-SHA256-PAYLOAD"])) == "NotImplemented")
        #expect(failure(plan(["x-amz-checksum-crc32": "AAAAAAAA"])) == "InvalidRequest")
        #expect(failure(plan(["x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-trailer": "x-amz-checksum-md7"])) == "InvalidRequest")
        #expect(failure(plan(["x-amz-trailer": "x-amz-checksum-crc32"])) == "InvalidRequest")
    }

    // MARK: aws-chunked

    static func chunked(_ data: [UInt8], chunk: Int, trailer: String?, signed: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        var i = 0
        let sig = ";chunk-signature=" + String(repeating: "0", count: 64)
        while i < data.count {
            let n = min(chunk, data.count - i)
            out += Array((String(n, radix: 16) + (signed ? sig : "") + "\r\n").utf8)
            out += data[i..<(i + n)]
            out += Array("\r\n".utf8)
            i += n
        }
        out += Array(("0" + (signed ? sig : "") + "\r\n").utf8)
        if let trailer { out += Array((trailer + "\r\n").utf8) }
        out += Array("\r\n".utf8)
        return out
    }

    /// Receives `body` split at every offset of `splits` and returns the outcome.
    func receive(_ plan: BlobStorePayloadPlan, _ body: [UInt8], splitEvery: Int) -> Result<[UInt8], BlobStoreError> {
        var receiver = BlobStoreBodyReceiver(plan: plan, maxObjectSize: 1 << 20)
        return Result { () throws(BlobStoreError) in
            var i = 0
            while i < body.count {
                let piece = Array(body[i..<min(body.count, i + splitEvery)])
                var failure: BlobStoreError?
                piece.withUnsafeBytes { raw in
                    do throws(BlobStoreError) { try receiver.receive(raw) } catch { failure = error }
                }
                if let failure { throw failure }
                i += splitEvery
            }
            return try receiver.finish().object
        }
    }

    @Test func theMD5IsComputedOnceWhereItIsNeeded() throws {
        let data = Array("hello".utf8)
        let md5 = Array(Insecure.MD5.hash(data: data))
        // Checked against Content-MD5: computed while receiving.
        var checked = BlobStoreBodyReceiver(plan: try plan(["content-md5": "XUFAKrxLKna5cZ2REBfFkg=="]).get(), maxObjectSize: 100)
        data.withUnsafeBytes { try? checked.receive($0) }
        let withMD5 = try checked.finish()
        #expect(withMD5.object == data && withMD5.md5 == md5)
        // Otherwise left to the caller.
        var plain = BlobStoreBodyReceiver(plan: try plan(["content-length": "5"]).get(), maxObjectSize: 100)
        data.withUnsafeBytes { try? plain.receive($0) }
        let withoutMD5 = try plain.finish()
        #expect(withoutMD5.object == data && withoutMD5.md5 == nil)
        #expect(BlobStoreBodyReceiver.md5(of: data) == md5)
    }

    @Test func backgroundMD5MatchesWhateverTheBuffers() async {
        var rng = SeededGenerator(seed: 11)
        let data = (0..<(3 * BlobStoreBackgroundMD5.batchBytes + 777)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let expected = Array(Insecure.MD5.hash(data: data))
        for pieceSize in [1 << 16, 100_003, BlobStoreBackgroundMD5.batchBytes, data.count] {
            let hasher = BlobStoreBackgroundMD5()
            var offset = 0
            while offset < data.count {
                let end = min(offset + pieceSize, data.count)
                hasher.update(ByteBuffer(bytes: data[offset..<end]))
                offset = end
            }
            #expect(await hasher.digest() == expected, "pieces of \(pieceSize)")
            #expect(await BlobStoreObjectMD5.pending(BlobStoreBackgroundMD5()).digest(of: []) == Array(Insecure.MD5.hash(data: [UInt8]())))
        }
        #expect(await BlobStoreObjectMD5.unknown.digest(of: data) == expected)
        #expect(await BlobStoreObjectMD5.known([1, 2]).digest(of: data) == [1, 2])
    }

    @Test func objectFilesReadRangesAndHashInPieces() async throws {
        let directory = BlobStoreTestDirectory("object-file")
        defer { directory.remove() }
        let bucket = try FileBlob(root: directory.path + "/bucket")
        let data = (0..<(2 * BlobStoreObjectFile.pieceBytes + 5)).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        try await bucket.set("k/1", data)
        let file = try #require(try await BlobStoreObjectFile.open("k/1", in: bucket))
        #expect(file.info.size == data.count)
        #expect(file.info == BlobStoreFileInfo.of("k/1", in: bucket))
        #expect(try await file.md5() == Array(Insecure.MD5.hash(data: data)))
        for range in [0..<0, 0..<1, 10..<100_000, (data.count - 3)..<data.count, 0..<data.count] {
            let bytes = try await file.read(range)
            #expect(Array(bytes.readableBytesView) == Array(data[range]), "\(range)")
        }
        // The open file stays whole when the key is replaced or removed meanwhile.
        try await bucket.set("k/1", [1])
        _ = try await bucket.delete("k/1")
        #expect(Array(try await file.read(0..<data.count).readableBytesView) == data)
        // Past the end is an error, not short data.
        await #expect(throws: StorageError.self) { _ = try await file.read(data.count..<(data.count + 1)) }
        #expect(try await BlobStoreObjectFile.open("k/1", in: bucket) == nil)
        #expect(try await BlobStoreObjectFile.open("missing/deeper/than/any", in: bucket) == nil)
        let long = String(repeating: "x", count: 3 * FileBlobPath.maxComponent)
        #expect(try await BlobStoreObjectFile.open(long, in: bucket) == nil, "a long key's missing directories")
    }

    @Test func awsChunkedBodiesDecodeWhateverTheSplits() throws {
        var rng = SeededGenerator(seed: 7)
        let data = (0..<3000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let crc = BlobStoreChecksum.base64(.crc32, of: data)
        let p = try plan(
            [
                "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": "3000",
                "x-amz-trailer": "x-amz-checksum-crc32",
            ], max: 1 << 20
        ).get()
        let body = Self.chunked(data, chunk: 1024, trailer: "x-amz-checksum-crc32:" + crc)
        for split in [1, 2, 3, 7, 64, 1000, body.count] {
            #expect(try receive(p, body, splitEvery: split).get() == data, "split \(split)")
        }
        // Signed chunks (signatures not verified) with an empty trailer section.
        let signed = try plan(
            ["x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", "x-amz-decoded-content-length": "3000"], max: 1 << 20
        ).get()
        #expect(try receive(signed, Self.chunked(data, chunk: 8192, trailer: nil, signed: true), splitEvery: 5).get() == data)
        // The empty object.
        let empty = try plan(["x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": "0"]).get()
        #expect(try receive(empty, Self.chunked([], chunk: 1, trailer: nil), splitEvery: 1).get() == [])
    }

    @Test func badChunkedBodiesAreRefused() throws {
        let data = Array("hello world".utf8)
        let headers = [
            "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "x-amz-decoded-content-length": "11",
            "x-amz-trailer": "x-amz-checksum-crc32",
        ]
        let p = try plan(headers).get()
        func code(_ body: [UInt8], _ plan: BlobStorePayloadPlan) -> String? {
            if case .failure(let e) = receive(plan, body, splitEvery: 3) { return e.code }
            return nil
        }
        let good = "x-amz-checksum-crc32:" + BlobStoreChecksum.base64(.crc32, of: data)
        #expect(code(Self.chunked(data, chunk: 4, trailer: good), p) == nil)
        #expect(code(Self.chunked(data, chunk: 4, trailer: "x-amz-checksum-crc32:AAAAAA=="), p) == "BadDigest")
        #expect(code(Self.chunked(data, chunk: 4, trailer: nil), p) == "IncompleteBody")  // promised trailer missing
        #expect(code(Array(Self.chunked(data, chunk: 4, trailer: good).dropLast(2)), p) == "IncompleteBody")  // truncated
        #expect(code(Array("zz\r\nab\r\n".utf8), p) == "InvalidRequest")  // bad size
        #expect(code(Array("3\r\nabcd\r\n".utf8), p) == "InvalidRequest")  // data longer than its size
        #expect(code(Array("3\nabc\r\n".utf8), p) == "InvalidRequest")  // bare LF
        #expect(code(Array(String(repeating: "1", count: 5000).utf8), p) == "InvalidRequest")  // endless size line
        #expect(code(Self.chunked(data, chunk: 4, trailer: good) + [0x41], p) == "InvalidRequest")  // data after the end
        #expect(code(Self.chunked(data + [1], chunk: 4, trailer: good), p) == "IncompleteBody")  // longer than declared
        // Decoded bytes beyond the object size limit are refused as they arrive.
        var small = BlobStoreBodyReceiver(plan: BlobStorePayloadPlan(chunked: false), maxObjectSize: 4)
        var refused: BlobStoreError?
        Array("12345".utf8).withUnsafeBytes { raw in
            do throws(BlobStoreError) { try small.receive(raw) } catch { refused = error }
        }
        #expect(refused?.code == "EntityTooLarge")
    }

    @Test func plainBodiesAreVerified() throws {
        let data = Array("hello".utf8)
        let sha = SigV4.sha256Hex(data)
        #expect(try receive(try plan(["x-amz-content-sha256": sha, "content-md5": "XUFAKrxLKna5cZ2REBfFkg=="]).get(), data, splitEvery: 2).get() == data)
        func code(_ headers: [String: String]) throws -> String? {
            if case .failure(let e) = receive(try plan(headers).get(), data, splitEvery: 2) { return e.code }
            return nil
        }
        #expect(try code(["content-md5": "XUFAKrxLKna5cZ2REBfFkw=="]) == "BadDigest")
        #expect(try code(["x-amz-content-sha256": String(repeating: "0", count: 64)]) == "XAmzContentSHA256Mismatch")
        #expect(try code(["x-amz-checksum-crc32": BlobStoreChecksum.base64(.crc32, of: Array("hellO".utf8))]) == "BadDigest")
        #expect(try code(["x-amz-checksum-sha256": Data(BlobStoreHex.bytes(sha)).base64EncodedString()]) == nil)
        #expect(try code(["content-length": "6"]) == "IncompleteBody")
    }

    // MARK: Listing

    static let keys = ["a", "a/1", "a/2", "b", "b/x/1", "b/y", "c", "é"]
    static var listing: [BlobMetadata] { keys.map { BlobMetadata(key: $0, sizeBytes: $0.utf8.count) } }

    func pages(_ query: ListObjectsV2Query) throws -> [BlobStoreListPage] {
        var q = query
        var out: [BlobStoreListPage] = []
        while true {
            let page = try BlobStoreListing.page(Self.listing.filter { $0.key.hasPrefix(q.prefix) }, query: q)
            out.append(page)
            guard page.isTruncated else { return out }
            let token = try #require(page.nextContinuationToken)
            q.continuationToken = token
            try #require(out.count < 100, "pagination does not end")
        }
    }

    @Test func paginationVisitsEveryKeyOnce() throws {
        for size in 1...9 {
            var q = ListObjectsV2Query()
            q.maxKeys = size
            let all = try pages(q)
            #expect(all.flatMap { $0.contents.map(\.key) } == Self.keys, "page size \(size)")
            #expect(all.dropLast().allSatisfy { $0.keyCount == size && $0.isTruncated })
            #expect(all.last?.isTruncated == false && all.last?.nextContinuationToken == nil)
        }
        var q = ListObjectsV2Query()
        q.prefix = "b"
        q.startAfter = "b/x"
        #expect(try pages(q).flatMap { $0.contents.map(\.key) } == ["b/x/1", "b/y"])
        q.maxKeys = 0
        let zero = try BlobStoreListing.page(Self.listing, query: q)
        #expect(zero.keyCount == 0 && !zero.isTruncated)
    }

    @Test func delimitersRollUpCommonPrefixes() throws {
        for size in 1...6 {
            var q = ListObjectsV2Query()
            q.delimiter = "/"
            q.maxKeys = size
            let all = try pages(q)
            #expect(all.flatMap { $0.contents.map(\.key) } == ["a", "b", "c", "é"], "page size \(size)")
            #expect(all.flatMap(\.commonPrefixes) == ["a/", "b/"], "page size \(size)")
            q.prefix = "b/"
            let inB = try pages(q)
            #expect(inB.flatMap { $0.contents.map(\.key) } == ["b/y"])
            #expect(inB.flatMap(\.commonPrefixes) == ["b/x/"])
        }
    }

    @Test func foreignContinuationTokensAreRefused() {
        var q = ListObjectsV2Query()
        q.continuationToken = "not*base64"
        #expect(throws: BlobStoreError.self) { try BlobStoreListing.page(Self.listing, query: q) }
    }

    // MARK: Credentials and idleness

    @Test func credentialsFiles() throws {
        let keys = try BlobStoreCredentialsFile.parse("# keys\nAKID1 secret1\n\n  AKID2\tsecret/2+x  \n")
        #expect(keys == ["AKID1": "secret1", "AKID2": "secret/2+x"])
        #expect(throws: BlobStoreCredentialsFile.ParseError.self) { try BlobStoreCredentialsFile.parse("AKID1\n") }
        #expect(throws: BlobStoreCredentialsFile.ParseError.self) { try BlobStoreCredentialsFile.parse("a b c\n") }
        #expect(throws: BlobStoreCredentialsFile.ParseError.self) { try BlobStoreCredentialsFile.parse("a b\na c\n") }
        #expect(try BlobStoreCredentialsFile.load(file: nil, environment: ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "s"]) == ["id": "s"])
        #expect(try BlobStoreCredentialsFile.load(file: nil, environment: [:]).isEmpty)
    }

    @Test func idleClosingOnlyWhileWaitingForTheClient() {
        var s = BlobStoreIdleState()
        #expect(s.closeOnReadTimeout)
        s.requestEnded()
        #expect(!s.closeOnReadTimeout)  // the server is working on it
        s.responseEnded()
        #expect(s.closeOnReadTimeout)
        // An answer given before its request ended: idle again once the request ends.
        s.responseEnded()
        s.requestEnded()
        #expect(s.closeOnReadTimeout)
        s.requestEnded()
        #expect(!s.closeOnReadTimeout)
    }
}

/// Hex to bytes, for test vectors.
enum BlobStoreHex {
    static func bytes(_ hex: String) -> [UInt8] {
        var out: [UInt8] = []
        var it = hex.utf8.makeIterator()
        while let h = it.next(), let l = it.next() {
            out.append(UInt8(String(decoding: [h, l], as: UTF8.self), radix: 16) ?? 0)
        }
        return out
    }
}
