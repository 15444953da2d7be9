import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PersistCodec
import PersistCore

/// What a client of an RPC here needs to know about its protocol.
public protocol RPCClientProtocol: Sendable {
    associatedtype Request: Sendable
    associatedtype Response: Sendable

    static func encode(request: Request, id: UInt64) -> [UInt8]
    static func decodeResponse(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, response: Response)
    /// The request's name in errors and logs.
    static func opName(_ request: Request) -> String
    static func hello(token: [UInt8]) -> Request
    /// Nil when `response` accepts the hello; otherwise why it was refused.
    static func helloRefusal(_ response: Response) -> String?
    /// True for an answer under request id 0 that refuses a frame the server could not
    /// attribute (it closes the connection next).
    static func isFrameRefusal(_ response: Response) -> Bool
}

/// Where an RPC server listens.
public enum RPCEndpoint: Hashable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case .tcp(let host, let port): "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

/// How a client of an RPC server connects (`RemoteConsensus`, `TxnClient`).
public struct RPCClientConfiguration: Sendable {
    public var endpoint: RPCEndpoint
    /// The server's shared token (its `--token-file`), or nil if it needs none.
    public var token: [UInt8]?
    /// Connections in the pool. Each carries any number of concurrent requests, and
    /// requests issued together share a write (and the answers a read), so a few
    /// connections beat many: the default 2 spreads the work over two of the server's
    /// event loops while keeping that batching (BENCHMARKS.md has the comparison with one
    /// connection per caller).
    public var connections: Int
    public var connectTimeout: Duration
    /// How long a request waits for its answer before failing indeterminately.
    public var requestTimeout: Duration

    public init(
        endpoint: RPCEndpoint, token: [UInt8]? = nil, connections: Int = 2, connectTimeout: Duration = .seconds(5),
        requestTimeout: Duration = .seconds(30)
    ) {
        self.endpoint = endpoint
        self.token = token
        self.connections = max(1, connections)
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
    }
}

/// A pool of multiplexed connections to one RPC server.
///
/// Requests are spread round-robin over the pool; a connection that breaks is replaced by
/// the next request that lands on its slot. Determinacy follows one rule: a request that
/// was never written (no connection could be made, or it had already closed) fails
/// determinately; one that was written but whose answer never came (deadline, lost
/// connection) fails indeterminately, because the server may have acted on it.
public final class RPCClientPool<P: RPCClientProtocol>: Sendable {
    public let configuration: RPCClientConfiguration
    /// Names the server in errors ("consensus server", "coordinator").
    let serverName: String
    let group: any EventLoopGroup
    let logger: Logger
    let slots: [NIOLockedValueBox<Slot>]
    let nextSlot = NIOLockedValueBox(0)
    let closed = NIOLockedValueBox(false)

    enum Slot {
        case empty
        case connecting(Task<RPCClientConnection<P>, any Error>)
        case ready(RPCClientConnection<P>)
    }

    public init(_ configuration: RPCClientConfiguration, serverName: String, group: any EventLoopGroup, logger: Logger) {
        self.configuration = configuration
        self.serverName = serverName
        self.group = group
        self.logger = logger
        self.slots = (0..<configuration.connections).map { _ in NIOLockedValueBox(Slot.empty) }
    }

    /// Closes every connection. Requests in flight fail indeterminately and streams end;
    /// later requests fail determinately.
    public func shutdown() async {
        closed.withLockedValue { $0 = true }
        for slot in slots {
            let previous = slot.withLockedValue { s -> Slot in
                let p = s
                s = .empty
                return p
            }
            switch previous {
            case .empty: break
            case .connecting(let task): task.cancel()
            case .ready(let connection): try? await connection.channel.close()
            }
        }
    }

    /// Sends `request` and waits for its one answer.
    public func call(_ request: P.Request) async throws(StorageError) -> P.Response {
        try await connection().call(request, timeout: configuration.requestTimeout)
    }

