import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import PersistConformance
import PersistCore
import PersistLocation
import Synchronization
import Testing

@testable import PersistS3
@testable import PersistServices

// MARK: An S3 inside the test

/// A tiny S3 server for exercising `S3Blob`: it checks every request's SigV4 signature,
/// payload hash and Content-MD5 with the module's own verification, serves objects from
/// a dictionary keyed by the key's bytes, and can be told to misbehave.
final class FakeS3: Sendable {
    enum Behaviour: Sendable, Equatable {
        case normal
        /// Every request is answered with this status and S3 error code.
        case fail(status: Int, code: String)
        /// Requests are read and never answered.
        case neverAnswer
        /// The connection is closed after every answer, without saying so beforehand.
        case closeAfterEachAnswer
        /// The first byte of every PutObject body is changed on arrival, before any check:
        /// damage in transit.
        case damageBodies
        /// PutObject is refused with 400 `EntityTooLarge` as soon as its head arrives; the
        /// body that follows is read and dropped.
        case refuseBeforeBody
    }

    struct State {
        var objects: [[UInt8]: [UInt8]] = [:]
        var behaviour = Behaviour.normal
        /// `METHOD target` of every request received.
        var requests: [String] = []
        /// The headers of the last PutObject, names lower-cased.
        var lastPutHeaders: [String: String] = [:]
        var connectionsAccepted = 0
        var children: [any Channel] = []
    }

    static let bucket = "bucket"
    static let credentials = S3Credentials(accessKeyID: "test-key", secretAccessKey: "test-secret")

    let state = Mutex(State())
    private let server = Mutex<(any Channel)?>(nil)
    private let socketPath: String?

    private init(socketPath: String?) { self.socketPath = socketPath }

