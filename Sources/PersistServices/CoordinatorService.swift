import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PersistCodec
import PersistCore
import PersistRPC
import ServiceLifecycle
import TxnCoordinator

/// The `txn-coordinator` server as a ServiceLifecycle service: serves a `TxnCoordinator`
/// over the coordinator RPC on every listen address.
///
/// Graceful shutdown drains like the consensus server (listeners close, running requests
/// are answered, subscriptions end, connections close). The coordinator itself is not
/// shut down here: its owner does that after the service group has stopped, so queued
/// commits finish and are applied.
public struct TxnCoordinatorService: Service {
    public let listen: [ListenAddress]
    public let rpc: CoordinatorRPCService
    let group: any EventLoopGroup
    let logger: Logger
    let onListening: @Sendable ([ListenAddress]) -> Void
    /// How long connections may keep running requests once shutdown begins; then they
    /// are closed.
    let drainDeadline: TimeAmount

    public init(
        coordinator: TxnCoordinator, listen: [ListenAddress], settings: RPCServerSettings,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
        drainDeadline: TimeAmount = .seconds(30),
        onListening: @escaping @Sendable ([ListenAddress]) -> Void = { _ in }
    ) {
        self.drainDeadline = drainDeadline
        self.listen = listen
        self.rpc = CoordinatorRPCService(coordinator: coordinator, settings: settings, logger: logger)
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let rpc = self.rpc
        try await RPCListeners(listen: listen, group: group, logger: logger, drainDeadline: drainDeadline, name: "coordinator")
            .run(configure: { rpc.configure($0) }, onListening: onListening)
    }
}

/// The coordinator RPC's server side: each request runs as a task against the
/// `TxnCoordinator`; a subscription streams its events under its request id until the
/// client unsubscribes or the connection ends, and then answers `done` (its final
/// answer).
public struct CoordinatorRPCService: RPCService {
    public let coordinator: TxnCoordinator
    public let settings: RPCServerSettings
    let logger: Logger
    let connectionMetrics: RPCConnectionMetrics

    public init(coordinator: TxnCoordinator, settings: RPCServerSettings, logger: Logger) {
        self.coordinator = coordinator
        self.settings = settings
        self.logger = logger
        self.connectionMetrics = RPCConnectionMetrics(prefix: settings.metricsPrefix)
    }

    public func configure(_ channel: any Channel) -> EventLoopFuture<Void> {
        channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(ByteToMessageHandler(RPCFrameDecoder()))
            try channel.pipeline.syncOperations.addHandler(
                RPCServerHandler(service: self, metrics: connectionMetrics, logger: logger))
        }
    }

    public static func decodeRequest(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, request: CoordinatorRequest) {
        try CoordinatorRPC.decodeRequest(payload)
    }

    public static func requestID(ofDamagedRequest payload: [UInt8]) -> UInt64? {
        CoordinatorRPC.requestID(ofDamagedRequest: payload)
    }

    public static func encode(response: CoordinatorResponse, id: UInt64) -> [UInt8] {
        CoordinatorRPC.encode(response: response, id: id)
    }

    public static func helloToken(_ request: CoordinatorRequest) -> [UInt8]? {
        if case .hello(let token) = request { return token }
        return nil
    }

    public static var helloOK: CoordinatorResponse { .helloOK }

    public static func errorResponse(refused: Bool, _ message: String) -> CoordinatorResponse {
        .error(CoordinatorError(refused ? .rejected : .badRequest, message))
    }

    public func makeSession() -> CoordinatorSession {
        CoordinatorSession(coordinator: coordinator, logger: logger)
    }
}

/// One coordinator connection: runs its requests and tracks its subscriptions, so that
/// `unsubscribe` and the connection's end can stop them.
public final class CoordinatorSession: RPCSession {
    let coordinator: TxnCoordinator
    let logger: Logger
    private let state = NIOLockedValueBox(State())

    struct State {
        var subscriptions: [UInt64: Task<Void, Never>] = [:]
        var closed = false
    }

    init(coordinator: TxnCoordinator, logger: Logger) {
        self.coordinator = coordinator
        self.logger = logger
    }

