import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import PersistCore
import PersistLocation
import Synchronization

/// A `Blob` stored in an S3 bucket, spoken to over HTTP/1.1 with SigV4 signatures: AWS
/// S3 or any S3-compatible service, over HTTPS or plain HTTP, or our `blob-store`.
///
/// Keys are stored under the configured key prefix and travel percent-encoded with S3's
/// rules, so any key (control characters, `..`, `%`, non-ASCII) is safe. Requests use a
/// small pool of keep-alive connections; each request has a deadline covering the wait
/// for a connection, connecting, sending and the whole answer.
///
/// Determinacy:
/// - Nothing sent (no connection free in time, connect refused or timed out, TLS handshake
///   failed, shut down): determinate.
/// - Sent but no complete answer (timeout, connection lost): indeterminate for `set` and
///   `delete`, which the server may have applied; determinate for `get` and `list`, which
///   change nothing. A request whose reused keep-alive connection turns out to have been
///   closed by the server before any answer is retried once on a fresh connection (PUT and
///   DELETE are idempotent here: `Blob` never overwrites a key with different bytes).
/// - Answers: see the status mapping of the S3 error codes (4xx determinate, throttling
///   determinate, other 5xx indeterminate for writes).
/// - Retries (`RetryPolicy`): throttling, transient server errors and broken connections
///   are retried with capped, jittered exponential backoff; a write any of whose attempts
///   may have taken effect fails indeterminately.
///
/// Transport: HTTPS (TLS 1.2 or later through swift-nio-ssl), or plain HTTP over TCP or a
/// Unix socket. Under TLS a connection carries no request until its handshake is done:
/// the server's certificate must chain to a trusted root (the system's, plus
/// `TLSOptions.additionalTrustRootFiles`) and name the host of the `Host` header (with
/// virtual-host addressing, `bucket.endpoint-host`), which is also sent as SNI. A failed
/// handshake is a determinate error saying why (certificate not trusted, host name
/// mismatch, no TLS there); certificate problems are not retried.
public final class S3Blob: Blob {
    /// Where the S3 server listens.
    public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
        /// A host name or address and a port, over TCP (plain HTTP).
        case tcp(host: String, port: Int)
        /// A host name or address and a port, over TLS on TCP (HTTPS).
        case https(host: String, port: Int)
        /// A Unix domain socket at an absolute path.
        case unix(path: String)

        /// The endpoint as a URL (`http://host:port`, `https://host:port`, `unix:///path`).
        public var description: String {
            switch self {
            case .tcp: "http://\(authority(omittingDefaultPort: false) ?? "")"
            case .https: "https://\(authority(omittingDefaultPort: false) ?? "")"
            case .unix(let path): "unix://\(path)"
            }
        }

