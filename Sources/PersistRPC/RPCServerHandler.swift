import Logging
import Metrics
import NIOCore
import PersistCodec
import PersistCore

/// What an RPC server built on `RPCServerHandler` supplies: its wire format and, per
/// connection, a session that runs requests.
public protocol RPCService: Sendable {
    associatedtype Request: Sendable
    associatedtype Response: Sendable
    associatedtype Session: RPCSession where Session.Request == Request, Session.Response == Response

    var settings: RPCServerSettings { get }

    static func decodeRequest(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, request: Request)
    /// The id of a request whose framing is sound but whose body is not (see
    /// `RPCFraming`), or nil.
    static func requestID(ofDamagedRequest payload: [UInt8]) -> UInt64?
    static func encode(response: Response, id: UInt64) -> [UInt8]
    /// The token a `hello` request presents, or nil if `request` is not a hello.
    static func helloToken(_ request: Request) -> [UInt8]?
    static var helloOK: Response { get }
    /// An error answer: `refused` for authentication failures, otherwise a bad request.
    static func errorResponse(refused: Bool, _ message: String) -> Response

    /// A new session for one connection.
    func makeSession() -> Session
}

/// One connection's request runner.
public protocol RPCSession: AnyObject, Sendable {
    associatedtype Request: Sendable
    associatedtype Response: Sendable

    /// Starts `request`. `reply` may be called any number of times from any thread, and
    /// must be called exactly once with `final: true` (after which the request no longer
    /// counts as running). Streams (subscriptions) send `final: false` pieces.
    func start(_ request: Request, id: UInt64, reply: @escaping @Sendable (Response, _ final: Bool) -> Void)

    /// The connection is going away (closed, refused or drained): end streams, so their
    /// final replies come. Requests already running still finish.
    func close()
}

/// Limits and authentication shared by RPC servers.
public struct RPCServerSettings: Sendable {
    /// The shared secret a connection must present in its first request; nil serves
    /// anyone who can reach the socket.
    public var token: [UInt8]?
    public var maxInFlightPerConnection: Int
    /// A connection that has not authenticated this long after connecting is closed
    /// (only when a token is required).
    public var helloTimeout: Duration
    /// Metric names start with this (`consensus_rpc`, `coordinator_rpc`).
    public var metricsPrefix: String

    public init(token: [UInt8]?, maxInFlightPerConnection: Int, helloTimeout: Duration, metricsPrefix: String) {
        self.token = token
        self.maxInFlightPerConnection = max(1, maxInFlightPerConnection)
        self.helloTimeout = helloTimeout
        self.metricsPrefix = metricsPrefix
    }
}

/// Connection-level counters of an RPC server.
public struct RPCConnectionMetrics: Sendable {
    let badRequests: Counter
    let authFailures: Counter
    let bytesIn: Counter
    let bytesOut: Counter
    let connectionsOpened: Counter
    let connectionsClosed: Counter

    public init(prefix: String) {
        badRequests = Counter(label: "\(prefix)_bad_requests_total")
        authFailures = Counter(label: "\(prefix)_auth_failures_total")
        bytesIn = Counter(label: "\(prefix)_bytes_in_total")
        bytesOut = Counter(label: "\(prefix)_bytes_out_total")
        connectionsOpened = Counter(label: "\(prefix)_connections_opened_total")
        connectionsClosed = Counter(label: "\(prefix)_connections_closed_total")
    }
}

/// One server connection of any `RPCService`, confined to its event loop.
///
/// Frames are decoded in order and every request is started at once, so a slow request
/// does not hold up the ones behind it; answers go out in completion order, carry the
/// request id, and are flushed once per event-loop turn. A connection has at most
/// `maxInFlightPerConnection` requests running and is not read while its answers cannot
/// be written (the client is not reading): either way the server stops reading from it,
/// which slows only that client.
///
/// Bad input never takes the process down: a request that fails to decode but whose
/// framing is sound (an unknown op) is answered with an error and the connection goes
/// on; a frame whose length prefix or checksum is bad is answered with an error under
/// request id 0 and the connection is closed, because nothing after it can be trusted.
/// When the input side ends (the peer finished, or a drain shut it) the session's streams
/// are ended, running requests finish and are answered, and then the connection closes.
public final class RPCServerHandler<Service: RPCService>: ChannelInboundHandler {
    public typealias InboundIn = [UInt8]
    public typealias OutboundOut = ByteBuffer

