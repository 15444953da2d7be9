import Crypto
import Foundation
import NIOCore
import PersistConformance
import PersistCore
import PersistLocation
import PersistS3
import Testing

@testable import PersistServices

/// `BlobStoreService` in this process, driven with raw HTTP: the S3 operations, and
/// every kind of bad input, after each of which the server must still serve a good
/// request.
@Suite struct BlobStoreServiceTests {
    static let signer = BlobStoreRequestBuilder()

    /// A good request on a fresh connection still works.
    static func stillServes(_ server: BlobStoreTestServer, _ note: Comment? = nil) async throws {
        let key = "alive-\(UInt32.random(in: 0...UInt32.max))"
        let put = try await server.exchange(signer.request("PUT", "/bkt/" + key, body: [1, 2, 3]))
        #expect(put.status == 200, note)
        let get = try await server.exchange(signer.request("GET", "/bkt/" + key))
        #expect(get.status == 200 && get.body == [1, 2, 3], note)
    }

    static func md5Hex(_ bytes: [UInt8]) -> String {
        Insecure.MD5.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
    }

    @Test func objectLifecycle() async throws {
        try await BlobStoreTestServer.with("lifecycle") { server in
            let body = Array("hello, blob-store".utf8)
            let put = try await server.exchange(Self.signer.request("PUT", "/bkt/dir/obj.txt", body: body))
            #expect(put.status == 200)
            #expect(put.headers["etag"] == "\"\(Self.md5Hex(body))\"")
            #expect(put.headers["x-amz-request-id"]?.count == 16)

            let get = try await server.exchange(Self.signer.request("GET", "/bkt/dir/obj.txt"))
            #expect(get.status == 200 && get.body == body)
            #expect(get.headers["etag"] == put.headers["etag"])
            let modified = try #require(get.headers["last-modified"].flatMap(S3Time.parseHTTP))
            #expect(abs(modified.timeIntervalSinceNow) < 300)

            let head = try await server.exchange(Self.signer.request("HEAD", "/bkt/dir/obj.txt"), head: true)
            #expect(head.status == 200 && head.headers["content-length"] == String(body.count) && head.headers["etag"] == put.headers["etag"])

            let delete = try await server.exchange(Self.signer.request("DELETE", "/bkt/dir/obj.txt"))
            #expect(delete.status == 204)
            let again = try await server.exchange(Self.signer.request("DELETE", "/bkt/dir/obj.txt"))
            #expect(again.status == 204, "DeleteObject is idempotent")

            let missing = try await server.exchange(Self.signer.request("GET", "/bkt/dir/obj.txt"))
            #expect(missing.status == 404)
            let error = try #require(missing.error)
            #expect(error.code == "NoSuchKey" && error.key == "dir/obj.txt")
            #expect(error.requestID == missing.headers["x-amz-request-id"])
            let headMissing = try await server.exchange(Self.signer.request("HEAD", "/bkt/dir/obj.txt"), head: true)
            #expect(headMissing.status == 404)

            let noBucket = try await server.exchange(Self.signer.request("GET", "/nobucket/k"))
            #expect(noBucket.status == 404 && noBucket.error?.code == "NoSuchBucket")

            // CreateBucket, then use it; creating it again is harmless.
            #expect(try await server.exchange(Self.signer.request("PUT", "/fresh-bucket")).status == 200)
            #expect(try await server.exchange(Self.signer.request("PUT", "/fresh-bucket")).status == 200)
            #expect(try await server.exchange(Self.signer.request("HEAD", "/fresh-bucket"), head: true).status == 200)
            #expect(try await server.exchange(Self.signer.request("PUT", "/fresh-bucket/k", body: [9])).status == 200)
            #expect(try await server.exchange(Self.signer.request("GET", "/fresh-bucket/k")).body == [9])
            #expect(try await server.exchange(Self.signer.request("PUT", "/Bad_Name")).error?.code == "InvalidBucketName")
            // An empty object.
            #expect(try await server.exchange(Self.signer.request("PUT", "/bkt/empty", body: [])).status == 200)
            let empty = try await server.exchange(Self.signer.request("GET", "/bkt/empty"))
            #expect(empty.status == 200 && empty.body.isEmpty && empty.headers["etag"] == "\"d41d8cd98f00b204e9800998ecf8427e\"")
        }
    }

    @Test func keepAliveAndPipelining() async throws {
        try await BlobStoreTestServer.with("pipelining") { server in
            try await BlobStoreRawConnection.with(server.address) { connection in
                try await connection.send(Self.signer.request("PUT", "/bkt/a", body: [1]) + Self.signer.request("PUT", "/bkt/b", body: [2, 2]))
                #expect(try await connection.response().status == 200)
                #expect(try await connection.response().status == 200)
                try await connection.send(Self.signer.request("GET", "/bkt/a") + Self.signer.request("GET", "/bkt/b"))
                #expect(try await connection.response().body == [1])
                #expect(try await connection.response().body == [2, 2])
            }
        }
    }