    /// Sends `request` and returns the stream of its answers, which ends when `isEnd`
    /// says an answer is the last, or fails when the connection does (indeterminately) or
    /// `timeout` (if any) passes before the last answer, with the connection and request
    /// id it runs under (to address it later).
    public func stream(
        _ request: P.Request, timeout: Duration? = nil, isEnd: @escaping @Sendable (P.Response) -> Bool
    ) async throws(StorageError)
        -> (answers: AsyncThrowingStream<P.Response, any Error>, connection: RPCClientConnection<P>, id: UInt64)
    {
        let c = try await connection()
        let (id, answers) = try await c.stream(request, timeout: timeout, isEnd: isEnd)
        return (answers, c, id)
    }

    /// A live connection from the pool, connecting its slot if needed.
    public func connection() async throws(StorageError) -> RPCClientConnection<P> {
        if closed.withLockedValue({ $0 }) {
            throw .determinate(.unavailable, "the \(serverName) client was shut down")
        }
        let index = nextSlot.withLockedValue { n -> Int in
            n = (n + 1) % slots.count
            return n
        }
        let slot = slots[index]
        while true {
            let next = slot.withLockedValue { state -> Result<RPCClientConnection<P>, Never>? in
                if case .ready(let c) = state, c.isUsable { return .success(c) }
                return nil
            }
            if case .success(let c) = next { return c }
            let task = slot.withLockedValue { state -> Task<RPCClientConnection<P>, any Error>? in
                switch state {
                case .ready(let c) where c.isUsable: return nil
                case .connecting(let t): return t
                case .ready, .empty:
                    let t = Task { try await self.connect() }
                    state = .connecting(t)
                    return t
                }
            }
            guard let task else { continue }
            do {
                let c = try await task.value
                slot.withLockedValue { state in
                    if case .connecting = state { state = .ready(c) }
                }
                return c
            } catch {
                slot.withLockedValue { state in
                    if case .connecting = state { state = .empty }
                }
                if let e = error as? StorageError { throw e }
                throw .determinate(
                    .unavailable, "cannot connect to the \(serverName) at \(configuration.endpoint): \(error)")
            }
        }
    }

    func connect() async throws -> RPCClientConnection<P> {
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(configuration.connectTimeout))
            .channelOption(.socketOption(.so_keepalive), value: 1)
        let setUp: @Sendable (any Channel) -> EventLoopFuture<RPCClientConnection<P>> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = RPCClientHandler<P>()
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RPCFrameDecoder()))
                try channel.pipeline.syncOperations.addHandler(handler)
                return RPCClientConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
            }
        }
        let connection: RPCClientConnection<P>
        switch configuration.endpoint {
        case .tcp(let host, let port):
            if let literal = try? SocketAddress(ipAddress: host, port: port) {
                // An address needs no resolver (NIO's runs getaddrinfo on a shared
                // Dispatch queue, which a busy process can keep waiting for seconds).
                connection = try await bootstrap.connect(to: literal, channelInitializer: setUp)
            } else {
                connection = try await bootstrap.connect(host: host, port: port, channelInitializer: setUp)
            }
        case .unix(let path):
            connection = try await bootstrap.connect(unixDomainSocketPath: path, channelInitializer: setUp)
        }
        if let token = configuration.token {
            let answer = try await connection.call(P.hello(token: token), timeout: configuration.requestTimeout)
            if let refusal = P.helloRefusal(answer) {
                try? await connection.channel.close()
                throw StorageError.determinate(.rejected, "the \(serverName) refused the token: \(refusal)")
            }
        }
        logger.debug("connected", metadata: ["server": "\(serverName)", "endpoint": "\(configuration.endpoint)"])
        return connection
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let c = duration.components
        self = .nanoseconds(c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000)
    }
}

