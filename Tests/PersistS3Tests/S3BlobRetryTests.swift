import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import PersistCore
import Synchronization
import Testing

@testable import PersistS3

// MARK: A scripted server

/// An HTTP server that answers from a script: each request takes the next reply, and once
/// the script is used up every request gets `then`. It checks nothing (no signatures, no
/// routing): it exists to make `S3Blob` see exactly the refusals a test wants, in order.
final class ScriptedS3Server: Sendable {
    enum Reply: Sendable, Equatable {
        /// An S3 error answer; no body when `code` is nil.
        case error(Int, String?)
        /// 200 with this body (for HEAD, only its length is announced).
        case ok([UInt8])
        /// The connection is closed without an answer once the request has arrived.
        case drop
        /// The request is never answered.
        case silence
    }

    struct State {
        var script: [Reply] = []
        var then = Reply.ok([])
        /// `METHOD target` of every request that arrived whole.
        var requests: [String] = []
        var children: [any Channel] = []
    }

    let state = Mutex(State())
    private let server = Mutex<(any Channel)?>(nil)

    private init() {}

    static func start(_ script: [Reply], then: Reply = .ok([])) async throws -> ScriptedS3Server {
        let scripted = ScriptedS3Server()
        scripted.state.withLock {
            $0.script = script
            $0.then = then
        }
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ScriptedS3Handler(scripted))
                }
            }
            .bind(host: "127.0.0.1", port: 0).get()
        scripted.server.withLock { $0 = channel }
        return scripted
    }

    var endpoint: S3Blob.Endpoint {
        .tcp(host: "127.0.0.1", port: server.withLock { $0?.localAddress?.port } ?? 0)
    }

    var requests: [String] { state.withLock { $0.requests } }

    /// The reply to the request that just arrived.
    func next(_ head: HTTPRequestHead) -> Reply {
        state.withLock { s in
            s.requests.append("\(head.method.rawValue) \(head.uri)")
            return s.script.isEmpty ? s.then : s.script.removeFirst()
        }
    }

    func adopt(_ channel: any Channel) { state.withLock { $0.children.append(channel) } }

    func stop() async {
        let (channel, children) = (server.withLock { $0 }, state.withLock { $0.children })
        try? await channel?.close()
        for child in children { try? await child.close() }
    }
}

/// One connection of a `ScriptedS3Server`.
final class ScriptedS3Handler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let scripted: ScriptedS3Server
    private var head: HTTPRequestHead?

    init(_ scripted: ScriptedS3Server) { self.scripted = scripted }

    func channelActive(context: ChannelHandlerContext) {
        scripted.adopt(context.channel)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let head else { return }
            switch scripted.next(head) {
            case .drop: context.close(promise: nil)
            case .silence: break
            case .ok(let body): answer(200, body: body, announceOnly: head.method == .HEAD, context: context)
            case .error(let status, let code):
                let body = code.map { S3XML.render(S3ErrorDocument(code: $0, message: "scripted refusal", requestID: "scripted")) } ?? []
                answer(status, body: body, announceOnly: head.method == .HEAD, context: context)
            }
        }
    }

    private func answer(_ status: Int, body: [UInt8], announceOnly: Bool, context: ChannelHandlerContext) {
        var response = HTTPResponseHead(version: .http1_1, status: HTTPResponseStatus(statusCode: status))
        response.headers.add(name: "Content-Length", value: String(body.count))
        if !body.isEmpty, !announceOnly { response.headers.add(name: "Content-Type", value: "application/xml") }
        context.write(wrapOutboundOut(.head(response)), promise: nil)
        if !body.isEmpty, !announceOnly {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }
}

/// Records the pauses `S3Blob` asks for instead of sleeping, so retries take no time.
final class PauseRecorder: Sendable {
    private let recorded = Mutex<[Duration]>([])
    /// When set, every pause throws as a cancelled sleep does.
    let cancels: Bool

    init(cancels: Bool = false) { self.cancels = cancels }

    var pauses: [Duration] { recorded.withLock { $0 } }

