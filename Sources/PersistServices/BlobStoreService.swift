import Foundation
import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import PersistS3
import ServiceLifecycle

/// The blob-store server: objects in `FileBlob` buckets on local disk, served over a
/// subset of the S3 REST API (path-style: PutObject, GetObject with ranges, HeadObject,
/// DeleteObject, ListObjectsV2, CreateBucket, HeadBucket), with SigV4 authentication.
///
/// Contract:
/// - A PutObject is answered 200 only after `FileBlob.set` returned, so the object (file
///   and directory entry) is on disk before the client hears of success.
/// - Bad input never stops the server: a malformed request gets an S3 error (or, when
///   the HTTP framing itself is broken, a 400 and a closed connection), and every other
///   connection is unaffected. Each connection is served by its own task.
/// - On graceful shutdown it stops accepting, lets requests in flight finish, closes idle
///   connections, and returns.
///
/// Metrics (swift-metrics): `blob_store_requests_total{op,status}`,
/// `blob_store_request_duration_seconds{op}`, `blob_store_errors_total{code}`,
/// `blob_store_received_bytes_total`, `blob_store_sent_bytes_total`.
public struct BlobStoreService: Service {
    /// What this server was started with.
    public let configuration: BlobStoreConfiguration
    let group: any EventLoopGroup
    let logger: Logger
    let metrics: BlobStoreMetrics
    let now: @Sendable () -> Date
    let onListening: @Sendable ([ListenAddress]) -> Void

    /// Bodies of refused requests up to this size are read and dropped so that the
    /// connection can be reused; larger ones close the connection instead.
    static let drainLimit = 8 << 20
    /// Objects are read and sent in pieces of this size, so that a slow reader holds back
    /// the reads and an object is never in memory whole.
    static let writeChunk = 1 << 20

    /// - Parameters:
    ///   - onListening: called once every listener is bound, with the addresses really
    ///     listened on (port 0 resolved), in the order of `configuration.listen`.
    ///   - now: the clock SigV4 checks request times against.
    public init(
        configuration: BlobStoreConfiguration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger, metricsFactory: any MetricsFactory = MetricsSystem.factory,
        now: @escaping @Sendable () -> Date = { Date() },
        onListening: @escaping @Sendable ([ListenAddress]) -> Void = { _ in }
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.metrics = BlobStoreMetrics(factory: metricsFactory)
        self.now = now
        self.onListening = onListening
    }

    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    /// Sets up an accepted connection's pipeline (HTTP codec, idle timeout) and tracks it.
    ///
    /// Reading stays off until the serving task wraps the channel in its async channel:
    /// a listener hands out plain channels, because one that closes can drop connections
    /// it accepted a moment before, and a dropped async channel is a programming error in
    /// NIO (a dropped plain channel is merely closed, by the drain or at the end of `run`).
    static func prepare(_ channel: any Channel, idleTimeout: TimeAmount?, connections: BlobStoreConnections) throws {
        let pipeline = channel.pipeline.syncOperations
        try pipeline.configureHTTPServerPipeline(withPipeliningAssistance: true, withErrorHandling: true)
        if let idleTimeout {
            try pipeline.addHandler(IdleStateHandler(readTimeout: idleTimeout))
            try pipeline.addHandler(BlobStoreIdleCloser())
        }
        try channel.syncOptions?.setOption(ChannelOptions.autoRead, value: false)
        connections.register(channel)
        channel.closeFuture.whenComplete { _ in connections.unregister(channel) }
    }