    public func start(
        _ request: CoordinatorRequest, id: UInt64, reply: @escaping @Sendable (CoordinatorResponse, Bool) -> Void
    ) {
        switch request {
        case .subscribe(let shard, let from):
            startSubscription(shard, from: from, id: id, reply: reply)
        case .unsubscribe(let target):
            let task = state.withLockedValue { $0.subscriptions.removeValue(forKey: target) }
            task?.cancel()
            if task == nil {
                reply(.error(CoordinatorError(.badRequest, "no subscription with request id \(target) on this connection")), true)
            } else {
                reply(.done(at: 0), true)
            }
        case .read(let shard, let asOf), .readHistory(let shard, let asOf):
            let coordinator = self.coordinator
            let keepTimes: Bool
            if case .readHistory = request { keepTimes = true } else { keepTimes = false }
            Task {
                do throws(CoordinatorError) {
                    let (ts, rows) =
                        keepTimes
                        ? try await coordinator.readHistory(shard, asOf: asOf)
                        : try await coordinator.read(shard, asOf: asOf)
                    // A large snapshot goes out in pieces (`updates`) of about 1 MiB, well
                    // under the frame limit and small enough that no single frame holds an
                    // event loop for long; the `snapshot` answer carries the rest.
                    let pieces = Self.pieces(rows, maxBytes: Self.snapshotPieceBytes)
                    for piece in pieces.dropLast() { reply(.updates(piece), false) }
                    reply(.snapshot(asOf: ts, rows: pieces.last ?? []), true)
                } catch {
                    reply(.error(error), true)
                }
            }
        default:
            let coordinator = self.coordinator
            Task { reply(await Self.answer(request, coordinator), true) }
        }
    }

    /// Rows per answer frame of a read are cut at about this many bytes.
    static let snapshotPieceBytes = 1 << 20

    /// `rows` cut into consecutive pieces of at most `maxBytes` encoded bytes (at least
    /// one row per piece); always at least one (possibly empty) piece.
    static func pieces(_ rows: [Update], maxBytes: Int) -> [[Update]] {
        var result: [[Update]] = [[]]
        var bytes = 0
        for row in rows {
            let size = row.key.count + row.value.count + 32
            if bytes + size > maxBytes, let last = result.last, !last.isEmpty {
                result.append([])
                bytes = 0
            }
            result[result.count - 1].append(row)
            bytes += size
        }
        return result
    }

    public func close() {
        let tasks = state.withLockedValue { s -> [Task<Void, Never>] in
            s.closed = true
            defer { s.subscriptions = [:] }
            return Array(s.subscriptions.values)
        }
        for t in tasks { t.cancel() }
    }

    private func startSubscription(
        _ shard: ShardRef, from: Timestamp?, id: UInt64, reply: @escaping @Sendable (CoordinatorResponse, Bool) -> Void
    ) {
        let coordinator = self.coordinator
        let task = Task {
            let subscription: CoordinatorSubscription
            do throws(CoordinatorError) {
                subscription = try await coordinator.subscribe(shard, from: from)
            } catch {
                return reply(.error(error), true)
            }
            var last: Timestamp = 0
            await withTaskCancellationHandler {
                do {
                    for try await event in subscription {
                        if case .progress(let p) = event { last = p }
                        reply(event, false)
                    }
                } catch {
                    reply(.error(Self.coordinatorError(error)), true)
                    return
                }
            } onCancel: {
                Task { await subscription.cancel() }
            }
            await subscription.cancel()
            reply(.done(at: last), true)
        }
        let refused = state.withLockedValue { s -> Bool in
            if s.closed { return true }
            s.subscriptions[id] = task
            return false
        }
        if refused { task.cancel() }
    }

    /// Runs a one-answer request.
    static func answer(_ request: CoordinatorRequest, _ c: TxnCoordinator) async -> CoordinatorResponse {
        do throws(CoordinatorError) {
            switch request {
            case .hello: return .helloOK
            case .createShard(let name): return .shard(try await c.createShard(name: name))
            case .listShards: return .shards(try await c.listShards())
            case .register(let shards, let at): return .done(at: try await c.register(shards, at: at))
            case .forget(let shards, let at): return .done(at: try await c.forget(shards, at: at))
            case .commit(let writes, let at): return .committed(at: try await c.commit(writes, at: at))
            case .compact(let since): return .done(at: try await c.compact(since: since))
            case .status: return .status(try await c.status())
            case .read, .readHistory, .subscribe, .unsubscribe:
                return .error(CoordinatorError(.badRequest, "streams are handled by the session"))
            }
        } catch {
            return .error(error)
        }
    }

    static func coordinatorError(_ error: any Error) -> CoordinatorError {
        if let e = error as? CoordinatorError { return e }
        return CoordinatorError(.storage, "\(error)")
    }
}