    func sleep(_ duration: Duration) async throws {
        recorded.withLock { $0.append(duration) }
        if cancels { throw CancellationError() }
    }
}

// MARK: Tests

/// `S3Blob`'s retries: which refusals and failures are sent again, how many times, after
/// which pauses, and with which determinacy a request that never succeeds fails.
@Suite struct S3BlobRetryTests {
    static let credentials = S3Credentials(accessKeyID: "retry-key", secretAccessKey: "retry-secret")
    /// Four attempts; pauses from 100 ms doubling to at most 5 s, jittered from seed 42.
    static let policy = S3Blob.RetryPolicy(maxAttempts: 4, initialBackoff: .milliseconds(100), maxBackoff: .seconds(5), jitterSeed: 42)

    /// Runs `body` with a fresh scripted server and a client of it whose pauses are
    /// recorded, then stops both.
    static func withScript(
        _ script: [ScriptedS3Server.Reply], then: ScriptedS3Server.Reply = .ok([]), policy: S3Blob.RetryPolicy = policy,
        requestTimeout: Duration = .seconds(60), pauses: PauseRecorder = PauseRecorder(),
        _ body: (ScriptedS3Server, S3Blob, PauseRecorder) async throws -> Void
    ) async throws {
        let server = try await ScriptedS3Server.start(script, then: then)
        let blob = S3Blob(
            S3Blob.Configuration(
                endpoint: server.endpoint, bucket: "bkt", credentials: credentials, requestTimeout: requestTimeout, retry: policy),
            sleep: { try await pauses.sleep($0) })
        try await withCleanup { try await body(server, blob, pauses) } cleanup: {
            await blob.shutdown()
            await server.stop()
        }
    }

    /// The pauses a client with `policy` takes before retries 1...`count` of one request,
    /// drawing its jitter from `generator` (which it advances).
    static func expectedPauses(_ count: Int, policy: S3Blob.RetryPolicy = policy, _ generator: inout SeededGenerator) -> [Duration] {
        (1...count).map { policy.backoff(beforeRetry: $0, unit: Double.random(in: 0..<1, using: &generator)) }
    }

    struct Refusal: Sendable, CustomStringConvertible {
        var status: Int
        var code: String?
        var description: String { "\(status) \(code ?? "(no body)")" }
    }

    static let transientRefusals = [
        Refusal(status: 503, code: "SlowDown"), Refusal(status: 503, code: nil), Refusal(status: 500, code: "InternalError"),
        Refusal(status: 502, code: nil), Refusal(status: 504, code: nil), Refusal(status: 429, code: nil),
        Refusal(status: 400, code: "RequestTimeout"), Refusal(status: 400, code: "Throttling"),
        Refusal(status: 403, code: "RequestLimitExceeded"),
    ]

    @Test(arguments: transientRefusals)
    func transientRefusalsAreRetriedUntilTheRequestSucceeds(_ refusal: Refusal) async throws {
        let no = ScriptedS3Server.Reply.error(refusal.status, refusal.code)
        try await Self.withScript([no, no, no, .ok([1, 2, 3]), no, no, no, .ok([])]) { server, blob, pauses in
            #expect(try await blob.get("k") == [1, 2, 3])
            #expect(server.requests == Array(repeating: "GET /bkt/k", count: 4))
            try await blob.set("k", [9])
            #expect(server.requests.count == 8)
            #expect(server.requests.suffix(4) == Array(repeating: "PUT /bkt/k", count: 4))
            // Three pauses per request, from the seeded jitter in order, each between half
            // and all of its doubling step.
            var generator = SeededGenerator(seed: 42)
            let expected = Self.expectedPauses(3, &generator) + Self.expectedPauses(3, &generator)
            #expect(pauses.pauses == expected)
            for (i, pause) in pauses.pauses.enumerated() {
                let step = Duration.milliseconds(100 << (i % 3))
                #expect(pause >= step / 2 && pause <= step, "pause \(i): \(pause)")
            }
        }
    }