    /// Opens the buckets, binds every listener, and serves until graceful shutdown (or
    /// cancellation). Throws if the data directory or a listener cannot be set up.
    public func run() async throws {
        guard !configuration.listen.isEmpty else { throw BlobStoreSetupError("no listen address given") }
        let buckets = try BlobStoreBuckets(dataDirectory: configuration.dataDirectory, creating: configuration.buckets)
        let handler = BlobStoreHandler(configuration: configuration, buckets: buckets, etags: BlobStoreETagCache(), now: now)
        let idleTimeout = configuration.idleTimeout.map { TimeAmount($0) }

        let connections = BlobStoreConnections()
        var bindings: [NIOAsyncChannel<any Channel, Never>] = []
        do {
            for address in configuration.listen {
                bindings.append(
                    try await Listener.bind(address, group: group) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try Self.prepare(channel, idleTimeout: idleTimeout, connections: connections)
                            return channel
                        }
                    })
            }
        } catch {
            for server in bindings { try? await server.channel.close() }
            throw error
        }
        let servers = bindings
        let bound = zip(servers, configuration.listen).map { Listener.boundAddress(of: $0.channel, requested: $1) }
        logger.info(
            "blob-store listening",
            metadata: [
                "addresses": "\(bound.map(\.description).joined(separator: " "))", "buckets": "\(buckets.names.joined(separator: ","))",
                "data_dir": "\(configuration.dataDirectory)",
            ])
        onListening(bound)

        let server = BlobStoreConnectionServer(handler: handler, metrics: metrics, logger: logger, connections: connections, now: now)
        await withGracefulShutdownHandler {
            await withDiscardingTaskGroup { listeners in
                for listener in servers {
                    listeners.addTask {
                        do {
                            try await listener.executeThenClose { inbound in
                                try await withThrowingDiscardingTaskGroup { perConnection in
                                    for try await connection in inbound {
                                        perConnection.addTask { await server.serve(connection) }
                                    }
                                }
                            }
                        } catch {
                            logger.debug("listener closed", metadata: ["error": "\(error)"])
                        }
                    }
                }
            }
        } onGracefulShutdown: {
            logger.info("blob-store draining: no new connections, finishing requests in flight")
            for listener in servers { listener.channel.close(promise: nil) }
            connections.drain()
        }
        // Connections accepted as a listener closed may never have reached a task.
        connections.closeAll()
        for address in bound {
            if case .unix(let path) = address { unlink(path) }
        }
        logger.info("blob-store stopped")
    }
}

/// A failure to start a blob-store.
public struct BlobStoreSetupError: Error, CustomStringConvertible {
    /// What is wrong with the setup.
    public let description: String
    init(_ description: String) { self.description = description }
}

/// Serves HTTP/1.1 connections: reads request heads and bodies from the async channel,
/// has `BlobStoreHandler` decide and run them, and writes the answers. The only part of
/// the blob-store that touches NIO types.
struct BlobStoreConnectionServer: Sendable {
    let handler: BlobStoreHandler
    let metrics: BlobStoreMetrics
    let logger: Logger
    let connections: BlobStoreConnections
    let now: @Sendable () -> Date

    typealias Parts = NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    typealias Writer = NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>

    func serve(_ channel: any Channel) async {
        do {
            let connection = try await channel.eventLoop.submit {
                let connection = try BlobStoreService.Connection(wrappingChannelSynchronously: channel)
                try channel.syncOptions?.setOption(ChannelOptions.autoRead, value: true)
                return connection
            }.get()
            try await connection.executeThenClose { inbound, outbound in
                var parts = inbound.makeAsyncIterator()
                while let part = try await parts.next() {
                    // Anything but a head here is the leftover of a request already
                    // answered (the HTTP layer guarantees heads come first).
                    guard case .head(let head) = part else { continue }
                    guard connections.beginRequest(on: channel) else { return }
                    let reusable = try await respond(to: head, parts: &parts, outbound: outbound)
                    guard connections.endRequest(on: channel), reusable else { return }
                }
            }
        } catch {
            channel.close(promise: nil)
            logger.debug("connection closed", metadata: ["error": "\(error)"])
        }
    }