/// One multiplexed connection: requests are written with fresh ids and completed when
/// their answers arrive.
public final class RPCClientConnection<P: RPCClientProtocol>: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<RPCClientHandler<P>>
    private let nextID = NIOLockedValueBox<UInt64>(1)

    init(channel: any Channel, handler: NIOLoopBound<RPCClientHandler<P>>) {
        self.channel = channel
        self.handler = handler
    }

    var isUsable: Bool { channel.isActive }

    /// A fresh request id on this connection.
    private func takeID() -> UInt64 {
        nextID.withLockedValue { n in
            defer { n &+= 1 }
            return n
        }
    }

    func call(_ request: P.Request, timeout: Duration) async throws(StorageError) -> P.Response {
        let handler = self.handler
        let loop = channel.eventLoop
        let deadline = NIODeadline.now() + TimeAmount(timeout)
        // Encoding (and, for large answers, decoding) happens here, on the caller's
        // thread, so the event loop only moves bytes for every connection it serves.
        let id = takeID()
        let frame = P.encode(request: request, id: id)
        let op = P.opName(request)
        let answer: RPCClientHandler<P>.Answer
        do {
            answer = try await withCheckedThrowingContinuation { continuation in
                loop.execute { handler.value.send(frame, id: id, deadline: deadline, op: op, continuation) }
            }
        } catch let e as StorageError {
            throw e
        } catch {
            throw .indeterminate(.unavailable, "request failed: \(error)")
        }
        switch answer {
        case .decoded(let response):
            return response
        case .raw(let payload):
            do {
                return try P.decodeResponse(payload).response
            } catch {
                // Nothing after a bad frame can be trusted.
                channel.close(promise: nil)
                throw .indeterminate(.unavailable, "malformed answer from the server: \(error)")
            }
        }
    }

    /// Sends one request on this connection and waits for its answer.
    public func send(_ request: P.Request, timeout: Duration) async throws(StorageError) -> P.Response {
        try await call(request, timeout: timeout)
    }

    /// Opens a stream request and returns its id with its answers. The stream ends after
    /// the answer `isEnd` accepts; a caller that stops consuming it should ask the
    /// server to end it.
    func stream(
        _ request: P.Request, timeout: Duration?, isEnd: @escaping @Sendable (P.Response) -> Bool
    ) async throws(StorageError) -> (UInt64, AsyncThrowingStream<P.Response, any Error>) {
        let (stream, continuation) = AsyncThrowingStream<P.Response, any Error>.makeStream()
        let handler = self.handler
        let deadline = timeout.map { NIODeadline.now() + TimeAmount($0) }
        let id = takeID()
        let frame = P.encode(request: request, id: id)
        let op = P.opName(request)
        let sent = try? await channel.eventLoop.submit {
            handler.value.open(frame, id: id, op: op, continuation, deadline: deadline, isEnd: isEnd)
        }.get()
        guard sent == true else {
            throw .determinate(.unavailable, "connection closed; stream request not sent")
        }
        return (id, stream)
    }
}

