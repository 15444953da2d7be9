import Logging
import Metrics
import NIOCore
import PersistCodec
import PersistCore
import PersistLocation

/// The server side of the consensus RPC: serves one backend (a `LogConsensus` in the
/// `consensus` process) to any number of connections.
///
/// Connections are run by `RPCServerHandler` (framing, authentication, backpressure,
/// bad input, drain). Every request starts at once, so a slow one (a CaS waiting for its
/// group's fsync) does not hold up the ones behind it. A backend with a callback API
/// (`CallbackConsensus`, as `LogConsensus` is) is called straight from the event loop;
/// any other runs each request in a task.
public struct ConsensusRPCServer: RPCService {
    public struct Configuration: Sendable {
        /// The shared secret a connection must present in its first request (`hello`);
        /// nil serves anyone who can reach the socket.
        public var token: [UInt8]?
        public var maxInFlightPerConnection: Int
        /// A scan answer stops once its versions hold this many bytes (it then says it
        /// was truncated, and the client continues from there).
        public var maxScanResponseBytes: Int
        /// A connection that has not authenticated this long after connecting is closed
        /// (only when a token is required), so idle strangers do not hold sockets.
        public var helloTimeout: Duration

        public init(
            token: [UInt8]? = nil, maxInFlightPerConnection: Int = 512, maxScanResponseBytes: Int = 16 << 20,
            helloTimeout: Duration = .seconds(10)
        ) {
            self.token = token
            self.maxInFlightPerConnection = max(1, maxInFlightPerConnection)
            self.maxScanResponseBytes = maxScanResponseBytes
            self.helloTimeout = helloTimeout
        }
    }

    public let backend: any Consensus
    let callbackBackend: (any CallbackConsensus)?
    public let configuration: Configuration
    public let settings: RPCServerSettings
    let logger: Logger
    let metrics: ServerMetrics
    let connectionMetrics: RPCConnectionMetrics

    public init(backend: any Consensus, configuration: Configuration = .init(), logger: Logger) {
        self.backend = backend
        self.callbackBackend = backend as? any CallbackConsensus
        self.configuration = configuration
        self.settings = RPCServerSettings(
            token: configuration.token, maxInFlightPerConnection: configuration.maxInFlightPerConnection,
            helloTimeout: configuration.helloTimeout, metricsPrefix: "consensus_rpc")
        self.logger = logger
        self.metrics = ServerMetrics()
        self.connectionMetrics = RPCConnectionMetrics(prefix: "consensus_rpc")
    }