    private let service: Service
    private let session: Service.Session
    private let metrics: RPCConnectionMetrics
    private let logger: Logger
    private var authenticated: Bool
    private var running = 0
    private var inputEnded = false
    private var refused = false
    private var readingPaused = false
    private var flushPending = false
    private var peer = "unknown peer"

    public init(service: Service, metrics: RPCConnectionMetrics, logger: Logger) {
        self.service = service
        self.session = service.makeSession()
        self.metrics = metrics
        self.logger = logger
        self.authenticated = service.settings.token == nil
    }

    public func channelActive(context: ChannelHandlerContext) {
        peer = context.channel.remoteAddress.map { "\($0)" } ?? "unix peer"
        metrics.connectionsOpened.increment()
        if service.settings.token != nil {
            let this = NIOLoopBound(self, eventLoop: context.eventLoop)
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            let timeout = service.settings.helloTimeout.components
            let delay = TimeAmount.nanoseconds(timeout.seconds * 1_000_000_000 + timeout.attoseconds / 1_000_000_000)
            context.eventLoop.scheduleTask(in: delay) {
                guard !this.value.authenticated, ctx.value.channel.isActive else { return }
                this.value.logger.notice("closing a connection that never authenticated", metadata: ["peer": "\(this.value.peer)"])
                ctx.value.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    public func channelInactive(context: ChannelHandlerContext) {
        metrics.connectionsClosed.increment()
        session.close()
        context.fireChannelInactive()
    }

    /// Requests at least this large (commits with many rows) are decoded in a task, off
    /// the event loop, once the connection has authenticated.
    static var offLoopDecodeThreshold: Int { 64 << 10 }

    public func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let payload = unwrapInboundIn(data)
        metrics.bytesIn.increment(by: payload.count + RPCFraming.prefixLength)
        if authenticated, payload.count >= Self.offLoopDecodeThreshold, let id = RPCFraming.peekID(payload) {
            return startDecodingOffLoop(context: context, payload: payload, id: id)
        }
        let id: UInt64
        let request: Service.Request
        do {
            (id, request) = try Service.decodeRequest(payload)
        } catch {
            metrics.badRequests.increment()
            let known = Service.requestID(ofDamagedRequest: payload)
            logger.notice(
                "refused a malformed request", metadata: ["peer": "\(peer)", "error": "\(error)", "closing": "\(known == nil)"])
            let answer = Service.errorResponse(refused: false, "malformed request: \(error)")
            guard let known else { return refuse(context: context, id: 0, answer) }
            return send(context: context, id: known, answer)
        }
        if let presented = Service.helloToken(request) {
            if let token = service.settings.token, !Self.constantTimeEqual(presented, token) {
                metrics.authFailures.increment()
                logger.notice("refused a connection with a wrong token", metadata: ["peer": "\(peer)"])
                return refuse(context: context, id: id, Service.errorResponse(refused: true, "wrong token"))
            }
            authenticated = true
            return send(context: context, id: id, Service.helloOK)
        }
        guard authenticated else {
            metrics.authFailures.increment()
            return refuse(
                context: context, id: id, Service.errorResponse(refused: true, "this server needs a token: send hello first"))
        }
        running += 1
        updateReading(context: context)
        session.start(request, id: id, reply: replier(context: context, id: id))
    }

    /// The reply callback of request `id`: encodes on whatever thread finished the work,
    /// then hands the frame to the event loop, where the connection's state lives.
    private func replier(context: ChannelHandlerContext, id: UInt64) -> @Sendable (Service.Response, Bool) -> Void {
        let loop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: loop)
        let ctx = NIOLoopBound(context, eventLoop: loop)
        return { response, final in
            let frame = Service.encode(response: response, id: id)
            if loop.inEventLoop {
                this.value.answered(context: ctx.value, frame: frame, final: final)
            } else {
                loop.execute { this.value.answered(context: ctx.value, frame: frame, final: final) }
            }
        }
    }

    /// Decodes a large request in a task; a frame that fails its checksum or framing is
    /// refused and closes the connection, as on the event loop; a body that fails to
    /// decode is answered under its id.
    private func startDecodingOffLoop(context: ChannelHandlerContext, payload: [UInt8], id: UInt64) {
        running += 1
        updateReading(context: context)
        let reply = replier(context: context, id: id)
        let loop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: loop)
        let ctx = NIOLoopBound(context, eventLoop: loop)
        let session = self.session
        Task {
            do {
                let (_, request) = try Service.decodeRequest(payload)
                guard Service.helloToken(request) == nil else {
                    return reply(Service.errorResponse(refused: false, "hello must be the first request"), true)
                }
                session.start(request, id: id, reply: reply)
            } catch {
                let trusted = Service.requestID(ofDamagedRequest: payload) != nil
                let answer = Service.errorResponse(refused: false, "malformed request: \(error)")
                loop.execute {
                    this.value.metrics.badRequests.increment()
                    this.value.logger.notice(
                        "refused a malformed request",
                        metadata: ["peer": "\(this.value.peer)", "error": "\(error)", "closing": "\(!trusted)"])
                    if !trusted { this.value.endInput(context: ctx.value) }
                }
                reply(answer, true)
            }
        }
    }