    /// A server on 127.0.0.1 (an ephemeral port) or on a fresh Unix socket.
    static func start(unixSocket: Bool = false) async throws -> FakeS3 {
        let path = unixSocket ? "/tmp/s3blob-test-\(UUID().uuidString.prefix(8)).sock" : nil
        let fake = FakeS3(socketPath: path)
        let bootstrap = ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(FakeS3Handler(fake))
                }
            }
        let channel: any Channel
        if let path {
            channel = try await bootstrap.bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).get()
        } else {
            channel = try await bootstrap.bind(host: "127.0.0.1", port: 0).get()
        }
        fake.server.withLock { $0 = channel }
        return fake
    }

    var endpoint: S3Blob.Endpoint {
        if let socketPath { return .unix(path: socketPath) }
        let port = server.withLock { $0?.localAddress?.port } ?? 0
        return .tcp(host: "127.0.0.1", port: port)
    }

    func stop() async {
        let (channel, children) = (server.withLock { $0 }, state.withLock { $0.children })
        try? await channel?.close()
        for child in children { try? await child.close() }
        if let socketPath { unlink(socketPath) }
    }

    var behaviour: Behaviour {
        get { state.withLock { $0.behaviour } }
        set { state.withLock { $0.behaviour = newValue } }
    }

    var requests: [String] { state.withLock { $0.requests } }

    func object(_ key: String) -> [UInt8]? { state.withLock { $0.objects[Array(key.utf8)] } }

    struct Answer {
        var status: Int
        var headers: [(String, String)] = []
        var body: [UInt8] = []
        /// For HEAD: the length announced without a body.
        var contentLength: Int?
        var close = false
    }

    /// The answer to one request, or nil to leave it unanswered.
    func respond(_ head: HTTPRequestHead, _ body: [UInt8]) -> Answer? {
        let behaviour = state.withLock { s -> Behaviour in
            s.requests.append("\(head.method.rawValue) \(head.uri)")
            return s.behaviour
        }
        var answer: Answer
        switch behaviour {
        case .neverAnswer: return nil
        case .fail(let status, let code): answer = Self.error(status, code, "injected failure")
        case .normal, .closeAfterEachAnswer, .refuseBeforeBody: answer = serve(head, body)
        case .damageBodies:
            var damaged = body
            if head.method == .PUT, !damaged.isEmpty { damaged[0] ^= 0xFF }
            answer = serve(head, damaged)
        }
        answer.close = behaviour == .closeAfterEachAnswer
        return answer
    }

    static func error(_ status: Int, _ code: String, _ message: String, key: String? = nil) -> Answer {
        Answer(
            status: status, headers: [("Content-Type", "application/xml")],
            body: S3XML.render(S3ErrorDocument(code: code, message: message, key: key, requestID: "fake")))
    }

    private func serve(_ head: HTTPRequestHead, _ body: [UInt8]) -> Answer {
        let request = SigV4Request(method: head.method.rawValue, target: head.uri, headers: head.headers.map { (name: $0.name, value: $0.value) })
        do {
            try SigV4.authenticate(request: request, secretFor: { $0 == Self.credentials.accessKeyID ? Self.credentials.secretAccessKey : nil }, now: Date())
            try SigV4.checkPayload(body, declaredHash: request.header("x-amz-content-sha256") ?? "")
        } catch {
            return Self.error(error.httpStatus, error.code, error.message)
        }
        if head.method == .PUT {
            state.withLock { $0.lastPutHeaders = Dictionary(head.headers.map { ($0.name.lowercased(), $0.value) }, uniquingKeysWith: { $1 }) }
        }
        if let md5 = request.header("Content-MD5"), md5 != SigV4.contentMD5(body) {
            return Self.error(400, "BadDigest", "The Content-MD5 you specified did not match what we received.")
        }
        // With the blob-store's own checksum code (the bit-by-bit reference below is far too
        // slow for the event loop in a debug build).
        if let crc = request.header("x-amz-checksum-crc32c"), crc != BlobStoreChecksum.base64(.crc32c, of: body) {
            return Self.error(400, "BadDigest", "The CRC32C you specified did not match the calculated checksum.")
        }
        // Path style (`/bucket/key`) unless the Host names the bucket (`bucket.host/key`).
        let virtualHost = request.header("Host")?.hasPrefix(Self.bucket + ".") ?? false
        let bucketPath = virtualHost ? "" : "/" + Self.bucket
        let query = Self.queryItems(request.query)
        if (request.path == bucketPath || request.path == "/" && virtualHost) && query["list-type"] == "2" {
            return list(query)
        }
        guard request.path.hasPrefix(bucketPath + "/") else { return Self.error(404, "NoSuchBucket", "The specified bucket does not exist") }
        let key = SigV4.percentDecode(request.path.dropFirst(bucketPath.count + 1))
        let keyText = String(decoding: key, as: UTF8.self)
        switch head.method {
        case .GET:
            guard let value = state.withLock({ $0.objects[key] }) else { return Self.error(404, "NoSuchKey", "The specified key does not exist.", key: keyText) }
            return Answer(status: 200, headers: [("ETag", "\"x\"")], body: value)
        case .HEAD:
            guard let value = state.withLock({ $0.objects[key] }) else { return Answer(status: 404) }
            return Answer(status: 200, contentLength: value.count)
        case .PUT:
            state.withLock { $0.objects[key] = body }
            return Answer(status: 200, headers: [("ETag", "\"x\"")])
        case .DELETE:
            state.withLock { $0.objects[key] = nil }
            return Answer(status: 204)
        default:
            return Self.error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
        }
    }

    /// ListObjectsV2 with `max-keys` pages; a continuation token is the hex of the last key
    /// returned.
    private func list(_ query: [String: String]) -> Answer {
        let prefix = Array((query["prefix"] ?? "").utf8)
        let maxKeys = query["max-keys"].flatMap(Int.init) ?? 1000
        var after: [UInt8]?
        if let token = query["continuation-token"] {
            guard let bytes = Self.unhex(token) else { return Self.error(400, "InvalidArgument", "bad token") }
            after = bytes
        }
        let all = state.withLock { $0.objects }
            .filter { entry in entry.key.starts(with: prefix) && (after.map { $0.lexicographicallyPrecedes(entry.key) } ?? true) }
            .sorted { $0.key.lexicographicallyPrecedes($1.key) }
        let page = all.prefix(maxKeys)
        let truncated = all.count > page.count
        let result = S3ListBucketResult(
            name: Self.bucket, prefix: String(decoding: prefix, as: UTF8.self), maxKeys: maxKeys, isTruncated: truncated,
            continuationToken: query["continuation-token"], nextContinuationToken: truncated ? page.last.map { SigV4.hex($0.key) } : nil,
            encodingTypeURL: query["encoding-type"] == "url",
            contents: page.map { S3ListedObject(key: String(decoding: $0.key, as: UTF8.self), size: $0.value.count, lastModified: Date(), etag: "\"x\"") })
        return Answer(status: 200, headers: [("Content-Type", "application/xml")], body: S3XML.render(result))
    }

    static func queryItems(_ query: String?) -> [String: String] {
        var items: [String: String] = [:]
        for pair in (query ?? "").split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = String(decoding: SigV4.percentDecode(parts[0]), as: UTF8.self)
            items[name] = parts.count > 1 ? String(decoding: SigV4.percentDecode(parts[1]), as: UTF8.self) : ""
        }
        return items
    }

    /// CRC-32C (Castagnoli), bit by bit: slow and obviously right, the reference the
    /// client's checksums are compared with.
    static func crc32cBigEndian(_ bytes: [UInt8]) -> [UInt8] {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        crc = ~crc
        return [UInt8(crc >> 24), UInt8(truncatingIfNeeded: crc >> 16), UInt8(truncatingIfNeeded: crc >> 8), UInt8(truncatingIfNeeded: crc)]
    }

    static func unhex(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        for i in stride(from: 0, to: digits.count, by: 2) {
            guard let hi = SigV4.hexValue(digits[i]), let lo = SigV4.hexValue(digits[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
        }
        return out
    }
}

/// One server connection: collects a request, answers it.
final class FakeS3Handler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let fake: FakeS3
    private var head: HTTPRequestHead?
    private var body: [UInt8] = []
    /// The current request was answered from its head; its body is being dropped.
    private var answered = false

    init(_ fake: FakeS3) { self.fake = fake }

    func channelActive(context: ChannelHandlerContext) {
        fake.state.withLock {
            $0.connectionsAccepted += 1
            $0.children.append(context.channel)
        }
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h):
            head = h
            body = []
            answered = false
            if h.method == .PUT, fake.behaviour == .refuseBeforeBody {
                answered = true
                let refusal = FakeS3.error(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size")
                fake.state.withLock { $0.requests.append("\(h.method.rawValue) \(h.uri)") }
                send(refusal, context: context)
            }
        case .body(var chunk):
            if answered { return }
            body += chunk.readBytes(length: chunk.readableBytes) ?? []
        case .end:
            if answered { return }
            guard let head, let answer = fake.respond(head, body) else { return }
            send(answer, context: context)
        }
    }

    private func send(_ answer: FakeS3.Answer, context: ChannelHandlerContext) {
        var response = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: answer.status))
        for (name, value) in answer.headers { response.headers.add(name: name, value: value) }
        response.headers.replaceOrAdd(name: "Content-Length", value: String(answer.contentLength ?? answer.body.count))
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        if !answer.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: answer.body)))), promise: nil)
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if answer.close {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        }
    }
}

