import NIOCore
import NIOHTTP1

/// Why a request got no complete answer, in the terms determinacy needs.
enum S3TransportFailure: Error, Sendable {
    /// Nothing was written: the connection was already unusable.
    case notSent(String)
    /// The request was (at least partly) written and the connection broke before the
    /// answer was complete. `responseStarted` says whether any of the answer arrived.
    case lost(String, responseStarted: Bool)
    /// The request was written and the deadline passed before the answer was complete.
    case timedOut

    /// A failure typical of a keep-alive connection the server had already closed while
    /// it sat idle: worth one retry on a fresh connection.
    var looksStale: Bool {
        switch self {
        case .notSent: true
        case .lost(_, let responseStarted): !responseStarted
        case .timedOut: false
        }
    }
}

/// One HTTP/1.1 connection carrying one request at a time.
final class S3HTTPConnection: Sendable {
    let channel: any Channel
    private let handler: NIOLoopBound<S3HTTPClientHandler>

    init(channel: any Channel, handler: NIOLoopBound<S3HTTPClientHandler>) {
        self.channel = channel
        self.handler = handler
    }

    /// Whether the connection may take another request (best effort: the peer may have
    /// closed it without our having noticed yet).
    var isUsable: Bool { channel.isActive }

    /// Sends `request` and waits for its complete answer until `deadline`.
    func execute(_ request: S3HTTPRequest, deadline: NIODeadline) async -> Result<S3HTTPResponse, S3TransportFailure> {
        let handler = self.handler
        let promise = channel.eventLoop.makePromise(of: S3HTTPResponse.self)
        channel.eventLoop.execute { handler.value.send(request, deadline: deadline, promise: promise) }
        do {
            return .success(try await promise.futureResult.get())
        } catch let failure as S3TransportFailure {
            return .failure(failure)
        } catch {
            return .failure(.lost("\(error)", responseStarted: false))
        }
    }

    func close() {
        channel.close(promise: nil)
    }
}

/// The event-loop side of an `S3HTTPConnection`: writes a request, assembles its answer,
/// and fails it if the connection breaks or the deadline passes first.
final class S3HTTPClientHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private struct Pending {
        var promise: EventLoopPromise<S3HTTPResponse>
        var timeout: Scheduled<Void>
        var head: HTTPResponseHead?
        var body: ByteBuffer
    }

    private var pending: Pending?
    private var context: ChannelHandlerContext?
    private var closedReason: String?

    init() {}

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
    }

    func send(_ request: S3HTTPRequest, deadline: NIODeadline, promise: EventLoopPromise<S3HTTPResponse>) {
        guard let context, closedReason == nil, context.channel.isActive else {
            promise.fail(S3TransportFailure.notSent("connection closed (\(closedReason ?? "not active"))"))
            return
        }
        guard pending == nil else {
            promise.fail(S3TransportFailure.notSent("connection busy"))
            return
        }
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        let timeout = context.eventLoop.scheduleTask(deadline: deadline) { this.value.deadlinePassed() }
        pending = Pending(promise: promise, timeout: timeout, head: nil, body: context.channel.allocator.buffer(capacity: 0))
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.target)
        for (name, value) in request.headers { head.headers.add(name: name, value: value) }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        if !request.body.isEmpty {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: request.body)))), promise: nil)
        }
        context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard var p = pending else {
            // Bytes nobody asked for: the connection cannot be trusted any more.
            fail(.lost("unsolicited response data", responseStarted: true))
            context.close(promise: nil)
            return
        }
        switch unwrapInboundIn(data) {
        case .head(let head):
            // Interim 1xx answers (100 Continue) precede the real one.
            if head.status.code >= 100 && head.status.code < 200 { return }
            p.head = head
            pending = p
        case .body(var chunk):
            pending = nil  // avoid a copy of the body buffer while appending
            p.body.writeBuffer(&chunk)
            pending = p
        case .end:
            pending = nil
            p.timeout.cancel()
            guard let head = p.head else {
                p.promise.fail(S3TransportFailure.lost("response ended without a head", responseStarted: true))
                context.close(promise: nil)
                return
            }
            let keepAlive = head.isKeepAlive
            let response = S3HTTPResponse(
                status: Int(head.status.code), headers: head.headers.map { (name: $0.name, value: $0.value) },
                body: Array(buffer: p.body), keepAlive: keepAlive)
            if !keepAlive {
                closedReason = "the server asked to close the connection"
                context.close(promise: nil)
            }
            p.promise.succeed(response)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        if closedReason == nil { closedReason = "connection closed by the server" }
        fail(.lost(closedReason ?? "connection closed", responseStarted: pending?.head != nil))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if closedReason == nil { closedReason = "connection error: \(error)" }
        fail(.lost("connection error: \(error)", responseStarted: pending?.head != nil))
        context.close(promise: nil)
    }

    private func deadlinePassed() {
        guard pending != nil else { return }
        // A late answer must never be taken for the next request's: close the connection.
        closedReason = "request timed out"
        fail(.timedOut)
        context?.close(promise: nil)
    }

    private func fail(_ failure: S3TransportFailure) {
        guard let p = pending else { return }
        pending = nil
        p.timeout.cancel()
        p.promise.fail(failure)
    }
}
