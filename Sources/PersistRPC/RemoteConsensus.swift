import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PersistCodec
import PersistCore
import PersistLocation

/// A `Consensus` served by a `consensus` process, over its binary RPC.
///
/// Requests are spread over a small pool of connections, each carrying many requests at
/// once (answers are matched to requests by id, in any order). A connection that breaks
/// is replaced by the next request that lands on its slot.
///
/// Determinacy follows one rule: a request that was never written (no connection could
/// be made, or it had already closed) failed determinately; a request that was written
/// but whose answer never came (timeout, connection lost) is indeterminate, because the
/// server may have applied it. Errors the server reports keep the server's determinacy.
/// The client does not retry on its own: persist's CaS loop decides how to resolve an
/// indeterminate compare-and-set (by reading), which only it can do correctly.
public final class RemoteConsensus: Consensus {
    public enum Endpoint: Hashable, Sendable, CustomStringConvertible {
        case tcp(host: String, port: Int)
        case unix(path: String)

        public var description: String {
            switch self {
            case .tcp(let host, let port): "\(host):\(port)"
            case .unix(let path): "unix:\(path)"
            }
        }
    }

    public struct Configuration: Sendable {
        public var endpoint: Endpoint
        /// The server's shared token (`consensus --token-file`), or nil if it needs none.
        public var token: [UInt8]?
        /// Connections in the pool. Each carries any number of concurrent requests, and
        /// requests issued together share a write (and the answers a read), so a few
        /// connections beat many: the default 2 spreads the work over two of the server's
        /// event loops while keeping that batching (BENCHMARKS.md has the comparison
        /// with one connection per caller).
        public var connections: Int
        public var connectTimeout: Duration
        /// How long a request waits for its answer before failing indeterminately.
        public var requestTimeout: Duration

        public init(
            endpoint: Endpoint, token: [UInt8]? = nil, connections: Int = 2, connectTimeout: Duration = .seconds(5),
            requestTimeout: Duration = .seconds(30)
        ) {
            self.endpoint = endpoint
            self.token = token
            self.connections = max(1, connections)
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
        }
    }

    public let configuration: Configuration
    let group: any EventLoopGroup
    let logger: Logger
    let slots: [NIOLockedValueBox<Slot>]
    let nextSlot = NIOLockedValueBox(0)
    let closed = NIOLockedValueBox(false)

    enum Slot {
        case empty
        case connecting(Task<RPCConnection, any Error>)
        case ready(RPCConnection)
    }

    public init(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "persist.remote-consensus")
    ) {
        self.configuration = configuration
        self.group = group
        self.logger = logger
        self.slots = (0..<configuration.connections).map { _ in NIOLockedValueBox(Slot.empty) }
    }

    /// Closes every connection. Requests in flight fail indeterminately; later requests
    /// fail determinately.
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

    // MARK: Consensus

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        switch try await call(.head(key: key)) {
        case .head(let v): return v
        case let other: throw Self.unexpected(other, for: "head")
        }
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        // Checked here too, so a misuse fails determinately without a round trip.
        try ConsensusPreconditions.checkCaS(key, expected: expected, new: new)
        switch try await call(.compareAndSet(key: key, expected: expected, new: new)) {
        case .compareAndSet(let result): return result
        case let other: throw Self.unexpected(other, for: "compare-and-set")
        }
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try ConsensusPreconditions.checkScanLimit(limit)
        // The server answers large scans in pieces; ask again after each truncated one.
        var result: [VersionedData] = []
        var next = from
        while result.count < limit {
            switch try await call(.scan(key: key, from: next, limit: UInt64(limit - result.count))) {
            case .scan(let versions, let truncated):
                result.append(contentsOf: versions)
                guard truncated, let last = versions.last, let after = SeqNo(last.seqno.rawValue + 1) else {
                    return result
                }
                next = after
            case let other: throw Self.unexpected(other, for: "scan")
            }
        }
        return result
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        switch try await call(.truncate(key: key, seqno: seqno)) {
        case .truncate(let deleted): return Int(clamping: deleted)
        case let other: throw Self.unexpected(other, for: "truncate")
        }
    }

    public func listKeys() async throws(StorageError) -> [String] {
        switch try await call(.listKeys) {
        case .listKeys(let keys): return keys
        case let other: throw Self.unexpected(other, for: "list keys")
        }
    }

    // MARK: Requests and the pool

    func call(_ request: ConsensusRequest) async throws(StorageError) -> ConsensusResponse {
        let connection = try await connection()
        let response = try await connection.call(request, timeout: configuration.requestTimeout)
        if case .error(let e) = response { throw e }
        return response
    }

    static func unexpected(_ response: ConsensusResponse, for op: String) -> StorageError {
        .indeterminate(.failed, "the consensus server answered \(op) with \(response)")
    }

    /// A live connection from the pool, connecting its slot if needed.
    func connection() async throws(StorageError) -> RPCConnection {
        if closed.withLockedValue({ $0 }) { throw .determinate(.unavailable, "the remote consensus client was shut down") }
        let index = nextSlot.withLockedValue { n -> Int in
            n = (n + 1) % slots.count
            return n
        }
        let slot = slots[index]
        let task = slot.withLockedValue { state -> Task<RPCConnection, any Error>? in
            switch state {
            case .ready(let c) where c.isUsable: return nil
            case .connecting(let t): return t
            case .ready, .empty:
                let t = Task { try await self.connect() }
                state = .connecting(t)
                return t
            }
        }
        guard let task else {
            if case .ready(let c) = slot.withLockedValue({ $0 }) { return c }
            return try await connection()
        }
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
            throw .determinate(.unavailable, "cannot connect to the consensus server at \(configuration.endpoint): \(error)")
        }
    }

    func connect() async throws -> RPCConnection {
        let connectTimeout = TimeAmount.nanoseconds(Int64(configuration.connectTimeout.components.seconds) * 1_000_000_000
            + configuration.connectTimeout.components.attoseconds / 1_000_000_000)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(connectTimeout)
            .channelOption(.socketOption(.so_keepalive), value: 1)
        let setUp: @Sendable (any Channel) -> EventLoopFuture<RPCConnection> = { channel in
            channel.eventLoop.makeCompletedFuture {
                let handler = RPCClientHandler()
                try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ConsensusFrameDecoder()))
                try channel.pipeline.syncOperations.addHandler(handler)
                return RPCConnection(channel: channel, handler: NIOLoopBound(handler, eventLoop: channel.eventLoop))
            }
        }
        let connection: RPCConnection
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
        let channel = connection.channel
        if let token = configuration.token {
            let answer = try await connection.call(.hello(token: token), timeout: configuration.requestTimeout)
            guard case .helloOK = answer else {
                try? await channel.close()
                if case .error(let e) = answer {
                    throw StorageError.determinate(.rejected, "the consensus server refused the token: \(e.message)")
                }
                throw StorageError.determinate(.rejected, "unexpected answer to hello: \(answer)")
            }
        }
        logger.debug("connected to consensus server", metadata: ["endpoint": "\(configuration.endpoint)"])
        return connection
    }
}