        /// `host:port` of a TCP endpoint, an IPv6 literal in brackets, without the port
        /// when `omittingDefaultPort` and it is the scheme's (80, 443); nil for a Unix socket.
        func authority(omittingDefaultPort: Bool) -> String? {
            let (host, port, defaultPort): (String, Int, Int)
            switch self {
            case .tcp(let h, let p): (host, port, defaultPort) = (h, p, 80)
            case .https(let h, let p): (host, port, defaultPort) = (h, p, 443)
            case .unix: return nil
            }
            let name = host.contains(":") ? "[\(host)]" : host
            return omittingDefaultPort && port == defaultPort ? name : "\(name):\(port)"
        }
    }

    /// How the bucket is named in requests.
    public enum Addressing: Hashable, Sendable {
        /// `Host: endpoint`, `/bucket/key`.
        case pathStyle
        /// `Host: bucket.endpoint`, `/key`.
        case virtualHost
    }

    /// How a PutObject body is protected against damage between this client and the
    /// stored object. Either way the server refuses a damaged body (`BadDigest` or
    /// `XAmzContentSHA256Mismatch`, a determinate `corruption` error) and stores nothing.
    public enum PayloadIntegrity: Hashable, Sendable {
        /// `x-amz-content-sha256: UNSIGNED-PAYLOAD` and `x-amz-checksum-crc32c` (base64 of
        /// the big-endian CRC32C of the body), one fast pass over the body. The signature
        /// covers the checksum header, so the checksum cannot be replaced, and CRC32C
        /// detects accidental damage (any burst of up to 32 bits, and all but about one in
        /// 4 billion other corruptions); it is not a cryptographic hash, so it does not stop
        /// someone who can rewrite traffic from substituting a body with the same CRC. S3
        /// accepts this form (the AWS SDKs send it over HTTPS, where TLS rules that out), as
        /// does our blob-store, whose clients reach it over loopback, a Unix socket or a
        /// private network.
        case crc32c
        /// The body's SHA-256 as the signed `x-amz-content-sha256`, plus `Content-MD5`: the
        /// body is bound to the signature. About four times the client CPU of `.crc32c`
        /// (SHA-256 and MD5 over every byte instead of CRC32C), and a SHA-256 more on the
        /// server; for plain HTTP over a network that is not trusted, or services that
        /// demand `Content-MD5` or a signed payload.
        case sha256AndMD5
    }

    /// Everything an `S3Blob` needs to reach its bucket.
    public struct Configuration: Sendable {
        /// Where the server listens.
        public var endpoint: Endpoint
        /// The bucket holding the objects.
        public var bucket: String
        /// Prepended to every key; a non-empty prefix without a trailing `/` gets one.
        public var prefix: String
        /// The region requests are signed for (any value our blob-store accepts; S3 wants the bucket's).
        public var region: String
        /// The key pair every request is signed with.
        public var credentials: S3Credentials
        /// Path-style or virtual-host addressing of the bucket.
        public var addressing: Addressing
        /// The `Host` header; nil derives it from the endpoint (and the bucket, for
        /// virtual-host addressing). A Unix socket endpoint uses `localhost`. Over HTTPS its
        /// host is also the name the server's certificate must carry.
        public var hostHeader: String?
        /// Connections kept open at most; requests beyond wait for one.
        public var maxConnections: Int
        /// The longest a new connection may take (within the request's budget).
        public var connectTimeout: Duration
        /// The whole budget of one request, from asking for a connection to the last byte
        /// of the answer.
        public var requestTimeout: Duration
        /// `max-keys` of each ListObjectsV2 page; nil lets the server choose (1000 on S3).
        public var listPageSize: Int?
        /// How PutObject bodies are protected in transit.
        public var payloadIntegrity: PayloadIntegrity
        /// When refused or failed requests are sent again.
        public var retry: RetryPolicy
        /// How an `https` endpoint's certificate is checked (unused otherwise).
        public var tls: TLSOptions

        /// A configuration; `maxConnections` is at least 1.
        public init(
            endpoint: Endpoint, bucket: String, prefix: String = "", region: String = "us-east-1", credentials: S3Credentials,
            addressing: Addressing = .pathStyle, hostHeader: String? = nil, maxConnections: Int = 8,
            connectTimeout: Duration = .seconds(5), requestTimeout: Duration = .seconds(30), listPageSize: Int? = nil,
            payloadIntegrity: PayloadIntegrity = .crc32c, retry: RetryPolicy = .standard, tls: TLSOptions = TLSOptions()
        ) {
            self.endpoint = endpoint
            self.bucket = bucket
            self.prefix = prefix
            self.region = region
            self.credentials = credentials
            self.addressing = addressing
            self.hostHeader = hostHeader
            self.maxConnections = max(1, maxConnections)
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.listPageSize = listPageSize
            self.payloadIntegrity = payloadIntegrity
            self.retry = retry
            self.tls = tls
        }

        /// The configuration of a parsed `s3://` location. An `https://` or `http://`
        /// endpoint takes port 443 or 80 when it names none; without an endpoint the bucket
        /// is reached at AWS's regional endpoint over HTTPS (`bucket.s3.REGION.amazonaws.com`,
        /// or `s3.REGION.amazonaws.com/bucket` with path style, which a bucket name with dots
        /// needs, as AWS's certificates cover one label before `.s3.`; `LocationURL` makes
        /// it the default for such names). Throws
        /// `invalidArgument` for an endpoint this client cannot use.
        public init(location: S3Location, credentials: S3Credentials) throws(StorageError) {
            let region = location.region ?? "us-east-1"
            let addressing: Addressing = location.pathStyle ? .pathStyle : .virtualHost
            let tls = TLSOptions(additionalTrustRootFiles: location.caFile.map { [$0] } ?? [], verifyCertificates: location.tlsVerify)
            guard let text = location.endpoint else {
                // Virtual-host style connects to the bucket's own host name, as AWS's SDKs do.
                let host = location.pathStyle ? "s3.\(region).amazonaws.com" : "\(location.bucket).s3.\(region).amazonaws.com"
                self.init(
                    endpoint: .https(host: host, port: 443), bucket: location.bucket, prefix: location.prefix, region: region,
                    credentials: credentials, addressing: addressing, hostHeader: host, tls: tls)
                return
            }
            guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased() else {
                throw .determinate(.invalidArgument, "unreadable S3 endpoint \(text)")
            }
            let endpoint: Endpoint
            switch scheme {
            case "http", "https":
                guard let host = url.host, !host.isEmpty else { throw .determinate(.invalidArgument, "S3 endpoint \(text) has no host") }
                guard url.path.isEmpty || url.path == "/", url.query == nil else {
                    throw .determinate(.invalidArgument, "S3 endpoint \(text) has a path or query; only \(scheme)://host[:port] is supported")
                }
                // URLComponents keeps an IPv6 literal's brackets.
                let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
                endpoint = scheme == "https" ? .https(host: bare, port: url.port ?? 443) : .tcp(host: bare, port: url.port ?? 80)
            case "unix":
                guard url.path.hasPrefix("/") else { throw .determinate(.invalidArgument, "S3 endpoint \(text) needs an absolute socket path") }
                endpoint = .unix(path: url.path)
            default:
                throw .determinate(.invalidArgument, "S3 endpoint \(text): only https://, http:// and unix:// are supported")
            }
            self.init(
                endpoint: endpoint, bucket: location.bucket, prefix: location.prefix, region: region,
                credentials: credentials, addressing: addressing, tls: tls)
        }

        /// The `Host` header requests carry.
        public var effectiveHostHeader: String {
            if let hostHeader { return hostHeader }
            let authority = endpoint.authority(omittingDefaultPort: true) ?? "localhost"
            return addressing == .virtualHost ? "\(bucket).\(authority)" : authority
        }

        /// The name an `https` endpoint's certificate must carry and SNI names: the host of
        /// `effectiveHostHeader`, or nil when that is an IP address (matched against the
        /// certificate's IP addresses, without SNI).
        var tlsServerName: String? { S3TLS.serverName(hostHeader: effectiveHostHeader) }

        /// The prefix as stored: empty, or ending in `/`.
        var keyPrefix: String { prefix.isEmpty || prefix.hasSuffix("/") ? prefix : prefix + "/" }
    }

    /// The configuration this client was made with.
    public let configuration: Configuration
    let builder: S3RequestBuilder
    let group: any EventLoopGroup
    let logger: Logger
    let now: @Sendable () -> Date
    let sleep: @Sendable (Duration) async throws -> Void
    /// The TLS context and server name of an `https` endpoint (or why there are none),
    /// made and checked once.
    private let tls: Result<S3TLS.Setup, StorageError>?
    /// The seeded source of the retry jitter, when the policy has a seed.
    private let jitter: Mutex<SeededGenerator?>
    private let pool: Mutex<S3ConnectionPoolState<S3HTTPConnection, S3LeaseWaiter>>
    private let nextWaiterID = Atomic<Int>(0)

    /// A client for `configuration`. No connection is made until the first request; for an
    /// `https` endpoint the TLS context (trust roots read from their files) is made and the
    /// server name checked here, and when either fails every request fails with the
    /// reason, a determinate `invalidArgument` (the throwing
    /// `init(location:credentials:group:logger:)` throws it at once). `now` is the clock
    /// requests are signed with; `sleep` waits out the pauses between retries (tests pass
    /// one that only records them).
    public init(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "persist.s3-blob"), now: @escaping @Sendable () -> Date = { Date() },
        sleep: @escaping @Sendable (Duration) async throws -> Void = { try await Task.sleep(for: $0) }
    ) {
        self.configuration = configuration
        self.builder = S3RequestBuilder(
            bucket: configuration.bucket, region: configuration.region, credentials: configuration.credentials,
            pathStyle: configuration.addressing == .pathStyle, host: configuration.effectiveHostHeader,
            payloadIntegrity: configuration.payloadIntegrity)
        self.group = group
        self.logger = logger
        self.now = now
        self.sleep = sleep
        if case .https = configuration.endpoint {
            do throws(StorageError) {
                tls = .success(try S3TLS.setup(configuration))
            } catch {
                tls = .failure(error)
            }
        } else {
            tls = nil
        }
        self.jitter = Mutex(configuration.retry.jitterSeed.map { SeededGenerator(seed: $0) })
        self.pool = Mutex(S3ConnectionPoolState(limit: configuration.maxConnections))
    }

    /// A client for a parsed `s3://` location (see `Configuration.init(location:credentials:)`).
    /// Throws as well when the TLS context cannot be made (a `ca_file` that is missing or
    /// holds no certificate) or the server name cannot be sent in SNI (a bucket name too
    /// long for virtual-host addressing).
    public convenience init(
        location: S3Location, credentials: S3Credentials, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "persist.s3-blob")
    ) throws(StorageError) {
        self.init(try Configuration(location: location, credentials: credentials), group: group, logger: logger)
        if case .failure(let error) = tls { throw error }
    }

    /// Closes idle connections and refuses new requests (determinately). Requests in
    /// flight finish or fail on their own; their connections close when released.
    public func shutdown() async {
        let refused = pool.withLock { $0.shutDown() }
        for connection in refused.idle { connection.close() }
        for waiter in refused.waiters { waiter.resume(.failed(.determinate(.unavailable, "the S3 client was shut down"))) }
    }

    // MARK: Blob

    /// GetObject; nil for 404.
    public func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        let operation = S3Operation.getObject(key: configuration.keyPrefix + key)
        return try await perform(operation) { response throws(StorageError) in
            try S3ResponseMapping.object(response, operation: operation)
        }
    }

    /// PutObject with the body's checksum (see `PayloadIntegrity`), so a damaged body is
    /// refused rather than stored.
    public func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        let operation = S3Operation.putObject(key: configuration.keyPrefix + key, body: value)
        try await perform(operation) { response throws(StorageError) in
            try S3ResponseMapping.done(response, operation: operation)
        }
    }

    /// HeadObject for the size, then DeleteObject. The size is best effort: another
    /// writer may replace or remove the object between the two calls, and S3 itself does
    /// not say what a delete removed.
    public func delete(_ key: String) async throws(StorageError) -> Int? {
        let name = configuration.keyPrefix + key
        let head = S3Operation.headObject(key: name)
        let size = try await perform(head) { response throws(StorageError) in
            try S3ResponseMapping.size(response, operation: head)
        }
        let operation = S3Operation.deleteObject(key: name)
        try await perform(operation) { response throws(StorageError) in
            try S3ResponseMapping.done(response, operation: operation)
        }
        return size
    }

    /// Every page of ListObjectsV2 (with `encoding-type=url`, so any key survives the
    /// XML), in ascending byte order of the keys.
    public func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        let stored = configuration.keyPrefix
        var result: [BlobMetadata] = []
        var token: String?
        var seenTokens: Set<String> = []
        repeat {
            let operation = S3Operation.listObjectsV2(prefix: stored + prefix, continuationToken: token, maxKeys: configuration.listPageSize)
            let page = try await perform(operation) { response throws(StorageError) in
                try S3ResponseMapping.listing(response, operation: operation)
            }
            for object in page.contents where object.key.utf8.starts(with: stored.utf8) {
                result.append(BlobMetadata(key: String(decoding: object.key.utf8.dropFirst(stored.utf8.count), as: UTF8.self), sizeBytes: object.size))
            }
            token = nil
            if page.isTruncated {
                guard let next = page.nextContinuationToken, seenTokens.insert(next).inserted else {
                    throw .determinate(.io, "ListObjectsV2 said the listing is truncated but gave no new continuation token")
                }
                token = next
            }
        } while token != nil
        result.sort { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
        return result
    }

    // MARK: Requests

    /// Sends `operation`, again after a pause while it fails for a passing reason (see
    /// `RetryPolicy`), and returns what `interpret` makes of the final answer.
    ///
    /// An error is made indeterminate when an earlier attempt of a write may have taken
    /// effect: the refusal of a later attempt says nothing about the earlier one.
    func perform<T>(
        _ operation: S3Operation, _ interpret: (S3HTTPResponse) throws(StorageError) -> T
    ) async throws(StorageError) -> T {
        let started = ContinuousClock.now
        var schedule = S3RetrySchedule(configuration.retry)
        var mayHaveApplied = false
        while true {
            let failure: StorageError
            switch await attempt(operation) {
            case .answered(let response):
                guard S3RetryRules.isRetryable(response) else {
                    do {
                        return try interpret(response)
                    } catch {
                        throw Self.finalError(error, mayHaveApplied: mayHaveApplied, attempts: schedule.attempts)
                    }
                }
                failure = S3ResponseMapping.error(response, operation: operation)
            case .failed(let error, let retryable):
                guard retryable else { throw Self.finalError(error, mayHaveApplied: mayHaveApplied, attempts: schedule.attempts) }
                failure = error
            }
            mayHaveApplied = mayHaveApplied || !failure.isDeterminate
            let tried = schedule.attempts
            guard let pause = schedule.nextPause(elapsed: ContinuousClock.now - started, unit: jitterUnit) else {
                throw Self.finalError(failure, mayHaveApplied: mayHaveApplied, attempts: tried)
            }
            logger.debug(
                "retrying an S3 request",
                metadata: ["operation": "\(operation.name)", "attempt": "\(tried)", "pause": "\(pause)", "failure": "\(failure)"])
            do {
                try await sleep(pause)
            } catch {
                throw Self.finalError(failure, mayHaveApplied: mayHaveApplied, attempts: tried)
            }
        }
    }

    /// The error a request ends with after `attempts` attempts.
    static func finalError(_ error: StorageError, mayHaveApplied: Bool, attempts: Int) -> StorageError {
        var result = error
        if mayHaveApplied { result.determinacy = .indeterminate }
        if attempts > 1 {
            result.message += " (gave up after \(attempts) attempts"
            result.message += mayHaveApplied && error.isDeterminate ? "; an earlier attempt may have taken effect)" : ")"
        }
        return result
    }

    /// A number in [0, 1) for the jitter of the next pause.
    private func jitterUnit() -> Double {
        jitter.withLock { generator in
            guard var seeded = generator else { return Double.random(in: 0..<1) }
            let unit = Double.random(in: 0..<1, using: &seeded)
            generator = seeded
            return unit
        }
    }

    /// How one attempt ended.
    enum Attempt: Sendable {
        /// The server answered (with any status).
        case answered(S3HTTPResponse)
        /// No complete answer; `retryable` says whether another attempt may help.
        case failed(StorageError, retryable: Bool)
    }

    /// Sends `operation` once, freshly signed, with the whole `requestTimeout`. A request
    /// whose reused keep-alive connection turns out to be stale goes once more on a fresh
    /// connection within the same attempt.
    func attempt(_ operation: S3Operation) async -> Attempt {
        await attempt(builder.request(operation, date: now()), operation: operation)
    }

    /// Sends `request` (made for `operation`, which names it in messages and says whether
    /// it writes) once, as `attempt(_:)` does.
    func attempt(_ request: S3HTTPRequest, operation: S3Operation) async -> Attempt {
        let timeout = configuration.requestTimeout
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        var retried = false
        while true {
            let connection: S3HTTPConnection
            let reused: Bool
            switch await lease(deadline: deadline, operation: operation) {
            case .success(let leased): (connection, reused) = leased
            case .failure(let failure): return .failed(failure.error, retryable: failure.retryable)
            }
            switch await connection.execute(request, deadline: deadline) {
            case .success(let response):
                release(connection, reusable: response.keepAlive && connection.isUsable)
                return .answered(response)
            case .failure(let failure):
                release(connection, reusable: false)
                if reused, !retried, failure.looksStale, NIODeadline.now() < deadline {
                    retried = true
                    logger.debug("retrying on a fresh connection", metadata: ["operation": "\(operation.name)", "failure": "\(failure)"])
                    continue
                }
                return .failed(
                    Self.storageError(failure, operation: operation, timeout: timeout, endpoint: configuration.endpoint),
                    retryable: failure.isRetryable)
            }
        }
    }

    static func storageError(_ failure: S3TransportFailure, operation: S3Operation, timeout: Duration, endpoint: Endpoint) -> StorageError {
        switch failure {
        case .notSent(let why):
            return .determinate(.unavailable, "\(operation.name) not sent to \(endpoint): \(why)")
        case .lost(let why, _):
            let message = "\(operation.name) to \(endpoint) lost its answer: \(why)"
            return operation.isMutation ? .indeterminate(.unavailable, message) : .determinate(.unavailable, message)
        case .timedOut:
            let message = "\(operation.name) to \(endpoint) got no complete answer within \(timeout)"
            return operation.isMutation ? .indeterminate(.timeout, message) : .determinate(.timeout, message)
        }
    }

    /// Why no connection could be had for an attempt; `retryable` is false when waiting
    /// again cannot help (the client was shut down, or the attempt's time ran out waiting
    /// for a free connection).
    struct LeaseFailure: Error {
        var error: StorageError
        var retryable: Bool
    }

    /// A connection for one request: an idle one, a new one, or the next one released.
    /// `reused` says whether it carried requests before.
    private func lease(deadline: NIODeadline, operation: S3Operation) async -> Result<(S3HTTPConnection, reused: Bool), LeaseFailure> {
        let id = nextWaiterID.wrappingAdd(1, ordering: .relaxed).newValue
        let outcome = await withCheckedContinuation { (continuation: CheckedContinuation<S3LeaseOutcome, Never>) in
            let waiter = S3LeaseWaiter(continuation)
            let leased = pool.withLock { $0.lease(id: id, waiter: waiter, isUsable: { $0.isUsable }) }
            for connection in leased.discarded { connection.close() }
            switch leased.0 {
            case .use(let connection): waiter.resume(.connection(connection))
            case .connect: waiter.resume(.connect)
            case .shutDown: waiter.resume(.failed(.determinate(.unavailable, "the S3 client was shut down")))
            case .wait:
                let message = "\(operation.name): no S3 connection became free within \(configuration.requestTimeout)"
                let timer = group.any().scheduleTask(deadline: deadline) { [self] in
                    guard let expired = pool.withLock({ $0.removeWaiter(id: id) }) else { return }
                    expired.resume(.failed(.determinate(.timeout, message)))
                }
                waiter.attach(timer)
            }
        }
        switch outcome {
        case .connection(let connection):
            return .success((connection, true))
        case .failed(let error):
            return .failure(LeaseFailure(error: error, retryable: false))
        case .connect:
            do {
                return .success((try await connect(deadline: deadline), false))
            } catch {
                carryOut(pool.withLock { $0.connectFailed() })
                // A failed connect sent nothing; a refused or timed-out one may succeed once
                // the server is back, an untrusted certificate will not.
                return .failure(LeaseFailure(error: error.error, retryable: error.retryable && !pool.withLock { $0.isShutDown }))
            }
        }
    }

    private func release(_ connection: S3HTTPConnection, reusable: Bool) {
        carryOut(pool.withLock { $0.release(connection, reusable: reusable) })
    }

    private func carryOut(_ handoff: S3ConnectionPoolState<S3HTTPConnection, S3LeaseWaiter>.Handoff) {
        switch handoff {
        case .none: break
        case .close(let connection): connection.close()
        case .give(let connection, let waiter): waiter.resume(.connection(connection))
        case .connect(let waiter, let old):
            old?.close()
            waiter.resume(.connect)
        }
    }

    /// Opens a connection with an HTTP/1.1 client pipeline, behind TLS for an `https`
    /// endpoint, whose handshake must finish (within the connect timeout) before the
    /// connection is returned. Every failure is determinate: no request was written.
    private func connect(deadline: NIODeadline) async throws(LeaseFailure) -> S3HTTPConnection {
        let endpoint = configuration.endpoint
        let started = NIODeadline.now()
        let remaining = deadline - started
        guard remaining > .zero else {
            throw LeaseFailure(error: .determinate(.timeout, "no time left to connect to \(endpoint)"), retryable: true)
        }
        let connectTimeout = min(TimeAmount(configuration.connectTimeout), remaining)
        let tls: S3TLS.Setup?
        switch self.tls {
        case .success(let setup)?: tls = setup
        case .failure(let error)?: throw LeaseFailure(error: error, retryable: false)
        case nil: tls = nil
        }
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
        let handshakeDeadline = started + connectTimeout
        let initialize: @Sendable (any Channel) -> EventLoopFuture<(S3HTTPConnection, EventLoopFuture<Void>?)> = { [tls] channel in
            channel.eventLoop.makeCompletedFuture {
                var handshake: EventLoopFuture<Void>?
                if let tls {
                    // The server name was checked when the client was made, so this does not
                    // throw for it.
                    try channel.pipeline.syncOperations.addHandler(NIOSSLClientHandler(context: tls.context, serverHostname: tls.serverName))
                    // Once added, the handshake handler completes the promise in every case;
                    // until then, nothing would.
                    let promise = channel.eventLoop.makePromise(of: Void.self)
                    do {
                        try channel.pipeline.syncOperations.addHandler(S3TLSHandshakeHandler(deadline: handshakeDeadline, promise: promise))
                    } catch {
                        promise.fail(error)
                        throw error
                    }
                    handshake = promise.futureResult
                }
                let handler = S3HTTPClientHandler()
                try channel.pipeline.syncOperations.addHTTPClientHandlers()
                try channel.pipeline.syncOperations.addHandler(handler)
                return (S3HTTPConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop)), handshake)
            }
        }
        let connection: S3HTTPConnection
        let handshake: EventLoopFuture<Void>?
        do {
            switch endpoint {
            case .tcp(let host, let port), .https(let host, let port):
                // An IP address skips NIO's resolver, which runs on a shared Dispatch queue.
                if let literal = try? SocketAddress(ipAddress: host, port: port) {
                    (connection, handshake) = try await bootstrap.connect(to: literal, channelInitializer: initialize)
                } else {
                    (connection, handshake) = try await bootstrap.connect(host: host, port: port, channelInitializer: initialize)
                }
            case .unix(let path):
                (connection, handshake) = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: initialize)
            }
        } catch {
            if let channelError = error as? ChannelError, case .connectTimeout = channelError {
                throw LeaseFailure(error: .determinate(.timeout, "connecting to \(endpoint) timed out"), retryable: true)
            }
            throw LeaseFailure(error: .determinate(.unavailable, "cannot connect to \(endpoint): \(error)"), retryable: true)
        }
        if let handshake, let tls {
            do {
                try await handshake.get()
            } catch {
                connection.close()
                let failure = S3TLS.failure(error, endpoint: "\(endpoint)", name: tls.certificateName)
                logger.debug("TLS handshake failed", metadata: ["endpoint": "\(endpoint)", "error": "\(failure.error)"])
                throw LeaseFailure(error: failure.error, retryable: failure.retryable)
            }
        }
        logger.debug("connected to S3 endpoint", metadata: ["endpoint": "\(endpoint)"])
        return connection
    }
}

