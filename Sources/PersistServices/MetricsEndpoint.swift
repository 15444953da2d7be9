import Logging
import Metrics
import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// Serves `GET /metrics` in the Prometheus text format from a collector registry, on its
/// own listener (a separate port keeps it out of the served protocol's namespace: a
/// bucket may well be called "metrics").
public struct MetricsEndpoint: Service {
    public let address: ListenAddress
    public let registry: PrometheusCollectorRegistry
    let group: any EventLoopGroup
    let logger: Logger
    let onListening: @Sendable (ListenAddress) -> Void

    public init(
        address: ListenAddress, registry: PrometheusCollectorRegistry,
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton, logger: Logger,
        onListening: @escaping @Sendable (ListenAddress) -> Void = { _ in }
    ) {
        self.address = address
        self.registry = registry
        self.group = group
        self.logger = logger
        self.onListening = onListening
    }

    public func run() async throws {
        let registry = self.registry
        // Each connection is answered by a small synchronous handler (rendering the
        // registry does not block), so there is no per-connection task to drain.
        let server = try await Listener.bind(address, group: group) { channel in
            channel.eventLoop.makeCompletedFuture { () -> any Channel in
                try channel.pipeline.syncOperations.configureHTTPServerPipeline(withErrorHandling: true)
                try channel.pipeline.syncOperations.addHandler(MetricsHTTPHandler(registry: registry))
                return channel
            }
        }
        let bound = Listener.boundAddress(of: server.channel, requested: address)
        logger.info("metrics endpoint listening", metadata: ["address": "\(bound)"])
        onListening(bound)
        let open = OpenConnections()
        try await withGracefulShutdownHandler {
            try await server.executeThenClose { connections in
                for try await connection in connections {
                    guard open.add(connection) else {
                        connection.close(promise: nil)
                        continue
                    }
                    connection.closeFuture.whenComplete { _ in open.remove(connection) }
                }
            }
        } onGracefulShutdown: {
            server.channel.close(promise: nil)
            for connection in open.drain() { connection.close(promise: nil) }
        }
    }
}

/// Answers `GET /metrics` (and 404/405 for anything else) on one HTTP connection.
final class MetricsHTTPHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private var head: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry) {
        self.registry = registry
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let h): head = h
        case .body: break
        case .end:
            guard let h = head else { return }
            head = nil
            let (status, body) = Self.respond(to: h, registry: registry)
            var headers = HTTPHeaders()
            headers.add(name: "Content-Type", value: status == .ok ? "text/plain; version=0.0.4" : "text/plain")
            headers.add(name: "Content-Length", value: String(body.count))
            if !h.isKeepAlive { headers.add(name: "Connection", value: "close") }
            context.write(wrapOutboundOut(.head(HTTPResponseHead(version: h.version, status: status, headers: headers))), promise: nil)
            if h.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(ByteBuffer(bytes: body)))), promise: nil) }
            let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
            if !h.isKeepAlive {
                let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
                done.whenComplete { _ in ctx.value.close(promise: nil) }
            }
        }
    }

    static func respond(to head: HTTPRequestHead, registry: PrometheusCollectorRegistry) -> (HTTPResponseStatus, [UInt8]) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        guard path == "/metrics" else { return (.notFound, Array("not found: only /metrics is served here\n".utf8)) }
        guard head.method == .GET || head.method == .HEAD else { return (.methodNotAllowed, Array("use GET\n".utf8)) }
        return (.ok, registry.emitToBuffer())
    }
}

/// What every server executable does before running its services: logging to stderr at
/// the chosen level and metrics into a Prometheus registry.
public enum ServerProcess {
    /// Bootstraps swift-log and swift-metrics once per process and returns the registry
    /// the `/metrics` endpoint serves.
    public static func bootstrap(label: String, logLevel: Logger.Level) -> (Logger, PrometheusCollectorRegistry) {
        LoggingSystem.bootstrap { name in
            var handler = StreamLogHandler.standardError(label: name)
            handler.logLevel = logLevel
            return handler
        }
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return (Logger(label: label), registry)
    }
}
