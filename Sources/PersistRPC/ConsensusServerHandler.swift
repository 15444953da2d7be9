import Logging
import NIOCore
import PersistCodec
import PersistCore

/// One server connection, confined to its event loop (see `ConsensusRPCServer`).
///
/// State: whether the peer has authenticated, how many requests are running, whether
/// reading is paused (too many running, or the peer not reading its answers), and
/// whether the input side has ended (peer closed, or a drain shut it) so the connection
/// closes once the last answer is written.
final class ConsensusServerHandler: ChannelInboundHandler {
    typealias InboundIn = [UInt8]
    typealias OutboundOut = ByteBuffer

    private let server: ConsensusRPCServer
    private var authenticated: Bool
    private var running = 0
    private var inputEnded = false
    private var refused = false
    private var readingPaused = false
    private var flushPending = false
    private var peer = "unknown peer"

    init(server: ConsensusRPCServer) {
        self.server = server
        self.authenticated = server.configuration.token == nil
    }

    func channelActive(context: ChannelHandlerContext) {
        peer = context.channel.remoteAddress.map { "\($0)" } ?? "unix peer"
        server.metrics.connectionsOpened.increment()
        if server.configuration.token != nil {
            let this = NIOLoopBound(self, eventLoop: context.eventLoop)
            let ctx = NIOLoopBound(context, eventLoop: context.eventLoop)
            let timeout = server.configuration.helloTimeout.components
            let delay = TimeAmount.nanoseconds(timeout.seconds * 1_000_000_000 + timeout.attoseconds / 1_000_000_000)
            context.eventLoop.scheduleTask(in: delay) {
                guard !this.value.authenticated, ctx.value.channel.isActive else { return }
                this.value.server.logger.notice("closing a connection that never authenticated", metadata: ["peer": "\(this.value.peer)"])
                ctx.value.close(promise: nil)
            }
        }
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        server.metrics.connectionsClosed.increment()
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !refused else { return }
        let payload = unwrapInboundIn(data)
        server.metrics.bytesIn.increment(by: payload.count + ConsensusRPC.prefixLength)
        let id: UInt64
        let request: ConsensusRequest
        do {
            (id, request) = try ConsensusRPC.decodeRequest(payload)
        } catch {
            server.metrics.badRequests.increment()
            let known = ConsensusRPC.requestID(ofDamagedRequest: payload)
            server.logger.notice(
                "refused a malformed request", metadata: ["peer": "\(peer)", "error": "\(error)", "closing": "\(known == nil)"])
            let answer = ConsensusResponse.error(.determinate(.invalidArgument, "malformed request: \(error)"))
            guard let known else { return refuse(context: context, id: 0, answer) }
            return send(context: context, id: known, answer)
        }
        if case .hello(let presented) = request {
            if let token = server.configuration.token, !ConsensusRPCServer.constantTimeEqual(presented, token) {
                server.metrics.authFailures.increment()
                server.logger.notice("refused a connection with a wrong token", metadata: ["peer": "\(peer)"])
                return refuse(context: context, id: id, .error(.determinate(.rejected, "wrong token")))
            }
            authenticated = true
            return send(context: context, id: id, .helloOK)
        }
        guard authenticated else {
            server.metrics.authFailures.increment()
            return refuse(
                context: context, id: id, .error(.determinate(.rejected, "this server needs a token: send hello first")))
        }
        running += 1
        updateReading(context: context)
        let loop = context.eventLoop
        let this = NIOLoopBound(self, eventLoop: loop)
        let ctx = NIOLoopBound(context, eventLoop: loop)
        server.start(request) { response in
            // Answers come back on whatever thread finished the work; the connection's
            // state lives on its event loop.
            if loop.inEventLoop {
                this.value.finished(context: ctx.value, id: id, response)
            } else {
                loop.execute { this.value.finished(context: ctx.value, id: id, response) }
            }
        }
    }

    private func finished(context: ChannelHandlerContext, id: UInt64, _ response: ConsensusResponse) {
        running -= 1
        send(context: context, id: id, response)
        updateReading(context: context)
        closeIfDone(context: context)
    }

    /// Writes an answer; flushes are coalesced, so answers completed together (one group
    /// commit's) leave in one write system call per connection.
    private func send(context: ChannelHandlerContext, id: UInt64, _ response: ConsensusResponse) {
        guard context.channel.isActive else { return }
        let frame = ConsensusRPC.encode(response: response, id: id)
        server.metrics.bytesOut.increment(by: frame.count)
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
    private func refuse(context: ChannelHandlerContext, id: UInt64, _ response: ConsensusResponse) {
        refused = true
        inputEnded = true
        send(context: context, id: id, response)
        closeIfDone(context: context)
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
        let shouldPause = running >= server.configuration.maxInFlightPerConnection || !context.channel.isWritable
        guard shouldPause != readingPaused else { return }
        readingPaused = shouldPause
        context.channel.setOption(ChannelOptions.autoRead, value: !shouldPause).whenComplete { _ in }
        if !shouldPause { context.read() }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        updateReading(context: context)
        context.fireChannelWritabilityChanged()
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case ChannelEvent.inputClosed = event {
            // The peer finished sending, or a drain shut our input: answer what is
            // running, then close.
            inputEnded = true
            closeIfDone(context: context)
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if let codecError = error as? CodecError {
            server.metrics.badRequests.increment()
            server.logger.notice("refused a frame", metadata: ["peer": "\(peer)", "error": "\(codecError)"])
            refuse(context: context, id: 0, .error(.determinate(.invalidArgument, "frame refused: \(codecError)")))
        } else {
            server.logger.debug("consensus connection failed", metadata: ["peer": "\(peer)", "error": "\(error)"])
            context.close(promise: nil)
        }
    }
}