/// What a lease resolves to.
enum S3LeaseOutcome: Sendable {
    case connection(S3HTTPConnection)
    case connect
    case failed(StorageError)
}

/// A request waiting for a connection: resumed exactly once, by whoever removes it from
/// the pool (a release or its deadline); a deadline timer is cancelled on resumption.
final class S3LeaseWaiter: Sendable {
    private let continuation: CheckedContinuation<S3LeaseOutcome, Never>
    private let state = Mutex<(timer: Scheduled<Void>?, resumed: Bool)>((nil, false))

    init(_ continuation: CheckedContinuation<S3LeaseOutcome, Never>) {
        self.continuation = continuation
    }

    func attach(_ timer: Scheduled<Void>) {
        let alreadyResumed = state.withLock { s -> Bool in
            if !s.resumed { s.timer = timer }
            return s.resumed
        }
        if alreadyResumed { timer.cancel() }
    }

    func resume(_ outcome: S3LeaseOutcome) {
        let timer = state.withLock { s -> Scheduled<Void>? in
            s.resumed = true
            let t = s.timer
            s.timer = nil
            return t
        }
        timer?.cancel()
        continuation.resume(returning: outcome)
    }
}

extension TimeAmount {
    /// The nearest whole nanoseconds of a `Duration`, saturating.
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        let (whole, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        let nanos = overflow ? (seconds < 0 ? Int64.min : Int64.max) : whole.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
        self = .nanoseconds(nanos)
    }
}