// MARK: Tests

@Suite struct S3BlobClientTests {
    static func blob(
        _ fake: FakeS3, prefix: String = "", pageSize: Int? = nil, timeout: Duration = .seconds(120), connections: Int = 8,
        credentials: S3Credentials = FakeS3.credentials, addressing: S3Blob.Addressing = .pathStyle,
        integrity: S3Blob.PayloadIntegrity? = nil, retry: S3Blob.RetryPolicy = .standard
    ) -> S3Blob {
        var configuration = S3Blob.Configuration(
            endpoint: fake.endpoint, bucket: FakeS3.bucket, prefix: prefix, credentials: credentials, addressing: addressing,
            maxConnections: connections, requestTimeout: timeout, listPageSize: pageSize, retry: retry)
        if let integrity { configuration.payloadIntegrity = integrity }
        return S3Blob(configuration)
    }

    /// Runs `body` against a fresh fake server and stops the server afterwards.
    static func withFake(unixSocket: Bool = false, _ body: (FakeS3) async throws -> Void) async throws {
        let fake = try await FakeS3.start(unixSocket: unixSocket)
        try await withCleanup { try await body(fake) } cleanup: { await fake.stop() }
    }

    /// The `StorageError` `body` throws (nil if it succeeds; a record if it throws another).
    static func storageError(_ body: () async throws -> Void) async -> StorageError? {
        do {
            try await body()
            return nil
        } catch let error as StorageError {
            return error
        } catch {
            Issue.record("not a StorageError: \(error)")
            return nil
        }
    }