    /// What became of a PutObject body.
    enum BodyOutcome {
        case received(object: [UInt8], md5: BlobStoreObjectMD5)
        /// Refused; `reusable` says whether the request was read to its end.
        case refused(BlobStoreError, reusable: Bool)
        /// The client went away mid-body.
        case disconnected
    }

    /// Answers one request. Returns whether the connection may carry another.
    func respond(to head: HTTPRequestHead, parts: inout Parts, outbound: Writer) async throws -> Bool {
        let started = ContinuousClock.now
        let requestID = Self.makeRequestID()
        let isHead = head.method == .HEAD
        let method = head.method.rawValue
        let headers = head.headers.map { (name: $0.name, value: $0.value) }
        var op = "unknown"
        var keepAlive = head.isKeepAlive

        let response: BlobStoreResponse
        let errorCode: String?
        switch Result(catching: { () throws(BlobStoreError) in try handler.prepare(method: method, target: head.uri, headers: headers) }) {
        case .failure(let error):
            keepAlive = try await skipBody(of: head, parts: &parts) && keepAlive
            response = .error(error, requestID: requestID, head: isHead)
            errorCode = error.code
        case .success(let request):
            op = request.operation.name
            var body: (object: [UInt8], md5: BlobStoreObjectMD5)?
            var refusal: BlobStoreError?
            if let plan = request.payload {
                if Self.expectsContinue(head) {
                    try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
                }
                switch try await receiveBody(plan, parts: &parts) {
                case .received(let object, let md5):
                    body = (object, md5)
                case .refused(let error, let reusable):
                    refusal = error
                    keepAlive = keepAlive && reusable
                case .disconnected:
                    // Nothing was stored; nobody is left to answer.
                    metrics.finished(op: op, status: 499, errorCode: nil, duration: ContinuousClock.now - started)
                    logger.debug("client disconnected mid-body", metadata: ["request_id": "\(requestID)", "op": "\(op)"])
                    return false
                }
            } else {
                keepAlive = try await skipBody(of: head, parts: &parts) && keepAlive
            }
            if let refusal {
                response = .error(refusal, requestID: requestID, key: Self.key(of: request.operation), head: isHead)
                errorCode = refusal.code
            } else {
                do throws(BlobStoreError) {
                    response = try await handler.execute(request, body: body, rangeHeader: head.headers.first(name: "range"), requestID: requestID)
                    errorCode = response.errorCode
                } catch {
                    response = .error(error, requestID: requestID, key: Self.key(of: request.operation), head: isHead)
                    errorCode = error.code
                    if error.status >= 500 {
                        logger.error("request failed", metadata: ["request_id": "\(requestID)", "op": "\(op)", "error": "\(error)"])
                    }
                }
            }
        }

        var final = response
        final.close = final.close || !keepAlive || connections.isDraining
        try await write(final, requestID: requestID, version: head.version, outbound: outbound)
        metrics.finished(op: op, status: final.status, errorCode: errorCode, duration: ContinuousClock.now - started)
        logger.debug(
            "request",
            metadata: ["request_id": "\(requestID)", "method": "\(method)", "op": "\(op)", "status": "\(final.status)"])
        return !final.close
    }

    /// Reads a PutObject body through a `BlobStoreBodyReceiver`. The MD5 of a plain body
    /// not checked against a `Content-MD5` is computed on another thread meanwhile.
    func receiveBody(_ plan: BlobStorePayloadPlan, parts: inout Parts) async throws -> BodyOutcome {
        var receiver = BlobStoreBodyReceiver(plan: plan, maxObjectSize: handler.configuration.maxObjectSize)
        let background = plan.chunked || plan.expectedMD5 != nil ? nil : BlobStoreBackgroundMD5()
        while let part = try await parts.next() {
            switch part {
            case .head:
                return .refused(.incompleteBody("A new request began before the body ended."), reusable: false)
            case .body(let buffer):
                metrics.receivedBytes.increment(by: buffer.readableBytes)
                var failure: BlobStoreError?
                buffer.withUnsafeReadableBytes { raw in
                    do throws(BlobStoreError) {
                        try receiver.receive(raw)
                    } catch {
                        failure = error
                    }
                }
                // The rest of the body is not worth reading: close after answering.
                if let failure { return .refused(failure, reusable: false) }
                background?.update(buffer)
            case .end:
                do throws(BlobStoreError) {
                    let received = try receiver.finish()
                    let md5: BlobStoreObjectMD5 =
                        if let digest = received.md5 { .known(digest) } else if let background { .pending(background) } else { .unknown }
                    return .received(object: received.object, md5: md5)
                } catch {
                    return .refused(error, reusable: true)
                }
            }
        }
        return .disconnected
    }