    /// Adds the framing and serving handlers to an accepted channel.
    public func configure(_ channel: any Channel) -> EventLoopFuture<any Channel> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RPCFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(
                RPCServerHandler(service: self, metrics: connectionMetrics, logger: logger))
            return channel
        }
    }

    // MARK: RPCService

    public static func decodeRequest(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, request: ConsensusRequest) {
        try ConsensusRPC.decodeRequest(payload)
    }

    public static func requestID(ofDamagedRequest payload: [UInt8]) -> UInt64? {
        ConsensusRPC.requestID(ofDamagedRequest: payload)
    }

    public static func encode(response: ConsensusResponse, id: UInt64) -> [UInt8] {
        ConsensusRPC.encode(response: response, id: id)
    }

    public static func helloToken(_ request: ConsensusRequest) -> [UInt8]? {
        if case .hello(let token) = request { return token }
        return nil
    }

    public static var helloOK: ConsensusResponse { .helloOK }

    public static func errorResponse(refused: Bool, _ message: String) -> ConsensusResponse {
        .error(.determinate(refused ? .rejected : .invalidArgument, message))
    }

    public func makeSession() -> Session { Session(server: self) }

    /// Consensus requests are independent: a session only forwards them.
    public final class Session: RPCSession {
        let server: ConsensusRPCServer

        init(server: ConsensusRPCServer) { self.server = server }

        public func start(
            _ request: ConsensusRequest, id: UInt64, reply: @escaping @Sendable (ConsensusResponse, Bool) -> Void
        ) {
            server.start(request) { reply($0, true) }
        }

        public func close() {}
    }

    /// Starts `request` and calls `completion` (from any thread) with its answer.
    func start(_ request: ConsensusRequest, completion: @escaping @Sendable (ConsensusResponse) -> Void) {
        let op = request.opName
        let started = ContinuousClock.now
        let metrics = self.metrics
        let finish: @Sendable (ConsensusResponse) -> Void = { response in
            metrics.record(op: op, since: started)
            if case .error = response { metrics.errors(op: op) }
            completion(response)
        }
        if let fast = callbackBackend {
            switch request {
            case .compareAndSet(let key, let expected, let new):
                fast.compareAndSet(key, expected: expected, new: new) { result in
                    switch result {
                    case .success(let r): finish(.compareAndSet(r))
                    case .failure(let e): finish(.error(e))
                    }
                }
                return
            case .truncate(let key, let seqno):
                fast.truncate(key, seqno: seqno) { result in
                    switch result {
                    case .success(let n): finish(.truncate(deleted: UInt64(n)))
                    case .failure(let e): finish(.error(e))
                    }
                }
                return
            case .hello, .head, .scan, .listKeys:
                break
            }
        }
        Task { finish(await handle(request)) }
    }

    /// Runs one request against the backend. Every failure becomes an error answer that
    /// keeps the backend's determinacy.
    func handle(_ request: ConsensusRequest) async -> ConsensusResponse {
        do throws(StorageError) {
            switch request {
            case .hello:
                return .helloOK
            case .head(let key):
                return .head(try await backend.head(key))
            case .compareAndSet(let key, let expected, let new):
                return .compareAndSet(try await backend.compareAndSet(key, expected: expected, new: new))
            case .scan(let key, let from, let limit):
                return try await scan(key, from: from, limit: limit)
            case .truncate(let key, let seqno):
                return .truncate(deleted: UInt64(try await backend.truncate(key, seqno: seqno)))
            case .listKeys:
                return .listKeys(try await backend.listKeys())
            }
        } catch {
            return .error(error)
        }
    }

    /// Scans at most `limit` versions, and stops early at the response byte budget (always
    /// answering at least one version, so a scan makes progress).
    func scan(_ key: String, from: SeqNo, limit: UInt64) async throws(StorageError) -> ConsensusResponse {
        guard limit > 0 else { throw .determinate(.invalidArgument, "scan limit must be positive") }
        let batch = 4096
        let wanted = Int(min(limit, UInt64(batch)))
        let fetched = try await backend.scan(key, from: from, limit: wanted)
        var bytes = 0
        var taken = 0
        for v in fetched {
            if taken > 0, bytes + v.data.count > configuration.maxScanResponseBytes { break }
            bytes += v.data.count + 16
            taken += 1
        }
        let more = taken < fetched.count || (fetched.count == wanted && UInt64(wanted) < limit)
        return .scan(Array(fetched.prefix(taken)), truncated: more)
    }


}

extension ConsensusRequest {
    /// The operation's name in logs and metric dimensions.
    public var opName: String {
        switch self {
        case .hello: "hello"
        case .head: "head"
        case .compareAndSet: "cas"
        case .scan: "scan"
        case .truncate: "truncate"
        case .listKeys: "list_keys"
        }
    }
}

/// The server's metrics: per-op request latency and error counts, bad frames, refused
/// logins.
/// Handles are made once per op, not per request: looking one up in the metrics backend
/// takes a lock, which every request would otherwise contend on.
struct ServerMetrics: Sendable {
    static let ops = ["hello", "head", "cas", "scan", "truncate", "list_keys"]

    let durations: [String: Timer]
    let errorCounts: [String: Counter]

    init() {
        durations = Dictionary(
            uniqueKeysWithValues: Self.ops.map {
                ($0, Timer(label: "consensus_rpc_request_duration_seconds", dimensions: [("op", $0)]))
            })
        errorCounts = Dictionary(
            uniqueKeysWithValues: Self.ops.map { ($0, Counter(label: "consensus_rpc_errors_total", dimensions: [("op", $0)])) })
    }

    func record(op: String, since start: ContinuousClock.Instant) {
        durations[op]?.recordInterval(since: start)
    }

    func errors(op: String) {
        errorCounts[op]?.increment()
    }
}

extension Timer {
    func recordInterval(since start: ContinuousClock.Instant) {
        let d = ContinuousClock.now - start
        let (seconds, attoseconds) = d.components
        recordNanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