    @Test(arguments: [false, true])
    func basicOperations(unixSocket: Bool) async throws {
        try await Self.withFake(unixSocket: unixSocket) { fake in
            let blob = Self.blob(fake)
            #expect(try await blob.get("missing") == nil)
            #expect(try await blob.list(prefix: "") == [])
            try await blob.set("a/1", [1, 2, 3])
            try await blob.set("a/2", [])
            try await blob.set("b", Array(repeating: 7, count: 100_000))
            #expect(try await blob.get("a/1") == [1, 2, 3])
            #expect(try await blob.get("a/2") == [])
            #expect(try await blob.get("b") == Array(repeating: 7, count: 100_000))
            #expect(
                try await blob.list(prefix: "")
                    == [BlobMetadata(key: "a/1", sizeBytes: 3), BlobMetadata(key: "a/2", sizeBytes: 0), BlobMetadata(key: "b", sizeBytes: 100_000)])
            #expect(try await blob.list(prefix: "a/").map(\.key) == ["a/1", "a/2"])
            #expect(try await blob.delete("a/1") == 3)
            #expect(try await blob.delete("a/1") == nil)
            #expect(try await blob.get("a/1") == nil)
            #expect(try await blob.list(prefix: "a").map(\.key) == ["a/2"])
            await blob.shutdown()
            // After shutdown nothing is sent.
            let error = await Self.storageError { _ = try await blob.get("b") }
            #expect(error?.code == .unavailable && error?.isDeterminate == true)
        }
    }

    @Test func requestsAreSignedEncodedAndPrefixed() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, prefix: "pre/fix")
            try await blob.set("a b/ü+%", [1])
            #expect(fake.object("pre/fix/a b/ü+%") == [1])
            #expect(fake.requests.last == "PUT /bucket/pre/fix/a%20b/%C3%BC%2B%25")
            #expect(try await blob.list(prefix: "a ").map(\.key) == ["a b/ü+%"])
            #expect(fake.requests.last == "GET /bucket?list-type=2&encoding-type=url&prefix=pre%2Ffix%2Fa%20")
            #expect(try await blob.delete("a b/ü+%") == 1)
            #expect(fake.requests.suffix(2) == ["HEAD /bucket/pre/fix/a%20b/%C3%BC%2B%25", "DELETE /bucket/pre/fix/a%20b/%C3%BC%2B%25"])
            await blob.shutdown()
        }
    }

    @Test func bodiesCarryACRC32CByDefault() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake)
            #expect(blob.configuration.payloadIntegrity == .crc32c)
            let value = Array("123456789".utf8)
            try await blob.set("k", value)
            let headers = fake.state.withLock { $0.lastPutHeaders }
            // The check value of CRC-32C, 0xE3069283, big-endian and base64.
            #expect(headers["x-amz-checksum-crc32c"] == "4waSgw==")
            #expect(headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD")
            #expect(headers["content-md5"] == nil)
            #expect(headers["authorization"]?.contains("x-amz-checksum-crc32c") == true, "the checksum header is signed")
            #expect(fake.object("k") == value)
            // Bodies of every size up to several write pieces arrive whole and checked.
            for size in [0, 1, S3HTTPClientHandler.pieceBytes - 1, S3HTTPClientHandler.pieceBytes, 3 * S3HTTPClientHandler.pieceBytes + 7] {
                let bytes = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ size) }
                try await blob.set("size-\(size)", bytes)
                #expect(fake.object("size-\(size)") == bytes, "\(size) bytes")
                #expect(try await blob.get("size-\(size)") == bytes, "\(size) bytes")
            }
            await blob.shutdown()
        }
    }

    @Test func bodiesCanCarrySHA256AndMD5() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, integrity: .sha256AndMD5)
            let value = Array(repeating: UInt8(42), count: 300_000)
            try await blob.set("k", value)
            let headers = fake.state.withLock { $0.lastPutHeaders }
            #expect(headers["x-amz-content-sha256"] == SigV4.sha256Hex(value))
            #expect(headers["content-md5"] == SigV4.contentMD5(value))
            #expect(headers["x-amz-checksum-crc32c"] == nil)
            #expect(fake.object("k") == value)
            await blob.shutdown()
        }
    }

    @Test(arguments: [S3Blob.PayloadIntegrity.crc32c, .sha256AndMD5])
    func damagedBodiesAreRefusedAsCorruption(_ integrity: S3Blob.PayloadIntegrity) async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, integrity: integrity)
            fake.behaviour = .damageBodies
            let error = await Self.storageError { try await blob.set("k", Array(repeating: 5, count: 1000)) }
            #expect(error?.code == .corruption)
            #expect(error?.determinacy == .determinate, "the server refused the body and stored nothing")
            #expect(fake.object("k") == nil)
            fake.behaviour = .normal
            try await blob.set("k", [1, 2])
            #expect(fake.object("k") == [1, 2])
            await blob.shutdown()
        }
    }

    @Test func anAnswerBeforeTheWholeBodyRetiresTheConnection() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, connections: 1)
            try await blob.set("first", [1])
            #expect(fake.state.withLock { $0.connectionsAccepted } == 1)
            fake.behaviour = .refuseBeforeBody
            // Far more than the socket buffers hold, so the refusal arrives mid-body.
            let error = await Self.storageError { try await blob.set("big", Array(repeating: 9, count: 48 << 20)) }
            #expect(error?.code == .invalidArgument && error?.message.contains("EntityTooLarge") == true)
            #expect(error?.isDeterminate == true)
            fake.behaviour = .normal
            // The unsent rest of that body must not be taken for the next request.
            try await blob.set("after", [2])
            #expect(fake.object("after") == [2])
            #expect(fake.object("big") == nil)
            #expect(fake.state.withLock { $0.connectionsAccepted } == 2)
            await blob.shutdown()
        }
    }

    @Test func virtualHostAddressing() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, addressing: .virtualHost)
            try await blob.set("k/1", [9])
            #expect(fake.requests.last == "PUT /k/1")
            #expect(fake.object("k/1") == [9])
            #expect(try await blob.get("k/1") == [9])
            #expect(try await blob.list(prefix: "k").map(\.key) == ["k/1"])
            await blob.shutdown()
        }
    }

    @Test func listingFollowsContinuationTokens() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, pageSize: 2)
            let keys = (0..<7).map { "k\($0)" } + ["other"]
            for key in keys { try await blob.set(key, Array(key.utf8)) }
            let before = fake.requests.count
            #expect(try await blob.list(prefix: "k").map(\.key) == (0..<7).map { "k\($0)" })
            let listRequests = fake.requests.dropFirst(before)
            #expect(listRequests.count == 4)
            #expect(listRequests.allSatisfy { $0.contains("max-keys=2") })
            #expect(listRequests.dropFirst().allSatisfy { $0.contains("continuation-token=") })
            #expect(try await blob.list(prefix: "").count == 8)
            await blob.shutdown()
        }
    }

    @Test func hostileKeysSurviveTheRoundTrip() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, pageSize: 5)
            let keys = BlobConformance.hostileKeys + ["é", "e\u{301}", "<Key>&amp;", "a+b", "a b", "?x=1&y", "#frag"]
            for (i, key) in keys.enumerated() { try await blob.set(key, [UInt8(i)]) }
            for (i, key) in keys.enumerated() {
                #expect(try await blob.get(key) == [UInt8(i)], "\(key.debugDescription)")
                #expect(fake.object(key) == [UInt8(i)], "stored under its own bytes: \(key.debugDescription)")
            }
            // Precomposed and decomposed é are different keys.
            #expect(fake.state.withLock { $0.objects.count } == keys.count)
            let listed = try await blob.list(prefix: "").map { Array($0.key.utf8) }
            #expect(listed == keys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) })
            for key in keys { #expect(try await blob.delete(key) == 1, "\(key.debugDescription)") }
            #expect(try await blob.list(prefix: "") == [])
            await blob.shutdown()
        }
    }

    @Test func serverErrorsMapToStorageErrors() async throws {
        try await Self.withFake { fake in
            // One attempt per request: this maps single answers (S3BlobRetryTests retries).
            let blob = Self.blob(fake, retry: .never)
            fake.behaviour = .fail(status: 500, code: "InternalError")
            let set = await Self.storageError { try await blob.set("k", [1]) }
            #expect(set?.code == .unavailable)
            #expect(set?.determinacy == .indeterminate)
            #expect(set?.message.contains("InternalError") == true)
            let get = await Self.storageError { _ = try await blob.get("k") }
            #expect(get?.code == .unavailable)
            #expect(get?.determinacy == .determinate)
            let list = await Self.storageError { _ = try await blob.list(prefix: "") }
            #expect(list?.isDeterminate == true)
            let delete = await Self.storageError { _ = try await blob.delete("k") }
            // The HEAD failed, so the DELETE was never sent.
            #expect(delete?.isDeterminate == true)

            fake.behaviour = .fail(status: 503, code: "SlowDown")
            let throttled = await Self.storageError { try await blob.set("k", [1]) }
            #expect(throttled?.code == .unavailable)
            #expect(throttled?.determinacy == .determinate)

            fake.behaviour = .fail(status: 403, code: "AccessDenied")
            let denied = await Self.storageError { try await blob.set("k", [1]) }
            #expect(denied?.code == .rejected)
            #expect(denied?.determinacy == .determinate)

            fake.behaviour = .fail(status: 404, code: "NoSuchBucket")
            let noBucket = await Self.storageError { _ = try await blob.get("k") }
            #expect(noBucket?.code == .rejected)

            fake.behaviour = .normal
            let recovered = try await blob.get("k")
            #expect(recovered == nil)
            await blob.shutdown()
        }
    }

    @Test func badCredentialsAreRejectedDeterminately() async throws {
        try await Self.withFake { fake in
            let wrongSecret = Self.blob(fake, credentials: S3Credentials(accessKeyID: "test-key", secretAccessKey: "wrong"))
            let mismatch = await Self.storageError { try await wrongSecret.set("k", [1]) }
            #expect(mismatch?.code == .rejected)
            #expect(mismatch?.isDeterminate == true)
            #expect(mismatch?.message.contains("SignatureDoesNotMatch") == true)
            let unknownKey = Self.blob(fake, credentials: S3Credentials(accessKeyID: "nobody", secretAccessKey: "x"))
            let unknown = await Self.storageError { _ = try await unknownKey.get("k") }
            #expect(unknown?.message.contains("InvalidAccessKeyId") == true)
            #expect(fake.object("k") == nil)
            await wrongSecret.shutdown()
            await unknownKey.shutdown()
        }
    }

    @Test func unansweredRequestsTimeOut() async throws {
        try await Self.withFake { fake in
            fake.behaviour = .neverAnswer
            let blob = Self.blob(fake, timeout: .seconds(2))
            let set = await Self.storageError { try await blob.set("k", [1]) }
            #expect(set?.code == .timeout)
            #expect(set?.determinacy == .indeterminate, "the server got the PUT and may have applied it")
            let get = await Self.storageError { _ = try await blob.get("k") }
            #expect(get?.code == .timeout)
            #expect(get?.determinacy == .determinate)
            let delete = await Self.storageError { _ = try await blob.delete("k") }
            #expect(delete?.code == .timeout)
            #expect(delete?.determinacy == .determinate, "only the HEAD was sent")
            // A timed-out connection is never reused: the next request gets a fresh one.
            // (On a machine busy with the rest of the suite the 2 s budget can run out
            // again; such a retry opens yet another connection, so the count is a floor.)
            fake.behaviour = .normal
            let accepted = fake.state.withLock { $0.connectionsAccepted }
            var stored = false
            for _ in 0..<10 where !stored {
                do { try await blob.set("k", [2]); stored = true } catch let e as StorageError where e.code == .timeout { continue }
            }
            #expect(stored)
            #expect(fake.state.withLock { $0.connectionsAccepted } >= accepted + 1)
            #expect(fake.object("k") == [2])
            await blob.shutdown()
        }
    }

    @Test func refusedConnectionsAreDeterminate() async throws {
        let blob = S3Blob(
            S3Blob.Configuration(
                endpoint: .unix(path: "/tmp/no-such-dir-\(UUID().uuidString)/s3.sock"), bucket: "b", credentials: FakeS3.credentials))
        let set = await Self.storageError { try await blob.set("k", [1]) }
        #expect(set?.code == .unavailable)
        #expect(set?.determinacy == .determinate)
        await blob.shutdown()
    }

    @Test func connectionsClosedByTheServerAreReplaced() async throws {
        try await Self.withFake { fake in
            fake.behaviour = .closeAfterEachAnswer
            let blob = Self.blob(fake, connections: 1)
            for i in 0..<20 {
                try await blob.set("k\(i)", [UInt8(i)])
                #expect(try await blob.get("k\(i)") == [UInt8(i)])
            }
            #expect(fake.state.withLock { $0.connectionsAccepted } >= 40)
            await blob.shutdown()
        }
    }

    @Test func connectionsAreKeptAliveAndBounded() async throws {
        try await Self.withFake { fake in
            let blob = Self.blob(fake, connections: 3)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<60 {
                    group.addTask { try await blob.set("k\(i)", Array(repeating: UInt8(i), count: 1000 + i)) }
                }
                try await group.waitForAll()
            }
            for i in 0..<60 { #expect(try await blob.get("k\(i)") == Array(repeating: UInt8(i), count: 1000 + i)) }
            #expect(fake.state.withLock { $0.connectionsAccepted } <= 3)
            #expect(fake.requests.count == 120)
            await blob.shutdown()
        }
    }

    @Test(arguments: BlobConformance.checks)
    func conformanceAgainstTheFake(_ check: BlobConformance.Check) async throws {
        let fake = try await FakeS3.start()
        do {
            try await check.run(
                ConformanceHarness(
                    open: {
                        // Each store is a fresh prefix of the same bucket.
                        Self.blob(fake, prefix: "run-\(UUID().uuidString)", pageSize: 7)
                    },
                    reopen: { old in
                        let previous = try #require(old as? S3Blob)
                        await previous.shutdown()
                        return Self.blob(fake, prefix: previous.configuration.prefix, pageSize: 7)
                    }))
        } catch {
            await fake.stop()
            throw error
        }
        await fake.stop()
    }

    // MARK: Pure parts

    @Test func configurationFromLocations() throws {
        let credentials = FakeS3.credentials
        let tcp = try S3Blob.Configuration(
            location: S3Location(bucket: "b", prefix: "p", endpoint: "http://127.0.0.1:9000", region: "eu-west-1", pathStyle: true),
            credentials: credentials)
        #expect(tcp.endpoint == .tcp(host: "127.0.0.1", port: 9000))
        #expect(tcp.region == "eu-west-1")
        #expect(tcp.keyPrefix == "p/")
        #expect(tcp.addressing == .pathStyle)
        #expect(tcp.effectiveHostHeader == "127.0.0.1:9000")
        let unix = try S3Blob.Configuration(
            location: try Self.s3(LocationURL.blob("s3://b?endpoint=unix:///run/blob.sock")), credentials: credentials)
        #expect(unix.endpoint == .unix(path: "/run/blob.sock"))
        #expect(unix.region == "us-east-1")
        #expect(unix.effectiveHostHeader == "localhost")
        let virtual = try S3Blob.Configuration(
            location: S3Location(bucket: "b", endpoint: "http://minio.local", pathStyle: false), credentials: credentials)
        #expect(virtual.endpoint == .tcp(host: "minio.local", port: 80))
        #expect(virtual.effectiveHostHeader == "b.minio.local")
        #expect(virtual.keyPrefix == "")
        // HTTPS and AWS's own endpoint: see S3BlobTLSTests.endpointsFromLocations.
        for location in [
            S3Location(bucket: "b", endpoint: "http://h:1/base"), S3Location(bucket: "b", endpoint: "https://h?x=1"),
            S3Location(bucket: "b", endpoint: "ftp://h"),
        ] {
            #expect(throws: StorageError.self) { try S3Blob.Configuration(location: location, credentials: credentials) }
        }
    }

    static func s3(_ location: BlobLocation) throws -> S3Location {
        guard case .s3(let s3) = location else { throw StorageError.determinate(.invalidArgument, "not s3") }
        return s3
    }

    @Test func requestBuilding() throws {
        var builder = S3RequestBuilder(bucket: "b", region: "us-east-1", credentials: FakeS3.credentials, pathStyle: true, host: "h:1")
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        let put = builder.request(.putObject(key: "a/ b", body: [1, 2, 3]), date: date)
        #expect(put.method == "PUT")
        #expect(put.target == "/b/a/%20b")
        #expect(put.body == [1, 2, 3])
        let names = Set(put.headers.map { $0.name.lowercased() })
        #expect(names.isSuperset(of: ["host", "content-length", "x-amz-checksum-crc32c", "x-amz-date", "x-amz-content-sha256", "authorization"]))
        #expect(!names.contains("content-md5"))
        let signed = SigV4Request(method: put.method, target: put.target, headers: put.headers)
        #expect(signed.header("x-amz-content-sha256") == "UNSIGNED-PAYLOAD")
        #expect(signed.header("x-amz-checksum-crc32c") == Data(FakeS3.crc32cBigEndian([1, 2, 3])).base64EncodedString())
        let auth = try SigV4.authenticate(request: signed, secretFor: { _ in FakeS3.credentials.secretAccessKey }, now: date)
        #expect(auth.signedHeaders.contains("x-amz-checksum-crc32c"))

        builder.payloadIntegrity = .sha256AndMD5
        let hashed = builder.request(.putObject(key: "k", body: [1, 2, 3]), date: date)
        let hashedRequest = SigV4Request(method: hashed.method, target: hashed.target, headers: hashed.headers)
        #expect(hashedRequest.header("x-amz-content-sha256") == SigV4.sha256Hex([1, 2, 3]))
        #expect(hashedRequest.header("content-md5") == SigV4.contentMD5([1, 2, 3]))
        #expect(hashedRequest.header("x-amz-checksum-crc32c") == nil)
        let hashedAuth = try SigV4.authenticate(request: hashedRequest, secretFor: { _ in FakeS3.credentials.secretAccessKey }, now: date)
        #expect(hashedAuth.signedHeaders.contains("content-md5"))
        // The one-pass digests are the usual ones, across the pieces they are fed in.
        let long = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let digests = S3RequestBuilder.sha256AndMD5(long)
        #expect(SigV4.hex(digests.sha256) == SigV4.sha256Hex(long))
        #expect(Data(digests.md5).base64EncodedString() == SigV4.contentMD5(long))
        #expect(S3RequestBuilder.crc32cBase64(long) == Data(FakeS3.crc32cBigEndian(long)).base64EncodedString())
        let list = builder.request(.listObjectsV2(prefix: "x/y", continuationToken: "t/+=", maxKeys: 5), date: date)
        #expect(list.target == "/b?list-type=2&encoding-type=url&prefix=x%2Fy&continuation-token=t%2F%2B%3D&max-keys=5")
        #expect(builder.request(.getObject(key: ""), date: date).target == "/b/")
        let virtual = S3RequestBuilder(bucket: "b", region: "r", credentials: FakeS3.credentials, pathStyle: false, host: "b.h")
        #expect(virtual.request(.headObject(key: "k"), date: date).target == "/k")
        #expect(virtual.request(.listObjectsV2(prefix: "", continuationToken: nil, maxKeys: nil), date: date).target == "/?list-type=2&encoding-type=url&prefix=")
    }

    @Test func responseMapping() throws {
        func response(_ status: Int, _ code: String? = nil, headers: [(name: String, value: String)] = []) -> S3HTTPResponse {
            S3HTTPResponse(
                status: status, headers: headers, body: code.map { S3XML.render(S3ErrorDocument(code: $0, message: "m")) } ?? [])
        }
        let get = S3Operation.getObject(key: "k")
        let put = S3Operation.putObject(key: "k", body: [])
        let delete = S3Operation.deleteObject(key: "k")
        #expect(try S3ResponseMapping.object(S3HTTPResponse(status: 200, headers: [], body: [1]), operation: get) == [1])
        #expect(try S3ResponseMapping.object(response(404, "NoSuchKey"), operation: get) == nil)
        #expect(try S3ResponseMapping.object(response(404), operation: get) == nil)
        #expect(throws: StorageError.self) { try S3ResponseMapping.object(response(404, "NoSuchBucket"), operation: get) }
        #expect(try S3ResponseMapping.size(response(200, headers: [(name: "content-length", value: "12")]), operation: get) == 12)
        #expect(try S3ResponseMapping.size(response(404), operation: get) == nil)
        #expect(throws: StorageError.self) { try S3ResponseMapping.size(response(200), operation: get) }
        #expect(throws: Never.self) { try S3ResponseMapping.done(response(204), operation: delete) }
        #expect(throws: Never.self) { try S3ResponseMapping.done(response(404, "NoSuchKey"), operation: delete) }
        #expect(throws: StorageError.self) { try S3ResponseMapping.done(response(404, "NoSuchKey"), operation: put) }

        let table: [(Int, String?, S3Operation, StorageError.Code, StorageError.Determinacy)] = [
            (400, "InvalidArgument", put, .invalidArgument, .determinate),
            (400, "BadDigest", put, .corruption, .determinate),
            (400, "XAmzContentSHA256Mismatch", put, .corruption, .determinate),
            (400, "RequestTimeout", put, .timeout, .determinate),
            (403, "SignatureDoesNotMatch", put, .rejected, .determinate),
            (403, nil, get, .rejected, .determinate),
            (301, "PermanentRedirect", get, .rejected, .determinate),
            (409, "OperationAborted", put, .rejected, .determinate),
            (429, nil, put, .unavailable, .determinate),
            (503, "SlowDown", put, .unavailable, .determinate),
            (500, "InternalError", put, .unavailable, .indeterminate),
            (502, nil, delete, .unavailable, .indeterminate),
            (504, nil, get, .unavailable, .determinate),
            (100, nil, put, .failed, .indeterminate),
        ]
        for (status, code, operation, expectedCode, determinacy) in table {
            let error = S3ResponseMapping.error(response(status, code), operation: operation)
            #expect(error.code == expectedCode, "\(status) \(code ?? "-")")
            #expect(error.determinacy == determinacy, "\(status) \(code ?? "-")")
            if let code { #expect(error.message.contains(code)) }
        }
        // An unreadable listing is an error, not a trap.
        let garbage = S3HTTPResponse(status: 200, headers: [], body: Array("<ListBucketResult>".utf8))
        #expect(throws: StorageError.self) { try S3ResponseMapping.listing(garbage, operation: .listObjectsV2(prefix: "", continuationToken: nil, maxKeys: nil)) }
    }

    @Test func transportFailuresMapByDeterminacy() {
        let put = S3Operation.putObject(key: "k", body: [])
        let get = S3Operation.getObject(key: "k")
        let endpoint = S3Blob.Endpoint.tcp(host: "h", port: 1)
        func map(_ f: S3TransportFailure, _ op: S3Operation) -> StorageError {
            S3Blob.storageError(f, operation: op, timeout: .seconds(1), endpoint: endpoint)
        }
        #expect(map(.notSent("x"), put).isDeterminate)
        #expect(!map(.lost("x", responseStarted: false), put).isDeterminate)
        #expect(map(.lost("x", responseStarted: true), get).isDeterminate)
        #expect(map(.timedOut, put).code == .timeout)
        #expect(!map(.timedOut, put).isDeterminate)
        #expect(map(.timedOut, get).isDeterminate)
        #expect(S3TransportFailure.lost("x", responseStarted: false).looksStale)
        #expect(!S3TransportFailure.lost("x", responseStarted: true).looksStale)
        #expect(!S3TransportFailure.timedOut.looksStale)
    }

    @Test func poolStateMachine() {
        typealias Pool = S3ConnectionPoolState<String, Int>
        var pool = Pool(limit: 2)
        // Two connects, then waiting in order.
        guard case .connect = pool.lease(id: 1, waiter: 1, isUsable: { _ in true }).0 else { Issue.record("first lease"); return }
        guard case .connect = pool.lease(id: 2, waiter: 2, isUsable: { _ in true }).0 else { Issue.record("second lease"); return }
        guard case .wait = pool.lease(id: 3, waiter: 3, isUsable: { _ in true }).0 else { Issue.record("third lease"); return }
        guard case .wait = pool.lease(id: 4, waiter: 4, isUsable: { _ in true }).0 else { Issue.record("fourth lease"); return }
        #expect(pool.open == 2)
        // A reusable release goes to the oldest waiter.
        guard case .give("c1", to: 3) = pool.release("c1", reusable: true) else { Issue.record("hand-over"); return }
        // A broken connection passes its slot to the next waiter, who reconnects.
        guard case .connect(for: 4, closing: "c2"?) = pool.release("c2", reusable: false) else { Issue.record("reconnect"); return }
        #expect(pool.open == 2)
        // Nobody waits: the connection is parked, then reused.
        guard case .none = pool.release("c1", reusable: true) else { Issue.record("park"); return }
        #expect(pool.idle == ["c1"])
        guard case .use("c1") = pool.lease(id: 5, waiter: 5, isUsable: { _ in true }).0 else { Issue.record("reuse"); return }
        // A dead idle connection is discarded and its slot reused for a connect.
        guard case .none = pool.release("c1", reusable: true) else { Issue.record("park again"); return }
        let leased = pool.lease(id: 6, waiter: 6, isUsable: { _ in false })
        guard case .connect = leased.0 else { Issue.record("connect after discard"); return }
        #expect(leased.discarded == ["c1"])
        #expect(pool.open == 2)
        // A failed connect frees its slot when nobody waits...
        guard case .none = pool.connectFailed() else { Issue.record("connect failed"); return }
        #expect(pool.open == 1)
        // ...or hands it to a waiter.
        guard case .connect = pool.lease(id: 7, waiter: 7, isUsable: { _ in true }).0 else { Issue.record("lease 7"); return }
        guard case .wait = pool.lease(id: 8, waiter: 8, isUsable: { _ in true }).0 else { Issue.record("lease 8"); return }
        guard case .wait = pool.lease(id: 9, waiter: 9, isUsable: { _ in true }).0 else { Issue.record("lease 9"); return }
        guard case .connect(for: 8, closing: nil) = pool.connectFailed() else { Issue.record("slot to waiter"); return }
        // A timed-out waiter leaves the queue once.
        #expect(pool.removeWaiter(id: 9) == 9)
        #expect(pool.removeWaiter(id: 9) == nil)
        // Shutdown fails waiters, closes idle connections, and refuses leases.
        guard case .none = pool.release("c3", reusable: true) else { Issue.record("park c3"); return }
        guard case .none = pool.release("c4", reusable: true) else { Issue.record("park c4"); return }
        guard case .use("c4") = pool.lease(id: 10, waiter: 10, isUsable: { _ in true }).0 else { Issue.record("lease 10"); return }
        guard case .use("c3") = pool.lease(id: 11, waiter: 11, isUsable: { _ in true }).0 else { Issue.record("lease 11"); return }
        guard case .wait = pool.lease(id: 12, waiter: 12, isUsable: { _ in true }).0 else { Issue.record("lease 12"); return }
        guard case .give("c4", to: 12) = pool.release("c4", reusable: true) else { Issue.record("give c4"); return }
        guard case .wait = pool.lease(id: 13, waiter: 13, isUsable: { _ in true }).0 else { Issue.record("lease 13"); return }
        let refused = pool.shutDown()
        #expect(refused.idle.isEmpty)
        #expect(refused.waiters == [13])
        guard case .shutDown = pool.lease(id: 14, waiter: 14, isUsable: { _ in true }).0 else { Issue.record("after shutdown"); return }
        guard case .close("c3") = pool.release("c3", reusable: true) else { Issue.record("close after shutdown"); return }
        guard case .close("c4") = pool.release("c4", reusable: true) else { Issue.record("close c4 after shutdown"); return }
        #expect(pool.open == 0)
    }
}
