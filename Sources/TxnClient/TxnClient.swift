import Logging
import NIOCore
import NIOPosix
import PersistCodec
import PersistCore
import PersistRPC

/// The async Swift client of a `txn-coordinator`.
///
/// ```swift
/// let txns = TxnClient(.init(endpoint: .tcp(host: "127.0.0.1", port: 7300)))
/// let orders = try await txns.createShard("orders")
/// let stock = try await txns.createShard("stock")
/// _ = try await txns.register([.name("orders"), .name("stock")])
/// let ts = try await txns.commit([
///     ShardWrites(shard: .name("orders"), rows: [RowWrite(key: Array("order-17".utf8))]),
///     ShardWrites(shard: .name("stock"), rows: [RowWrite(key: Array("widget".utf8), diff: -1)]),
/// ])
/// let (asOf, rows) = try await txns.read(.name("orders"), asOf: ts)
/// ```
///
/// Errors: a `CoordinatorError` is the coordinator's typed answer (unknown shard, closed
/// timestamp with the next usable one, ...); a `StorageError` is a transport failure,
/// determinate when the request was never sent and indeterminate when its answer never
/// came (a commit may then have happened: read to find out).
///
/// Requests are multiplexed over a small pool of connections; any number of tasks may use
/// one client at once.
public final class TxnClient: Sendable {
    /// Where the coordinator is and how to reach it. `requestTimeout` bounds every call
    /// (reads wait for applies, commits for a durable CaS); subscriptions have none.
    public typealias Configuration = RPCClientConfiguration

    public let configuration: Configuration
    let pool: RPCClientPool<CoordinatorClientProtocol>

    public init(
        _ configuration: Configuration, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "txn-client")
    ) {
        self.configuration = configuration
        self.pool = RPCClientPool(configuration, serverName: "coordinator", group: group, logger: logger)
    }

    /// Closes the connections; subscriptions end with an error.
    public func shutdown() async {
        await pool.shutdown()
    }

    /// Creates a data shard (or returns the existing one of that name).
    public func createShard(_ name: String) async throws -> ShardInfo {
        guard case .shard(let info) = try await call(.createShard(name: name)) else { throw unexpected("create shard") }
        return info
    }

    public func listShards() async throws -> [ShardInfo] {
        guard case .shards(let infos) = try await call(.listShards) else { throw unexpected("list shards") }
        return infos
    }

    /// Registers shards with the txns shard (at `at`, or a time the coordinator picks)
    /// and returns the registration time.
    public func register(_ shards: [ShardRef], at: Timestamp? = nil) async throws -> Timestamp {
        guard case .done(let ts) = try await call(.register(shards: shards, at: at)) else { throw unexpected("register") }
        return ts
    }

    /// Forgets shards (they stop taking commits) and returns the time it took effect.
    public func forget(_ shards: [ShardRef], at: Timestamp? = nil) async throws -> Timestamp {
        guard case .done(let ts) = try await call(.forget(shards: shards, at: at)) else { throw unexpected("forget") }
        return ts
    }

    /// Commits the writes atomically and returns their timestamp: at `at`, or at one the
    /// coordinator picks (possibly shared with other commits that arrived together).
    public func commit(_ writes: [ShardWrites], at: Timestamp? = nil) async throws -> Timestamp {
        guard case .committed(let ts) = try await call(.commit(writes: writes, at: at)) else { throw unexpected("commit") }
        return ts
    }

    /// The shard's consolidated rows at `asOf` (nil: the latest committed time).
    ///
    /// A large snapshot arrives in several answers (each well under the RPC's frame
    /// limit), which this collects.
    public func read(_ shard: ShardRef, asOf: Timestamp? = nil) async throws -> (asOf: Timestamp, rows: [Update]) {
        try await collect(.read(shard: shard, asOf: asOf))
    }

    /// Every update of the shard at or before `asOf` (nil: the latest committed time) with
    /// the time it was committed at, consolidated per key, value and time: the order in
    /// which rows arrived. Rows committed together (one transaction, or one group commit)
    /// share a time.
    public func readHistory(_ shard: ShardRef, asOf: Timestamp? = nil) async throws -> (asOf: Timestamp, rows: [Update]) {
        try await collect(.readHistory(shard: shard, asOf: asOf))
    }

    /// Sends a read and gathers its pieces up to the final `snapshot` answer.
    private func collect(_ request: CoordinatorRequest) async throws -> (asOf: Timestamp, rows: [Update]) {
        let (answers, _, _) = try await pool.stream(request, timeout: configuration.requestTimeout) {
            response in
            switch response {
            case .snapshot, .error: true
            default: false
            }
        }
        var rows: [Update] = []
        for try await answer in answers {
            switch answer {
            case .updates(let piece): rows += piece
            case .snapshot(let ts, let last): return (ts, rows + last)
            case .error(let e): throw e
            default: throw unexpected("read")
            }
        }
        throw StorageError.indeterminate(.unavailable, "the read's answer ended early")
    }

    /// Allows reads below `since` to be compacted away.
    public func compact(since: Timestamp) async throws -> Timestamp {
        guard case .done(let ts) = try await call(.compact(since: since)) else { throw unexpected("compact") }
        return ts
    }

    public func status() async throws -> CoordinatorStatus {
        guard case .status(let s) = try await call(.status) else { throw unexpected("status") }
        return s
    }

    /// Subscribes to a shard from `from` (nil: the latest time): its contents then, and
    /// every later change, with progress.
    public func subscribe(_ shard: ShardRef, from: Timestamp? = nil) async throws -> TxnSubscription {
        let (answers, connection, id) = try await pool.stream(.subscribe(shard: shard, from: from)) { response in
            switch response {
            case .done, .error: true
            default: false
            }
        }
        return TxnSubscription(answers: answers, connection: connection, id: id, timeout: configuration.requestTimeout)
    }

    func call(_ request: CoordinatorRequest) async throws -> CoordinatorResponse {
        let response = try await pool.call(request)
        if case .error(let e) = response { throw e }
        return response
    }

    func unexpected(_ op: String) -> StorageError {
        .indeterminate(.failed, "the coordinator answered \(op) with something else")
    }
}