    // MARK: Bad input

    @Test func garbageInsteadOfHTTP() async throws {
        try await BlobStoreTestServer.with("garbage") { server in
            let garbage: [[UInt8]] = [
                [0, 1, 2, 3, 0xFF, 0xFE, 13, 10, 13, 10],
                Array("HELLO THERE\r\n\r\n".utf8),
                Array("GET /bkt/k HTTP/9.9\r\nHost: x\r\n\r\n".utf8),
                Array("PUT /bkt/k HTTP/1.1\r\nContent-Length: -5\r\n\r\n".utf8),
                Array("PUT /bkt/k HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n".utf8),
                Array("PUT /bkt/k HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".utf8),
                Array(repeating: UInt8(ascii: "A"), count: 200_000),
            ]
            for (i, bytes) in garbage.enumerated() {
                try await BlobStoreRawConnection.with(server.address) { connection in
                    try await connection.send(bytes)
                    let answer = try await connection.untilClosed()
                    let text = String(decoding: answer.prefix(12), as: UTF8.self)
                    #expect(answer.isEmpty || text.hasPrefix("HTTP/1.1 4"), "garbage \(i): \(text)")
                }
                try await Self.stillServes(server, "after garbage \(i)")
            }
        }
    }

    @Test func hugeHeadersAreRefused() async throws {
        try await BlobStoreTestServer.with("huge-headers") { server in
            let big = String(repeating: "x", count: 200_000)
            try await BlobStoreRawConnection.with(server.address) { connection in
                try await connection.send("GET /bkt/k HTTP/1.1\r\nHost: x\r\nX-Big: \(big)\r\n\r\n")
                let answer = try await connection.untilClosed()
                #expect(answer.isEmpty || String(decoding: answer.prefix(12), as: UTF8.self).hasPrefix("HTTP/1.1 4"))
            }
            try await BlobStoreRawConnection.with(server.address) { connection in
                var headers = "GET /bkt/k HTTP/1.1\r\nHost: x\r\n"
                for i in 0..<20_000 { headers += "X-H\(i): v\r\n" }
                try await connection.send(headers + "\r\n")
                let answer = try await connection.untilClosed()
                #expect(answer.isEmpty || String(decoding: answer.prefix(12), as: UTF8.self).hasPrefix("HTTP/1.1 4"))
            }
            try await Self.stillServes(server)
        }
    }

    @Test func truncatedRequestsStoreNothing() async throws {
        try await BlobStoreTestServer.with("truncated") { server in
            // A body cut short: the client gives up after 10 of 100 bytes.
            let full = Self.signer.request("PUT", "/bkt/cut", body: Array(repeating: 7, count: 100))
            try await BlobStoreRawConnection.with(server.address) { connection in
                try await connection.send(Array(full.dropLast(90)))
                connection.finishSending()
                _ = try await connection.untilClosed()
            }
            // A head cut short.
            try await BlobStoreRawConnection.with(server.address) { connection in
                try await connection.send("PUT /bkt/cut HTTP/1.1\r\nHost: x\r\nContent-Le")
                connection.finishSending()
                _ = try await connection.untilClosed()
            }
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/cut")).status == 404)
            try await Self.stillServes(server)
        }
    }

    @Test func slowClientsDoNotBlockOthers() async throws {
        try await BlobStoreTestServer.with("slow") { server in
            try await BlobStoreRawConnection.with(server.address) { slow in
                // Half a head, then half a body, left hanging while others are served.
                try await slow.send("PUT /bkt/slow HTTP/1.1\r\nHost: x\r\n")
                try await Self.stillServes(server, "while a head is pending")
                let put = Self.signer.request("PUT", "/bkt/slow", body: Array(repeating: 1, count: 1000))
                try await BlobStoreRawConnection.with(server.address) { slower in
                    try await slower.send(Array(put.dropLast(500)))
                    try await Self.stillServes(server, "while a body is pending")
                    try await slower.send(Array(put.suffix(500)))
                    #expect(try await slower.response().status == 200)
                }
            }
        }
    }