    @Test func throttledWritesGiveUpDeterminately() async throws {
        try await Self.withScript([], then: .error(503, "SlowDown")) { server, blob, pauses in
            let error = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
            #expect(error?.code == .unavailable)
            #expect(error?.determinacy == .determinate, "every attempt was refused before it acted")
            #expect(error?.message.contains("SlowDown") == true)
            #expect(error?.message.contains("gave up after 4 attempts") == true, "\(String(describing: error))")
            #expect(server.requests.count == 4)
            #expect(pauses.pauses.count == 3)
        }
    }

    @Test func aWriteThatMayHaveBeenAppliedStaysIndeterminate() async throws {
        // A 500 may come after the server acted; the throttling answers after it say
        // nothing about that first attempt.
        try await Self.withScript([.error(500, "InternalError")], then: .error(503, "SlowDown")) { server, blob, pauses in
            let error = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
            #expect(error?.code == .unavailable)
            #expect(error?.determinacy == .indeterminate)
            #expect(error?.message.contains("an earlier attempt may have taken effect") == true, "\(String(describing: error))")
            #expect(server.requests.count == 4)
            #expect(pauses.pauses.count == 3)
        }
        // So does a refusal that is not retried at all after such an attempt.
        try await Self.withScript([.error(500, "InternalError")], then: .error(403, "AccessDenied")) { server, blob, _ in
            let error = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
            #expect(error?.code == .rejected)
            #expect(error?.determinacy == .indeterminate)
            #expect(server.requests.count == 2)
        }
        // Reads stay determinate whatever their attempts saw.
        try await Self.withScript([], then: .error(500, "InternalError")) { server, blob, pauses in
            let get = await S3BlobClientTests.storageError { _ = try await blob.get("k") }
            #expect(get?.code == .unavailable && get?.determinacy == .determinate)
            let list = await S3BlobClientTests.storageError { _ = try await blob.list(prefix: "") }
            #expect(list?.code == .unavailable && list?.determinacy == .determinate)
            #expect(server.requests.count == 8)
            #expect(pauses.pauses.count == 6)
        }
    }

    @Test(arguments: [
        Refusal(status: 403, code: "AccessDenied"), Refusal(status: 403, code: "SignatureDoesNotMatch"),
        Refusal(status: 400, code: "InvalidArgument"), Refusal(status: 400, code: "BadDigest"),
        Refusal(status: 404, code: "NoSuchBucket"), Refusal(status: 409, code: "OperationAborted"), Refusal(status: 501, code: "NotImplemented"),
    ])
    func refusalsThatWillNotPassAreNotRetried(_ refusal: Refusal) async throws {
        try await Self.withScript([], then: .error(refusal.status, refusal.code)) { server, blob, pauses in
            let error = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
            #expect(error != nil)
            #expect(error?.message.contains("attempts") == false, "\(String(describing: error))")
            #expect(server.requests.count == 1)
            #expect(pauses.pauses.isEmpty)
        }
    }

    @Test func lostConnectionsAreRetried() async throws {
        try await Self.withScript([.drop, .drop]) { server, blob, pauses in
            try await blob.set("k", [1])
            #expect(server.requests == Array(repeating: "PUT /bkt/k", count: 3))
            #expect(pauses.pauses.count == 2)
        }
        try await Self.withScript([], then: .drop) { server, blob, pauses in
            let set = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
            #expect(set?.code == .unavailable)
            #expect(set?.determinacy == .indeterminate, "the server had the whole PUT each time")
            #expect(set?.message.contains("gave up after 4 attempts") == true, "\(String(describing: set))")
            #expect(server.requests.count == 4)
            #expect(pauses.pauses.count == 3)
        }
    }