/// A live subscription: iterate it for events; `cancel()` ends it on the server.
public final class TxnSubscription: AsyncSequence, Sendable {
    public enum Event: Hashable, Sendable {
        /// Updates at their times, each at or after the last progress.
        case updates([Update])
        /// Everything before this time has been delivered.
        case progress(Timestamp)
    }

    let answers: AsyncThrowingStream<CoordinatorResponse, any Error>
    let connection: RPCClientConnection<CoordinatorClientProtocol>
    let id: UInt64
    let timeout: Duration

    init(
        answers: AsyncThrowingStream<CoordinatorResponse, any Error>, connection: RPCClientConnection<CoordinatorClientProtocol>,
        id: UInt64, timeout: Duration
    ) {
        self.answers = answers
        self.connection = connection
        self.id = id
        self.timeout = timeout
    }

    /// Ends the subscription on the server; iteration then finishes.
    public func cancel() async {
        _ = try? await connection.send(.unsubscribe(requestID: id), timeout: timeout)
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<CoordinatorResponse, any Error>.AsyncIterator

        /// The next event; nil once the subscription has ended. Throws the coordinator's
        /// error, or a transport error if the connection is lost.
        public mutating func next() async throws -> Event? {
            while let answer = try await base.next() {
                switch answer {
                case .updates(let rows): return .updates(rows)
                case .progress(let ts): return .progress(ts)
                case .error(let e): throw e
                case .done: return nil
                default: continue
                }
            }
            return nil
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(base: answers.makeAsyncIterator()) }
}

/// The coordinator RPC as its client sees it.
public enum CoordinatorClientProtocol: RPCClientProtocol {
    public static func encode(request: CoordinatorRequest, id: UInt64) -> [UInt8] {
        CoordinatorRPC.encode(request: request, id: id)
    }

    public static func decodeResponse(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, response: CoordinatorResponse) {
        try CoordinatorRPC.decodeResponse(payload)
    }

    public static func opName(_ request: CoordinatorRequest) -> String {
        switch request {
        case .hello: "hello"
        case .createShard: "create shard"
        case .listShards: "list shards"
        case .register: "register"
        case .forget: "forget"
        case .commit: "commit"
        case .read: "read"
        case .readHistory: "read history"
        case .subscribe: "subscribe"
        case .unsubscribe: "unsubscribe"
        case .compact: "compact"
        case .status: "status"
        }
    }

    public static func hello(token: [UInt8]) -> CoordinatorRequest { .hello(token: token) }

    public static func helloRefusal(_ response: CoordinatorResponse) -> String? {
        switch response {
        case .helloOK: nil
        case .error(let e): e.message
        case let other: "unexpected answer \(other)"
        }
    }

    public static func isFrameRefusal(_ response: CoordinatorResponse) -> Bool {
        if case .error = response { return true }
        return false
    }
}