    @Test func idleConnectionsAreClosed() async throws {
        try await BlobStoreTestServer.with("idle", configure: { $0.idleTimeout = .seconds(1) }) { server in
            // Silence from the start, and silence in the middle of a head: the server hangs up.
            try await BlobStoreRawConnection.with(server.address) { connection in
                let rest = try await connection.untilClosed()
                #expect(rest.isEmpty)
            }
            try await BlobStoreRawConnection.with(server.address) { connection in
                do {
                    try await connection.send("GET /bkt/k HTTP/1.1\r\nHost: x\r\n")
                } catch {
                    // On a machine busy with the rest of the suite the idle timer can win
                    // the race with this send: the server has hung up already, as wanted.
                    return
                }
                let rest = try await connection.untilClosed()
                #expect(rest.isEmpty || String(decoding: rest.prefix(12), as: UTF8.self).hasPrefix("HTTP/1.1 4"))
            }
        }
    }

    // MARK: Authentication

    @Test func signaturesAreChecked() async throws {
        let clock = Date()
        try await BlobStoreTestServer.with("auth", now: { clock }) { server in
            try await BlobStoreRawConnection.with(server.address) { connection in
                var wrongSecret = Self.signer
                wrongSecret.date = { clock }
                wrongSecret.credentials = S3Credentials(accessKeyID: BlobStoreTestKeys.credentials.accessKeyID, secretAccessKey: "wrong")
                var unknownKey = wrongSecret
                unknownKey.credentials = S3Credentials(accessKeyID: "AKIDNOBODY", secretAccessKey: "x")
                var skewed = Self.signer
                skewed.date = { clock.addingTimeInterval(-3600) }
                var otherRegion = Self.signer
                otherRegion.date = { clock }
                otherRegion.region = "eu-west-1"
                var anonymous = Self.signer
                anonymous.credentials = nil
                var good = Self.signer
                good.date = { clock }

                let cases: [([UInt8], Int, String)] = [
                    (wrongSecret.request("GET", "/bkt/k"), 403, "SignatureDoesNotMatch"),
                    (wrongSecret.request("PUT", "/bkt/k", body: [1, 2]), 403, "SignatureDoesNotMatch"),
                    (unknownKey.request("GET", "/bkt/k"), 403, "InvalidAccessKeyId"),
                    (skewed.request("GET", "/bkt/k"), 403, "RequestTimeTooSkewed"),
                    (otherRegion.request("GET", "/bkt/k"), 400, "AuthorizationHeaderMalformed"),
                    (anonymous.request("GET", "/bkt/k"), 403, "AccessDenied"),
                    (Array("GET /bkt/k HTTP/1.1\r\nHost: x\r\nAuthorization: AWS4-HMAC-SHA256 nonsense\r\n\r\n".utf8), 400, "AuthorizationHeaderMalformed"),
                    (Array("GET /bkt/k HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dXNlcjpwYXNz\r\n\r\n".utf8), 403, "AccessDenied"),
                ]
                for (request, status, code) in cases {
                    try await connection.send(request)
                    let response = try await connection.response()
                    #expect(response.status == status && response.error?.code == code, "\(code): got \(response.status) \(response.text)")
                    #expect(response.error?.requestID == response.headers["x-amz-request-id"])
                    // The same connection serves a good request next.
                    try await connection.send(good.request("GET", "/bkt/k"))
                    #expect(try await connection.response().status == 404)
                }
                // A signed request whose path was changed after signing.
                var tampered = good.request("GET", "/bkt/k")
                let original = Array("/bkt/k".utf8)
                if let at = tampered.firstRange(of: original) { tampered.replaceSubrange(at, with: Array("/bkt/j".utf8)) }
                try await connection.send(tampered)
                #expect(try await connection.response().error?.code == "SignatureDoesNotMatch")
            }
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/k")).status == 404)
        }
    }

    @Test func anonymousAccessWhenAllowed() async throws {
        try await BlobStoreTestServer.with("anonymous", configure: { $0.allowAnonymous = true }) { server in
            var anonymous = Self.signer
            anonymous.credentials = nil
            #expect(try await server.exchange(anonymous.request("PUT", "/bkt/k", body: [4])).status == 200)
            #expect(try await server.exchange(anonymous.request("GET", "/bkt/k")).body == [4])
            var wrong = Self.signer
            wrong.credentials = S3Credentials(accessKeyID: BlobStoreTestKeys.credentials.accessKeyID, secretAccessKey: "nope")
            let refused = try await server.exchange(wrong.request("GET", "/bkt/k"))
            #expect(refused.error?.code == "SignatureDoesNotMatch")
        }
    }

    // MARK: Keys