    private func answered(context: ChannelHandlerContext, frame: [UInt8], final: Bool) {
        write(context: context, frame: frame)
        guard final else { return }
        running -= 1
        updateReading(context: context)
        closeIfDone(context: context)
    }

    /// Writes an answer; flushes are coalesced, so answers completed together leave in
    /// one write system call per connection.
    private func send(context: ChannelHandlerContext, id: UInt64, _ response: Service.Response) {
        write(context: context, frame: Service.encode(response: response, id: id))
    }

    private func write(context: ChannelHandlerContext, frame: [UInt8]) {
        guard context.channel.isActive else { return }
        metrics.bytesOut.increment(by: frame.count)
        context.write(wrapOutboundOut(ByteBuffer(bytes: frame)), promise: nil)
        guard !flushPending else { return }
        flushPending = true
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            this.value.flushPending = false
            ctx.value.flush()
        }
    }

    /// Answers, then closes: nothing after this frame is trusted or served.
    private func refuse(context: ChannelHandlerContext, id: UInt64, _ response: Service.Response) {
        refused = true
        endInput(context: context)
        send(context: context, id: id, response)
        closeIfDone(context: context)
    }

    private func endInput(context: ChannelHandlerContext) {
        guard !inputEnded else { return }
        inputEnded = true
        session.close()
    }

    private func closeIfDone(context: ChannelHandlerContext) {
        guard inputEnded, running == 0, context.channel.isActive else { return }
        // Writes complete in order: once this empty one has, every answer before it has
        // reached the kernel, and closing cannot discard any.
        let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer())).whenComplete { _ in ctx.value.close(promise: nil) }
    }

    /// Pauses reading while too many requests run or the peer is not taking its answers.
    private func updateReading(context: ChannelHandlerContext) {
        let shouldPause = running >= service.settings.maxInFlightPerConnection || !context.channel.isWritable
        guard shouldPause != readingPaused else { return }
        readingPaused = shouldPause
        context.channel.setOption(ChannelOptions.autoRead, value: !shouldPause).whenComplete { _ in }
        if !shouldPause { context.read() }
    }

    public func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    public func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            endInput(context: context)
            closeIfDone(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    public func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let codecError = error as? CodecError {
            metrics.badRequests.increment()
            logger.notice("refused a frame", metadata: ["peer": "\(peer)", "error": "\(codecError)"])
            refuse(context: context, id: 0, Service.errorResponse(refused: false, "frame refused: \(codecError)"))
        } else {
            logger.debug("connection failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            endInput(context: context)
            context.close(promise: nil)
        }
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
