import Logging
import Metrics
import NIOCore
import PersistCodec
import PersistCore
import PersistLocation

/// The server side of the consensus RPC: serves one backend (a `LogConsensus` in the
/// `consensus` process) to any number of connections.
///
/// Each connection is handled on its event loop by a `ConsensusServerHandler`: frames are
/// decoded in order, and every request is started at once, so a slow request (a CaS
/// waiting for its group's fsync) does not hold up the ones behind it; answers go out in
/// completion order and carry the request id. A backend with a callback API
/// (`CallbackConsensus`, as `LogConsensus` is) is called straight from the event loop;
/// any other runs each request in a task.
///
/// A connection has at most `maxInFlightPerConnection` requests running, and is not read
/// while its answers cannot be written (the client is not reading): beyond either, the
/// server stops reading from it (TCP backpressure), which slows only that client.
///
/// Bad input never takes the process down: a request that fails to decode but whose
/// checksum is intact (an unknown op) gets an error answer and the connection goes on; a
/// frame with a bad length prefix or checksum gets an error answer with request id 0 and
/// the connection is closed, because nothing after it can be trusted.
public struct ConsensusRPCServer: Sendable {
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
    let logger: Logger
    let metrics: ServerMetrics

    public init(backend: any Consensus, configuration: Configuration = .init(), logger: Logger) {
        self.backend = backend
        self.callbackBackend = backend as? any CallbackConsensus
        self.configuration = configuration
        self.logger = logger
        self.metrics = ServerMetrics()
    }

    /// Adds the framing and serving handlers to an accepted channel.
    public func configure(_ channel: any Channel) -> EventLoopFuture<any Channel> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(ConsensusFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(ConsensusServerHandler(server: self))
            return channel
        }
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


    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
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

    let badRequests = Counter(label: "consensus_rpc_bad_requests_total")
    let authFailures = Counter(label: "consensus_rpc_auth_failures_total")
    let bytesIn = Counter(label: "consensus_rpc_bytes_in_total")
    let bytesOut = Counter(label: "consensus_rpc_bytes_out_total")
    let connectionsOpened = Counter(label: "consensus_rpc_connections_opened_total")
    let connectionsClosed = Counter(label: "consensus_rpc_connections_closed_total")
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