    @Test func pathTraversalStaysInsideTheBucket() async throws {
        try await BlobStoreTestServer.with("traversal") { server in
            let targets: [(String, String)] = [
                ("/bkt/../../etc/passwd", "../../etc/passwd"),
                ("/bkt/%2e%2e/x", "../x"),
                ("/bkt/..%2F..%2F..%2Fescape", "../../../escape"),
                ("/bkt//abs", "/abs"),
                ("/bkt/a/../../b", "a/../../b"),
                ("/bkt/%00nul", "\u{0}nul"),
                ("/bkt/.", "."),
                ("/bkt/..", ".."),
                ("/bkt/.tmp-0123", ".tmp-0123"),
                ("/bkt/%2F%2F%2F", "///"),
            ]
            for (i, (target, key)) in targets.enumerated() {
                let put = try await server.exchange(Self.signer.request("PUT", target, body: [UInt8(i)]))
                #expect(put.status == 200, "\(target): \(put.text)")
                let get = try await server.exchange(Self.signer.request("GET", target))
                #expect(get.body == [UInt8(i)], "\(target)")
                _ = key
            }
            // Every file is inside the bucket's directory.
            let files = server.directory.files()
            #expect(files.count == targets.count)
            for file in files { #expect(file.hasPrefix("data/buckets/bkt/"), "\(file) escaped the bucket") }
            // And the listing has exactly the keys.
            let list = try await server.exchange(Self.signer.request("GET", "/bkt?list-type=2&encoding-type=url"))
            let result = try S3XML.parseListBucketResult(list.body)
            #expect(result.contents.map(\.key) == targets.map(\.1).sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })

            // Malformed keys are refused.
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/%zz")).error?.code == "InvalidArgument")
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/%C3%28")).error?.code == "InvalidArgument")
            let long = String(repeating: "k", count: 1025)
            #expect(try await server.exchange(Self.signer.request("PUT", "/bkt/" + long, body: [1])).error?.code == "KeyTooLongError")
            try await Self.stillServes(server)
        }
    }

    // MARK: Operations refused

    @Test func unknownOperationsAndMethods() async throws {
        try await BlobStoreTestServer.with("unknown-ops") { server in
            for target in ["/bkt/k?acl", "/bkt?versioning", "/bkt", "/"] {
                let response = try await server.exchange(Self.signer.request("GET", target))
                #expect(response.status == 501 && response.error?.code == "NotImplemented", "\(target)")
            }
            let post = try await server.exchange(Self.signer.request("POST", "/bkt/k", body: [1]))
            #expect(post.status == 405 && post.error?.code == "MethodNotAllowed")
            let multipart = try await server.exchange(Self.signer.request("POST", "/bkt/k?uploads"))
            #expect(multipart.status == 501)
            let options = try await server.exchange(Self.signer.request("OPTIONS", "/bkt/k"))
            #expect(options.status == 405)
            try await Self.stillServes(server)
        }
    }

    // MARK: Integrity

    @Test func digestsAreVerified() async throws {
        try await BlobStoreTestServer.with("digests") { server in
            let body = Array("hello".utf8)
            let badMD5 = try await server.exchange(
                Self.signer.request("PUT", "/bkt/md5", headers: [("Content-MD5", "XUFAKrxLKna5cZ2REBfFkw==")], body: body))
            #expect(badMD5.status == 400 && badMD5.error?.code == "BadDigest")
            let invalidMD5 = try await server.exchange(Self.signer.request("PUT", "/bkt/md5", headers: [("Content-MD5", "abc")], body: body))
            #expect(invalidMD5.status == 400 && invalidMD5.error?.code == "InvalidDigest")
            let goodMD5 = try await server.exchange(
                Self.signer.request("PUT", "/bkt/md5", headers: [("Content-MD5", "XUFAKrxLKna5cZ2REBfFkg==")], body: body))
            #expect(goodMD5.status == 200)

            // The body differs from the hash that was signed.
            let badSHA = try await server.exchange(
                Self.signer.request("PUT", "/bkt/sha", body: body, payloadHash: SigV4.sha256Hex(Array("other".utf8))))
            #expect(badSHA.status == 400 && badSHA.error?.code == "XAmzContentSHA256Mismatch")
            let unsigned = try await server.exchange(Self.signer.request("PUT", "/bkt/sha", body: body, payloadHash: "UNSIGNED-PAYLOAD"))
            #expect(unsigned.status == 200)

            let badCRC = try await server.exchange(
                Self.signer.request("PUT", "/bkt/crc", headers: [("x-amz-checksum-crc32", "AAAAAA==")], body: body))
            #expect(badCRC.status == 400 && badCRC.error?.code == "BadDigest")
            // Nothing refused was stored.
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/sha")).body == body)
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/crc")).status == 404)
            try await Self.stillServes(server)
        }
    }

    @Test func crc32cChecksumHeadersAreVerified() async throws {
        try await BlobStoreTestServer.with("crc32c") { server in
            // Larger than a batch of the background MD5, and not a multiple of anything.
            let body = (0..<(BlobStoreBackgroundMD5.batchBytes * 5 / 2 + 3)).map { UInt8(truncatingIfNeeded: $0 &* 17 &+ $0 >> 9) }
            let crc = BlobStoreChecksum.base64(.crc32c, of: body)
            func put(_ key: String, _ bytes: [UInt8], crc: String) async throws -> BlobStoreRawResponse {
                try await server.exchange(
                    Self.signer.request("PUT", "/bkt/" + key, headers: [("x-amz-checksum-crc32c", crc)], body: bytes, payloadHash: "UNSIGNED-PAYLOAD"))
            }
            let good = try await put("good", body, crc: crc)
            #expect(good.status == 200, "\(good.text)")
            #expect(good.headers["etag"] == "\"\(Self.md5Hex(body))\"", "the ETag is the MD5, computed beside the receive")
            let got = try await server.exchange(Self.signer.request("GET", "/bkt/good"))
            #expect(got.body == body && got.headers["etag"] == good.headers["etag"])

            // One byte changed on the way, the checksum of the original: refused.
            var damaged = body
            damaged[body.count / 2] ^= 0x01
            let refused = try await put("damaged", damaged, crc: crc)
            #expect(refused.status == 400 && refused.error?.code == "BadDigest")
            #expect(refused.error?.message.contains("CRC32C") == true)
            #expect(try await put("wrong", [1, 2, 3], crc: "AAAAAA==").error?.code == "BadDigest")
            #expect(try await put("malformed", [1, 2, 3], crc: "AAAA").error?.code == "InvalidRequest")
            #expect(try await put("empty", [], crc: "AAAAAA==").status == 200, "the CRC32C of nothing is 0")
            // Nothing refused was stored.
            for key in ["damaged", "wrong", "malformed"] {
                #expect(try await server.exchange(Self.signer.request("GET", "/bkt/" + key)).status == 404, "\(key)")
            }
            try await Self.stillServes(server)
        }
    }

    @Test func largeObjectsAreServedInPiecesWithTheirRanges() async throws {
        try await BlobStoreTestServer.with("large") { server in
            let piece = BlobStoreService.writeChunk
            let data = (0..<(2 * piece + 12_345)).map { UInt8(truncatingIfNeeded: $0 ^ ($0 >> 8) ^ ($0 >> 16)) }
            let put = try await server.exchange(Self.signer.request("PUT", "/bkt/large", body: data))
            #expect(put.status == 200 && put.headers["etag"] == "\"\(Self.md5Hex(data))\"")
            let whole = try await server.exchange(Self.signer.request("GET", "/bkt/large"))
            #expect(whole.status == 200 && whole.body == data && whole.headers["content-length"] == String(data.count))
            let ranges: [ClosedRange<Int>] = [
                (piece - 10)...(piece + 10), 0...(piece - 1), piece...(2 * piece), (2 * piece + 1)...(data.count - 1), 5...(data.count - 1),
            ]
            for range in ranges {
                let response = try await server.exchange(
                    Self.signer.request("GET", "/bkt/large", headers: [("Range", "bytes=\(range.lowerBound)-\(range.upperBound)")]))
                #expect(response.status == 206, "\(range)")
                #expect(response.body == Array(data[range]), "\(range)")
                #expect(response.headers["etag"] == put.headers["etag"], "\(range)")
            }
        }
    }

    @Test func etagsOfFilesTheServerDidNotWrite() async throws {
        try await BlobStoreTestServer.with("etags") { server in
            // Objects written behind the server's back (as by an earlier run of it): the
            // ETag is computed from the file, and a replaced file gets its own.
            let bucket = try FileBlob(root: server.directory.path + "/data/buckets/bkt")
            let first = (0..<(BlobStoreObjectFile.pieceBytes + 99)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
            try await bucket.set("outside", first)
            let head = try await server.exchange(Self.signer.request("HEAD", "/bkt/outside"), head: true)
            #expect(head.status == 200 && head.headers["etag"] == "\"\(Self.md5Hex(first))\"")
            let get = try await server.exchange(Self.signer.request("GET", "/bkt/outside"))
            #expect(get.body == first && get.headers["etag"] == head.headers["etag"])

            let put = try await server.exchange(Self.signer.request("PUT", "/bkt/outside", body: [1, 2, 3]))
            #expect(put.headers["etag"] == "\"\(Self.md5Hex([1, 2, 3]))\"")
            let second = Array("written again, elsewhere".utf8)
            try await bucket.set("outside", second)
            let again = try await server.exchange(Self.signer.request("GET", "/bkt/outside"))
            #expect(again.body == second && again.headers["etag"] == "\"\(Self.md5Hex(second))\"", "a cached ETag is for one file only")
            let headAgain = try await server.exchange(Self.signer.request("HEAD", "/bkt/outside"), head: true)
            #expect(headAgain.headers["etag"] == again.headers["etag"])
        }
    }

    @Test(arguments: [S3Blob.PayloadIntegrity.crc32c, .sha256AndMD5])
    func s3BlobAgainstTheServer(_ integrity: S3Blob.PayloadIntegrity) async throws {
        try await BlobStoreTestServer.with("s3blob") { server in
            guard case .tcp(let host, let port) = server.address else { throw ConformanceFailure("not TCP: \(server.address)") }
            var configuration = S3Blob.Configuration(
                endpoint: .tcp(host: host, port: port), bucket: "bkt", credentials: BlobStoreTestKeys.credentials, maxConnections: 2)
            configuration.payloadIntegrity = integrity
            let blob = S3Blob(configuration)
            try await withCleanup {
                for size in [0, 1, 1000, 3 * BlobStoreService.writeChunk + 5] {
                    let value = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ size) }
                    try await blob.set("k\(size)", value)
                    #expect(try await blob.get("k\(size)") == value, "\(size) bytes")
                    #expect(try await blob.delete("k\(size)") == size)
                }
                #expect(try await blob.get("k0") == nil)
            } cleanup: {
                await blob.shutdown()
            }
        }
    }