    @Test func refusedConnectionsAreRetriedAndStayDeterminate() async throws {
        let pauses = PauseRecorder()
        let blob = S3Blob(
            S3Blob.Configuration(
                endpoint: .unix(path: "/tmp/no-such-dir-\(UUID().uuidString)/s3.sock"), bucket: "bkt", credentials: Self.credentials,
                retry: Self.policy),
            sleep: { try await pauses.sleep($0) })
        let error = await S3BlobClientTests.storageError { try await blob.set("k", [1]) }
        #expect(error?.code == .unavailable)
        #expect(error?.determinacy == .determinate, "nothing was ever sent")
        #expect(error?.message.contains("gave up after 4 attempts") == true, "\(String(describing: error))")
        #expect(pauses.pauses.count == 3)
        // After shutdown nothing is retried.
        await blob.shutdown()
        let refused = await S3BlobClientTests.storageError { _ = try await blob.get("k") }
        #expect(refused?.code == .unavailable && refused?.message.contains("shut down") == true)
        #expect(pauses.pauses.count == 3)
    }

    @Test func timedOutAttemptsAreNotRetried() async throws {
        try await Self.withScript([], then: .silence, requestTimeout: .milliseconds(300)) { server, blob, _ in
            let error = await S3BlobClientTests.storageError { _ = try await blob.get("k") }
            #expect(error?.code == .timeout)
            #expect(error?.message.contains("got no complete answer") == true, "\(String(describing: error))")
            // The request that went out was not sent again. (On a loaded machine an earlier
            // attempt may fail to connect within the 300 ms and be retried, which is right:
            // it sent nothing. So the pauses are not counted.)
            #expect(server.requests.count == 1)
        }
    }

    @Test func eachStepOfADeleteIsRetried() async throws {
        let script: [ScriptedS3Server.Reply] = [.error(503, "SlowDown"), .ok([1, 2, 3, 4, 5]), .error(500, "InternalError"), .ok([])]
        try await Self.withScript(script) { server, blob, pauses in
            let size = try await blob.delete("k")
            #expect(size == 5)
            #expect(server.requests == ["HEAD /bkt/k", "HEAD /bkt/k", "DELETE /bkt/k", "DELETE /bkt/k"])
            #expect(pauses.pauses.count == 2)
        }
    }

    @Test func oneAttemptWithoutRetries() async throws {
        try await Self.withScript([.error(503, "SlowDown")], policy: .never) { server, blob, pauses in
            let error = await S3BlobClientTests.storageError { _ = try await blob.get("k") }
            #expect(error?.code == .unavailable)
            #expect(error?.message.contains("attempts") == false)
            #expect(server.requests.count == 1)
            #expect(pauses.pauses.isEmpty)
            let value = try await blob.get("k")
            #expect(value == [])
        }
    }

    @Test func aCancelledPauseEndsTheRequest() async throws {
        try await Self.withScript([], then: .error(503, "SlowDown"), pauses: PauseRecorder(cancels: true)) { server, blob, pauses in
            let error = await S3BlobClientTests.storageError { _ = try await blob.get("k") }
            #expect(error?.code == .unavailable)
            #expect(error?.message.contains("SlowDown") == true)
            #expect(server.requests.count == 1)
            #expect(pauses.pauses.count == 1)
        }
    }

    // MARK: Pure parts

    @Test func pausesDoubleUpToTheCap() {
        let policy = S3Blob.RetryPolicy(initialBackoff: .milliseconds(100), maxBackoff: .seconds(1))
        #expect((1...6).map { policy.step(beforeRetry: $0) } == [100, 200, 400, 800, 1000, 1000].map { Duration.milliseconds($0) })
        #expect(policy.step(beforeRetry: 1_000_000) == .seconds(1), "no overflow however many retries")
        #expect(policy.backoff(beforeRetry: 3, unit: 0) == .milliseconds(200))
        #expect(policy.backoff(beforeRetry: 3, unit: 0.5) == .milliseconds(300))
        #expect(policy.backoff(beforeRetry: 3, unit: 1) == .milliseconds(400))
        #expect(policy.backoff(beforeRetry: 3, unit: 7) == .milliseconds(400), "a unit out of range is clamped")
        // Every draw of the jitter stays within the step.
        var generator = SeededGenerator(seed: 7)
        for retry in 1...20 {
            let pause = policy.backoff(beforeRetry: retry, unit: Double.random(in: 0..<1, using: &generator))
            let step = policy.step(beforeRetry: retry)
            #expect(pause >= step / 2 && pause <= step)
        }
        #expect(S3Blob.RetryPolicy(maxAttempts: 0).maxAttempts == 1)
        #expect(S3Blob.RetryPolicy(initialBackoff: .seconds(2), maxBackoff: .seconds(1)).maxBackoff == .seconds(2))
        #expect(S3Blob.RetryPolicy.never.maxAttempts == 1)
        #expect(S3Blob.Configuration(endpoint: .tcp(host: "h", port: 1), bucket: "b", credentials: Self.credentials).retry == .standard)
    }

