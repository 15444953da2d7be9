import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix
import PersistLocation
import PersistRPC
import ServiceLifecycle

/// The `consensus` server as a ServiceLifecycle service: serves a `Consensus` backend
/// (the process uses `LogConsensus`) over the binary RPC on every listen address.
///
/// Graceful shutdown drains: the listeners close, every connection stops reading new
/// requests (its input side is shut down), the requests already read finish and are
/// answered, and then `run` returns. The backend is not closed here: its owner closes it
/// after the service group has stopped.
public struct ConsensusService: Service {
    public let listen: [ListenAddress]
    public let server: ConsensusRPCServer
    let group: any EventLoopGroup
    let logger: Logger
    let onListening: @Sendable ([ListenAddress]) -> Void
    /// How long a drain waits for a connection's running requests before closing it.
    let drainDeadline = TimeAmount.seconds(30)

    public init(
        backend: any Consensus, listen: [ListenAddress], configuration: ConsensusRPCServer.Configuration = .init(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
        onListening: @escaping @Sendable ([ListenAddress]) -> Void = { _ in }
    ) {
        self.listen = listen
        self.server = ConsensusRPCServer(backend: backend, configuration: configuration, logger: logger)
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let server = self.server
        try await RPCListeners(listen: listen, group: group, logger: logger, drainDeadline: drainDeadline, name: "consensus")
            .run(configure: { server.configure($0).map { _ in } }, onListening: onListening)
    }
}

/// Runs RPC listeners for a service: binds every address with the protocol's handlers,
/// reports the bound addresses, and on graceful shutdown drains: the listeners close,
/// every connection's input is shut (its handler answers what is running, then closes),
/// and `run` returns once all connections are gone. A connection still open after the
/// drain deadline is closed outright. Cancellation closes everything at once.
struct RPCListeners: Sendable {
    let listen: [ListenAddress]
    let group: any EventLoopGroup
    let logger: Logger
    let drainDeadline: TimeAmount
    /// Names the server in logs.
    let name: String

    func run(
        configure: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>,
        onListening: @Sendable ([ListenAddress]) -> Void
    ) async throws {
        let connections = OpenConnections()
        var bound: [any Channel] = []
        do {
            for address in listen {
                bound.append(
                    try await Listener.bindHandlers(address, group: group) { channel in
                        guard connections.add(channel) else {
                            // Draining: refuse newcomers.
                            return channel.close()
                        }
                        channel.closeFuture.whenComplete { _ in connections.remove(channel) }
                        return configure(channel)
                    })
            }
        } catch {
            for l in bound { try? await l.close() }
            throw error
        }
        let listeners = bound
        let addresses = zip(listeners, listen).map { Listener.boundAddress(of: $0, requested: $1) }
        for address in addresses { logger.info("\(name) listening", metadata: ["address": "\(address)"]) }
        onListening(addresses)

        let (name, logger, drainDeadline) = (self.name, self.logger, self.drainDeadline)
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                for listener in listeners { try? await listener.closeFuture.get() }
                // The listeners are closed (a drain began); wait for the connections.
                await connections.waitUntilEmpty()
            } onCancel: {
                // Cancelled rather than drained: stop at once.
                for listener in listeners { listener.close(promise: nil) }
                for channel in connections.drain() { channel.close(promise: nil) }
            }
        } onGracefulShutdown: {
            logger.info("\(name) draining: no new requests; finishing the ones in flight")
            for listener in listeners { listener.close(promise: nil) }
            for channel in connections.drain() {
                // Stop reading; the connection answers what is running and then closes.
                // Should the input side not close on its own, or the peer never take its
                // answers, the connection is closed outright after the drain deadline.
                channel.close(mode: .input).whenFailure { _ in channel.close(promise: nil) }
                channel.eventLoop.scheduleTask(in: drainDeadline) { channel.close(promise: nil) }
            }
        }
        logger.info("\(name) stopped")
    }
}

/// The connections a service has open, so a drain can reach them and wait for them.
final class OpenConnections: Sendable {
    private struct State {
        var channels: [ObjectIdentifier: any Channel] = [:]
        var draining = false
        var emptyWaiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = NIOLockedValueBox(State())

    /// Registers a connection; false once draining has begun.
    func add(_ channel: any Channel) -> Bool {
        state.withLockedValue { s in
            guard !s.draining else { return false }
            s.channels[ObjectIdentifier(channel)] = channel
            return true
        }
    }

    func remove(_ channel: any Channel) {
        let waiters = state.withLockedValue { s -> [CheckedContinuation<Void, Never>] in
            s.channels.removeValue(forKey: ObjectIdentifier(channel))
            guard s.channels.isEmpty else { return [] }
            defer { s.emptyWaiters = [] }
            return s.emptyWaiters
        }
        for w in waiters { w.resume() }
    }

    /// Returns once no connection is open.
    func waitUntilEmpty() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let ready = state.withLockedValue { s -> Bool in
                if s.channels.isEmpty { return true }
                s.emptyWaiters.append(c)
                return false
            }
            if ready { c.resume() }
        }
    }

    /// Marks the set as draining and returns the connections open now.
    func drain() -> [any Channel] {
        state.withLockedValue { s in
            s.draining = true
            return Array(s.channels.values)
        }
    }
}