    @Test func awsChunkedUploads() async throws {
        try await BlobStoreTestServer.with("chunked") { server in
            let data = (0..<20_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
            let crc = BlobStoreChecksum.base64(.crc32, of: data)
            for (marker, signed) in [("STREAMING-UNSIGNED-PAYLOAD-TRAILER", false), ("STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER", true)] {
                let body = BlobStoreLogicTests.chunked(data, chunk: 8192, trailer: "x-amz-checksum-crc32:" + crc, signed: signed)
                let headers = [
                    ("Content-Encoding", "aws-chunked"), ("x-amz-decoded-content-length", String(data.count)),
                    ("x-amz-trailer", "x-amz-checksum-crc32"),
                ]
                let put = try await server.exchange(Self.signer.request("PUT", "/bkt/chunked", headers: headers, body: body, payloadHash: marker))
                #expect(put.status == 200, "\(marker): \(put.text)")
                #expect(try await server.exchange(Self.signer.request("GET", "/bkt/chunked")).body == data)

                let wrong = BlobStoreLogicTests.chunked(data, chunk: 8192, trailer: "x-amz-checksum-crc32:AAAAAA==", signed: signed)
                let refused = try await server.exchange(Self.signer.request("PUT", "/bkt/other", headers: headers, body: wrong, payloadHash: marker))
                #expect(refused.status == 400 && refused.error?.code == "BadDigest")
            }
            // Framing errors close the connection after an answer.
            let broken = Array("zz\r\n".utf8) + Array(repeating: 0, count: 100)
            let headers = [("x-amz-decoded-content-length", "100")]
            let response = try await server.exchange(
                Self.signer.request("PUT", "/bkt/broken", headers: headers, body: broken, payloadHash: "STREAMING-UNSIGNED-PAYLOAD-TRAILER"))
            #expect(response.status == 400 && response.error?.code == "InvalidRequest")
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/other")).status == 404)
            try await Self.stillServes(server)
        }
    }

    @Test func oversizedObjectsAreRefused() async throws {
        try await BlobStoreTestServer.with("too-large", configure: { $0.maxObjectSize = 1000 }) { server in
            #expect(try await server.exchange(Self.signer.request("PUT", "/bkt/fits", body: Array(repeating: 1, count: 1000))).status == 200)
            // Declared too large: refused from the head alone, without reading the body.
            try await BlobStoreRawConnection.with(server.address) { connection in
                try await connection.send(
                    Self.signer.request("PUT", "/bkt/big", body: [], payloadHash: "UNSIGNED-PAYLOAD", length: 50_000_000))
                let response = try await connection.response()
                #expect(response.status == 400 && response.error?.code == "EntityTooLarge")
                #expect(response.headers["connection"] == "close")
            }
            // Undeclared (chunked transfer encoding): refused once too many bytes arrived.
            try await BlobStoreRawConnection.with(server.address) { connection in
                try await connection.send(
                    Self.signer.request(
                        "PUT", "/bkt/big", headers: [("Transfer-Encoding", "chunked")], body: [], payloadHash: "UNSIGNED-PAYLOAD", omitLength: true))
                try await connection.send("7d0\r\n" + String(repeating: "x", count: 2000) + "\r\n")
                let response = try await connection.response()
                #expect(response.status == 400 && response.error?.code == "EntityTooLarge")
            }
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/big")).status == 404)
            try await Self.stillServes(server)
        }
    }

    @Test func expectContinue() async throws {
        try await BlobStoreTestServer.with("continue") { server in
            let body = Array(repeating: UInt8(5), count: 3000)
            let request = Self.signer.request("PUT", "/bkt/cont", headers: [("Expect", "100-continue")], body: body)
            try await BlobStoreRawConnection.with(server.address) { connection in
                #expect(try await connection.sendHead(of: request, bodyCount: body.count).status == 100)
                try await connection.send(body)
                #expect(try await connection.response().status == 200)
            }
            // Refused before the body: the client never sends it, and the server closes.
            var wrong = Self.signer
            wrong.credentials = S3Credentials(accessKeyID: "AKIDNOBODY", secretAccessKey: "x")
            let refused = wrong.request("PUT", "/bkt/cont2", headers: [("Expect", "100-continue")], body: body)
            try await BlobStoreRawConnection.with(server.address) { connection in
                let response = try await connection.sendHead(of: refused, bodyCount: body.count)
                #expect(response.status == 403 && response.headers["connection"] == "close")
            }
            #expect(try await server.exchange(Self.signer.request("GET", "/bkt/cont")).body == body)
        }
    }

    // MARK: Ranges and listings

    @Test func rangeRequests() async throws {
        try await BlobStoreTestServer.with("ranges") { server in
            let data = (0..<100).map { UInt8($0) }
            #expect(try await server.exchange(Self.signer.request("PUT", "/bkt/r", body: data)).status == 200)
            let cases: [(String, Int, ClosedRange<Int>?)] = [
                ("bytes=0-9", 206, 0...9), ("bytes=-10", 206, 90...99), ("bytes=90-", 206, 90...99), ("bytes=50-500", 206, 50...99),
                ("bytes=0-0", 206, 0...0), ("bytes=-500", 206, 0...99), ("bytes=5-1", 200, nil), ("items=0-1", 200, nil),
            ]
            for (range, status, expected) in cases {
                let response = try await server.exchange(Self.signer.request("GET", "/bkt/r", headers: [("Range", range)]))
                #expect(response.status == status, "\(range)")
                if let expected {
                    #expect(response.body == Array(data[expected]), "\(range)")
                    #expect(response.headers["content-range"] == "bytes \(expected.lowerBound)-\(expected.upperBound)/100", "\(range)")
                } else {
                    #expect(response.body == data, "\(range)")
                }
            }
            for range in ["bytes=100-", "bytes=1000-2000"] {
                let response = try await server.exchange(Self.signer.request("GET", "/bkt/r", headers: [("Range", range)]))
                #expect(response.status == 416 && response.error?.code == "InvalidRange", "\(range)")
                #expect(response.headers["content-range"] == "bytes */100")
            }
            let head = try await server.exchange(Self.signer.request("HEAD", "/bkt/r", headers: [("Range", "bytes=0-9")]), head: true)
            #expect(head.status == 206 && head.headers["content-length"] == "10")
        }
    }

    @Test func listObjectsV2Pagination() async throws {
        try await BlobStoreTestServer.with("listing") { server in
            let keys = (0..<25).map { String(format: "p/%02d", $0) } + ["q/1", "weird key+&<>\u{1}"]
            for key in keys {
                let target = "/bkt/" + SigV4.uriEncode(key, encodeSlash: false)
                #expect(try await server.exchange(Self.signer.request("PUT", target, body: Array(key.utf8))).status == 200)
            }
            var token: String?
            var seen: [String] = []
            var pages = 0
            repeat {
                var target = "/bkt?list-type=2&prefix=p%2F&max-keys=10"
                if let token { target += "&continuation-token=" + SigV4.uriEncode(token, encodeSlash: true) }
                let response = try await server.exchange(Self.signer.request("GET", target))
                #expect(response.status == 200)
                let result = try S3XML.parseListBucketResult(response.body)
                #expect(result.keyCount == result.contents.count && result.maxKeys == 10 && result.prefix == "p/")
                #expect(result.contents.allSatisfy { $0.size == $0.key.utf8.count && $0.lastModified != nil })
                seen += result.contents.map(\.key)
                token = result.isTruncated ? result.nextContinuationToken : nil
                #expect(!result.isTruncated || token != nil)
                pages += 1
            } while token != nil && pages < 10
            #expect(pages == 3)
            #expect(seen == Array(keys.prefix(25)))

            let after = try await server.exchange(Self.signer.request("GET", "/bkt?list-type=2&start-after=p%2F23"))
            #expect(try S3XML.parseListBucketResult(after.body).contents.map(\.key) == ["p/24", "q/1", "weird key+&<>\u{1}"])
            let encoded = try await server.exchange(Self.signer.request("GET", "/bkt?list-type=2&prefix=w&encoding-type=url"))
            #expect(encoded.text.contains("<Key>weird%20key%2B%26%3C%3E%01</Key>"))
            #expect(try S3XML.parseListBucketResult(encoded.body).contents.map(\.key) == ["weird key+&<>\u{1}"])
            let badToken = try await server.exchange(Self.signer.request("GET", "/bkt?list-type=2&continuation-token=%2A%2A"))
            #expect(badToken.status == 400 && badToken.error?.code == "InvalidArgument")
        }
    }

    @Test func listObjectsV2WithADelimiter() async throws {
        try await BlobStoreTestServer.with("delimiter") { server in
            let keys = ["a/1", "a/2", "b/x/1", "b/y", "c", "d e/&/1", "d e/2", "top", "x::1", "x::2", "x:y"]
            for key in keys {
                let target = "/bkt/" + SigV4.uriEncode(key, encodeSlash: false)
                #expect(try await server.exchange(Self.signer.request("PUT", target, body: [1])).status == 200)
            }
            func list(_ query: String) async throws -> (text: String, result: S3ListBucketResult) {
                let response = try await server.exchange(Self.signer.request("GET", "/bkt?list-type=2&" + query))
                #expect(response.status == 200, "\(query): \(response.text)")
                return (response.text, try S3XML.parseListBucketResult(response.body))
            }

            let top = try await list("delimiter=%2F")
            #expect(top.text.contains("<MaxKeys>1000</MaxKeys><Delimiter>/</Delimiter><IsTruncated>false</IsTruncated>"))
            #expect(top.text.contains("<CommonPrefixes><Prefix>a/</Prefix></CommonPrefixes>"))
            #expect(top.result.delimiter == "/")
            #expect(top.result.commonPrefixes == ["a/", "b/", "d e/"])
            #expect(top.result.contents.map(\.key) == ["c", "top", "x::1", "x::2", "x:y"])
            #expect(top.result.keyCount == 8)

            // Below a prefix, the delimiter is looked for only after it.
            let inB = try await list("prefix=b%2F&delimiter=%2F")
            #expect(inB.result.prefix == "b/" && inB.result.commonPrefixes == ["b/x/"] && inB.result.contents.map(\.key) == ["b/y"])
            // A delimiter of several characters.
            let colons = try await list("prefix=x&delimiter=%3A%3A")
            #expect(colons.result.delimiter == "::" && colons.result.commonPrefixes == ["x::"] && colons.result.contents.map(\.key) == ["x:y"])

            // encoding-type=url encodes the common prefixes and the delimiter too.
            let encoded = try await list("prefix=d%20e%2F&delimiter=%26&encoding-type=url")
            #expect(encoded.text.contains("<Delimiter>%26</Delimiter>"), "\(encoded.text)")
            #expect(encoded.text.contains("<CommonPrefixes><Prefix>d%20e/%26</Prefix></CommonPrefixes>"), "\(encoded.text)")
            #expect(encoded.result.delimiter == "&" && encoded.result.commonPrefixes == ["d e/&"])
            #expect(encoded.result.contents.map(\.key) == ["d e/2"])

            // Pages of one entry: a common prefix takes a place on a page, and the next
            // page resumes after it (not inside it).
            var entries: [String] = []
            var token: String?
            var pages = 0
            repeat {
                var query = "delimiter=%2F&max-keys=1"
                if let token { query += "&continuation-token=" + SigV4.uriEncode(token, encodeSlash: true) }
                let page = try await list(query).result
                #expect(page.keyCount == 1)
                entries += page.commonPrefixes + page.contents.map(\.key)
                token = page.isTruncated ? page.nextContinuationToken : nil
                pages += 1
            } while token != nil && pages < 20
            #expect(entries == ["a/", "b/", "c", "d e/", "top", "x::1", "x::2", "x:y"])
        }
    }

    // MARK: Shutdown

    @Test func gracefulShutdownFinishesRequestsInFlight() async throws {
        try await BlobStoreTestServer.with("drain") { server in
            let body = Array(repeating: UInt8(3), count: 10_000)
            let request = Self.signer.request("PUT", "/bkt/inflight", headers: [("Expect", "100-continue")], body: body)
            try await BlobStoreRawConnection.with(server.address) { connection in
                // The 100 Continue proves the server is inside this request.
                #expect(try await connection.sendHead(of: request, bodyCount: body.count).status == 100)
                try await BlobStoreRawConnection.with(server.address) { idle in
                    await server.group.triggerGracefulShutdown()
                    // Idle connections (and ones arriving now) are closed.
                    let rest = try await idle.untilClosed()
                    #expect(rest.isEmpty)
                }
                try await connection.send(body)
                let response = try await connection.response()
                #expect(response.status == 200)
                #expect(try await connection.untilClosed().isEmpty, "closed after the last response")
            }
            let stored = try #require(FileManager.default.contents(atPath: server.directory.path + "/data/buckets/bkt/@inflight"))
            #expect(Array(stored) == body)
        }
    }
}