    @Test func scheduleStopsAtTheAttemptsOrTheElapsedLimit() {
        var byAttempts = S3RetrySchedule(S3Blob.RetryPolicy(maxAttempts: 3, initialBackoff: .milliseconds(10)))
        var draws = 0
        let unit = { () -> Double in
            draws += 1
            return 0
        }
        #expect(byAttempts.nextPause(elapsed: .zero, unit: unit) == .milliseconds(5))
        #expect(byAttempts.nextPause(elapsed: .seconds(100), unit: unit) == .milliseconds(10))
        #expect(byAttempts.nextPause(elapsed: .zero, unit: unit) == nil)
        #expect(byAttempts.attempts == 3)
        #expect(draws == 2, "no jitter is drawn when no pause is due")

        var byTime = S3RetrySchedule(
            S3Blob.RetryPolicy(maxAttempts: 100, initialBackoff: .seconds(1), maxBackoff: .seconds(60), maxElapsed: .seconds(3)))
        #expect(byTime.nextPause(elapsed: .zero, unit: { 0 }) == .milliseconds(500))
        #expect(byTime.nextPause(elapsed: .milliseconds(600), unit: { 0 }) == .seconds(1))
        // The third pause (2-4 s) would end past 3 s.
        #expect(byTime.nextPause(elapsed: .milliseconds(1700), unit: { 0 }) == nil)
        #expect(byTime.attempts == 3)
    }

    @Test func whatIsRetryable() {
        func answer(_ status: Int, _ code: String? = nil) -> S3HTTPResponse {
            S3HTTPResponse(status: status, headers: [], body: code.map { S3XML.render(S3ErrorDocument(code: $0, message: "m")) } ?? [])
        }
        for status in [429, 500, 502, 503, 504] { #expect(S3RetryRules.isRetryable(answer(status)), "\(status)") }
        for code in ["SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "InternalError", "RequestLimitExceeded"] {
            #expect(S3RetryRules.isRetryable(answer(400, code)), "\(code)")
        }
        for status in [200, 204, 301, 400, 401, 403, 404, 405, 409, 411, 412, 501] {
            #expect(!S3RetryRules.isRetryable(answer(status)), "\(status)")
        }
        for code in ["AccessDenied", "NoSuchKey", "NoSuchBucket", "BadDigest", "SignatureDoesNotMatch", "EntityTooLarge"] {
            #expect(!S3RetryRules.isRetryable(answer(400, code)), "\(code)")
        }
        // A success is never retried, whatever its body says.
        #expect(!S3RetryRules.isRetryable(answer(200, "SlowDown")))
        #expect(S3TransportFailure.notSent("x").isRetryable)
        #expect(S3TransportFailure.lost("x", responseStarted: true).isRetryable)
        #expect(!S3TransportFailure.timedOut.isRetryable)
    }

    @Test func finalErrorsKeepOrLoseDeterminacy() {
        let refused = StorageError.determinate(.unavailable, "PutObject failed with HTTP 503 SlowDown: m")
        #expect(S3Blob.finalError(refused, mayHaveApplied: false, attempts: 1) == refused)
        let after = S3Blob.finalError(refused, mayHaveApplied: false, attempts: 4)
        #expect(after.isDeterminate && after.message.hasSuffix("(gave up after 4 attempts)"))
        let unknown = S3Blob.finalError(refused, mayHaveApplied: true, attempts: 4)
        #expect(!unknown.isDeterminate && unknown.code == .unavailable)
        #expect(unknown.message.contains("an earlier attempt may have taken effect"))
    }
}