/// Event-loop-confined request bookkeeping of one client connection.
///
/// Requests are written as they come and flushed once per event-loop turn, so requests
/// issued together leave in one system call. Deadlines are checked by a sweep every
/// 100 ms rather than a timer per request; a stream has a deadline only if it was opened
/// with one (a read's pieces do, a subscription does not).
final class RPCClientHandler<P: RPCClientProtocol>: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = [UInt8]
    typealias OutboundOut = ByteBuffer
    typealias Waiter = CheckedContinuation<Answer, any Error>

    /// A single request's answer: decoded here when small; large ones are handed over as
    /// bytes and decoded by the caller, off the event loop.
    enum Answer {
        case decoded(P.Response)
        case raw([UInt8])
    }

    /// Answers at least this large are decoded by the caller.
    static var rawThreshold: Int { 64 << 10 }

    enum Pending {
        case single(Waiter, deadline: NIODeadline, op: String)
        case stream(
            AsyncThrowingStream<P.Response, any Error>.Continuation, deadline: NIODeadline?, op: String,
            isEnd: @Sendable (P.Response) -> Bool)
    }

    private var pending: [UInt64: Pending] = [:]
    private var context: ChannelHandlerContext?
    private var closedReason: String?
    private var flushPending = false
    private var sweep: RepeatedTask?

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        sweep = context.eventLoop.scheduleRepeatedTask(initialDelay: .milliseconds(100), delay: .milliseconds(100)) { _ in
            this.value.expire(now: .now())
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        sweep?.cancel()
        failAll("connection closed")
    }

    /// Registers and writes an encoded request; false (after failing the waiter) if it
    /// cannot be sent.
    private func write(_ frame: [UInt8], id: UInt64, _ entry: Pending) -> Bool {
        guard let context, closedReason == nil, context.channel.isActive else {
            let error = StorageError.determinate(
                .unavailable, "connection closed (\(closedReason ?? "not connected")); request not sent")
            switch entry {
            case .single(let w, _, _): w.resume(throwing: error)
            case .stream(let c, _, _, _): c.finish(throwing: error)
            }
            return false
        }
        pending[id] = entry
        context.write(wrapOutboundOut(ByteBuffer(bytes: frame)), promise: nil)
        if !flushPending {
            flushPending = true
            let this = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute {
                this.value.flushPending = false
                this.value.context?.flush()
            }
        }
        return true
    }

    func send(_ frame: [UInt8], id: UInt64, deadline: NIODeadline, op: String, _ waiter: Waiter) {
        _ = write(frame, id: id, .single(waiter, deadline: deadline, op: op))
    }

    func open(
        _ frame: [UInt8], id: UInt64, op: String, _ continuation: AsyncThrowingStream<P.Response, any Error>.Continuation,
        deadline: NIODeadline?, isEnd: @escaping @Sendable (P.Response) -> Bool
    ) -> Bool {
        write(frame, id: id, .stream(continuation, deadline: deadline, op: op, isEnd: isEnd))
    }

    /// Fails the requests whose deadline has passed: written, so possibly applied.
    private func expire(now: NIODeadline) {
        for (id, entry) in pending {
            switch entry {
            case .single(let waiter, let deadline, let op) where deadline <= now:
                pending.removeValue(forKey: id)
                waiter.resume(throwing: StorageError.indeterminate(.timeout, "no answer to \(op) from the server in time"))
            case .stream(let continuation, let deadline?, let op, _) where deadline <= now:
                pending.removeValue(forKey: id)
                continuation.finish(throwing: StorageError.indeterminate(.timeout, "\(op) did not finish in time"))
            case .single, .stream:
                continue
            }
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = unwrapInboundIn(data)
        if payload.count >= Self.rawThreshold, let id = RPCFraming.peekID(payload),
            case .single(let waiter, _, _) = pending[id]
        {
            pending.removeValue(forKey: id)
            waiter.resume(returning: .raw(payload))
            return
        }
        do {
            let (id, response) = try P.decodeResponse(payload)
            switch pending[id] {
            case .single(let waiter, _, _):
                pending.removeValue(forKey: id)
                waiter.resume(returning: .decoded(response))
            case .stream(let continuation, _, _, let isEnd):
                continuation.yield(response)
                if isEnd(response) {
                    pending.removeValue(forKey: id)
                    continuation.finish()
                }
            case nil:
                if id == 0, P.isFrameRefusal(response) {
                    failAll("the server refused a frame: \(response)")
                }
            }
        } catch {
            failAll("malformed answer from the server: \(error)")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll("connection closed")
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll("connection error: \(error)")
        context.close(promise: nil)
    }

    /// Fails every request still waiting: they were written, so they may have happened.
    private func failAll(_ reason: String) {
        if closedReason == nil { closedReason = reason }
        let waiting = pending
        pending.removeAll()
        let error = StorageError.indeterminate(.unavailable, "request lost: \(reason)")
        for (_, entry) in waiting {
            switch entry {
            case .single(let w, _, _): w.resume(throwing: error)
            case .stream(let c, _, _, _): c.finish(throwing: error)
            }
        }
    }
}