/// One multiplexed connection: requests are written with fresh ids and completed by the
/// handler when their answers arrive.
final class RPCConnection: Sendable {
    let channel: any Channel
    let handler: NIOLoopBound<RPCClientHandler>

    init(channel: any Channel, handler: NIOLoopBound<RPCClientHandler>) {
        self.channel = channel
        self.handler = handler
    }

    var isUsable: Bool { channel.isActive }

    func call(_ request: ConsensusRequest, timeout: Duration) async throws(StorageError) -> ConsensusResponse {
        let handler = self.handler
        let loop = channel.eventLoop
        let deadline = NIODeadline.now() + TimeAmount.nanoseconds(
            Int64(timeout.components.seconds) * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000)
        do {
            return try await withCheckedThrowingContinuation { continuation in
                loop.execute { handler.value.send(request, deadline: deadline, continuation) }
            }
        } catch let e as StorageError {
            throw e
        } catch {
            throw .indeterminate(.unavailable, "consensus request failed: \(error)")
        }
    }
}

/// Event-loop-confined request bookkeeping of one connection.
///
/// Requests are written as they come and flushed once per event-loop turn, so requests
/// issued together leave in one system call. Deadlines are checked by a sweep every
/// 100 ms rather than a timer per request.
final class RPCClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = [UInt8]
    typealias OutboundOut = ByteBuffer
    typealias Waiter = CheckedContinuation<ConsensusResponse, any Error>

    struct Pending {
        let waiter: Waiter
        let deadline: NIODeadline
        let op: String
    }

    private var pending: [UInt64: Pending] = [:]
    private var nextID: UInt64 = 1
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

    func send(_ request: ConsensusRequest, deadline: NIODeadline, _ waiter: Waiter) {
        guard let context, closedReason == nil, context.channel.isActive else {
            let reason = closedReason ?? "not connected"
            return waiter.resume(
                throwing: StorageError.determinate(.unavailable, "consensus connection closed (\(reason)); request not sent"))
        }
        let id = nextID
        nextID &+= 1
        pending[id] = Pending(waiter: waiter, deadline: deadline, op: request.opName)
        context.write(wrapOutboundOut(ByteBuffer(bytes: ConsensusRPC.encode(request: request, id: id))), promise: nil)
        guard !flushPending else { return }
        flushPending = true
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        context.eventLoop.execute {
            this.value.flushPending = false
            this.value.context?.flush()
        }
    }

    /// Fails the requests whose deadline has passed: written, so possibly applied.
    private func expire(now: NIODeadline) {
        let late = pending.filter { $0.value.deadline <= now }
        for (id, p) in late {
            pending.removeValue(forKey: id)
            p.waiter.resume(throwing: StorageError.indeterminate(.timeout, "no answer to \(p.op) from the consensus server in time"))
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let payload = unwrapInboundIn(data)
        do {
            let (id, response) = try ConsensusRPC.decodeResponse(payload)
            if let p = pending.removeValue(forKey: id) {
                p.waiter.resume(returning: response)
            } else if id == 0, case .error(let e) = response {
                // The server refused a frame it could not attribute; it closes next.
                failAll("the server refused a frame: \(e.message)")
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
        for (_, p) in waiting {
            p.waiter.resume(throwing: StorageError.indeterminate(.unavailable, "consensus request lost: \(reason)"))
        }
    }
}