    /// Reads and drops the body of a request that does not use it (or was refused).
    /// Returns false when the connection cannot carry another request: the client is
    /// waiting for `100 Continue` before sending a body, the body is too large to be worth
    /// reading, or the connection ended.
    func skipBody(of head: HTTPRequestHead, parts: inout Parts) async throws -> Bool {
        let declared = head.headers.first(name: "content-length").flatMap { Int($0) }
        let hasBody = (declared ?? 0) > 0 || head.headers.contains(name: "transfer-encoding")
        if hasBody {
            if Self.expectsContinue(head) { return false }
            if let declared, declared > BlobStoreService.drainLimit { return false }
        }
        var seen = 0
        while let part = try await parts.next() {
            switch part {
            case .head: return false
            case .body(let buffer):
                seen += buffer.readableBytes
                metrics.receivedBytes.increment(by: buffer.readableBytes)
                if seen > BlobStoreService.drainLimit { return false }
            case .end: return true
            }
        }
        return false
    }

    func write(_ response: BlobStoreResponse, requestID: String, version: HTTPVersion, outbound: Writer) async throws {
        var headers = HTTPHeaders()
        for (name, value) in response.headers { headers.add(name: name, value: value) }
        headers.add(name: "x-amz-request-id", value: requestID)
        headers.add(name: "Date", value: S3Time.http(now()))
        headers.add(name: "Server", value: "blob-store")
        if response.status != 204 && response.status >= 200 {
            headers.add(name: "Content-Length", value: String(response.announcedLength ?? response.body.count))
        }
        if response.close { headers.add(name: "Connection", value: "close") }
        let status = HTTPResponseStatus(statusCode: response.status)
        try await outbound.write(.head(HTTPResponseHead(version: version, status: status, headers: headers)))
        switch response.body {
        case .bytes(let buffer):
            if buffer.readableBytes > 0 { try await outbound.write(.body(.byteBuffer(buffer))) }
        case .file(let file, let range):
            // Piece by piece: each is read while the one before is being sent, and the
            // writer waits while the connection is not writable, so a slow reader holds
            // back the reads. A failure after the head leaves the answer short of its
            // Content-Length: the thrown error closes the connection, as it must.
            var offset = range.lowerBound
            while offset < range.upperBound {
                let end = min(offset + BlobStoreService.writeChunk, range.upperBound)
                let piece = try await file.read(offset..<end)
                try await outbound.write(.body(.byteBuffer(piece)))
                offset = end
            }
        }
        try await outbound.write(.end(nil))
        metrics.sentBytes.increment(by: response.body.count)
    }

    static func expectsContinue(_ head: HTTPRequestHead) -> Bool {
        head.headers["expect"].contains { $0.lowercased() == "100-continue" }
    }

    static func key(of operation: BlobStoreOperation) -> String? {
        switch operation {
        case .putObject(_, let key), .getObject(_, let key), .headObject(_, let key), .deleteObject(_, let key): key
        default: nil
        }
    }

    /// 16 upper-case hex digits, like S3's request IDs.
    static func makeRequestID() -> String {
        var rng = SystemRandomNumberGenerator()
        let value = rng.next() as UInt64
        let text = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - text.count) + text
    }
}
