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
        /// Whether the request was a HEAD, whose answer announces a length it does not send.
        var isHead: Bool
        var head: HTTPResponseHead?
        /// Collected straight into the array the caller gets: one copy per byte.
        var body: [UInt8]
    }

    /// The most a response's `Content-Length` reserves up front; a longer body still
    /// arrives, growing the array as it goes.
    static let maxReservation = 1 << 30

    /// Request bodies are written in pieces of this size, each copied into a buffer only
    /// when the connection can take it: sending starts with the first piece, and the
    /// buffers stay few and are reused rather than one as large as the body.
    static let pieceBytes = 256 << 10
    /// Pieces written per turn of the event loop, which then reads (an early answer) and
    /// serves its other channels before going on.
    static let piecesPerTurn = 4

    private var pending: Pending?
    /// The request body and how much of it has been written, until all of it has.
    private var outgoing: (body: [UInt8], offset: Int)?
    /// Set while `writeBody` runs, which a flush can re-enter through a writability change.
    private var writingBody = false
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
        pending = Pending(promise: promise, timeout: timeout, isHead: request.method == "HEAD", head: nil, body: [])
        var head = HTTPRequestHead(version: .http1_1, method: HTTPMethod(rawValue: request.method), uri: request.target)
        for (name, value) in request.headers { head.headers.add(name: name, value: value) }
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        outgoing = (request.body, 0)
        writeBody(context)
    }

    /// Writes body pieces while the channel is writable, then the end of the request.
    private func writeBody(_ context: ChannelHandlerContext) {
        guard !writingBody, var out = outgoing else { return }
        writingBody = true
        defer { writingBody = false }
        var pieces = 0
        while out.offset < out.body.count, context.channel.isWritable {
            if pieces == Self.piecesPerTurn {
                let this = NIOLoopBound(self, eventLoop: context.eventLoop)
                context.eventLoop.execute { this.value.continueBody() }
                return
            }
            pieces += 1
            let start = out.offset
            let end = min(start + Self.pieceBytes, out.body.count)
            let piece = out.body.withUnsafeBytes { all in
                context.channel.allocator.buffer(bytes: UnsafeRawBufferPointer(rebasing: all[start..<end]))
            }
            out.offset = end
            outgoing = out
            context.writeAndFlush(wrapOutboundOut(.body(.byteBuffer(piece))), promise: nil)
            // A failed write fails the request (and clears `outgoing`) before returning.
            guard outgoing != nil else { return }
        }
        if out.offset == out.body.count {
            outgoing = nil
            context.writeAndFlush(wrapOutboundOut(.end(nil)), promise: nil)
        }
    }

    private func continueBody() {
        if let context { writeBody(context) }
    }

    func channelWritabilityChanged(context: ChannelHandlerContext) {
        if context.channel.isWritable { writeBody(context) }
        context.fireChannelWritabilityChanged()
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
            pending = nil  // so that the reservation does not copy a shared array
            if !p.isHead, let length = head.headers.first(name: "content-length").flatMap({ Int($0) }), length > 0 {
                p.body.reserveCapacity(min(length, Self.maxReservation))
            }
            pending = p
        case .body(let chunk):
            pending = nil  // avoid a copy of the body array while appending
            chunk.withUnsafeReadableBytes { p.body.append(contentsOf: $0) }
            pending = p
        case .end:
            pending = nil
            p.timeout.cancel()
            guard let head = p.head else {
                p.promise.fail(S3TransportFailure.lost("response ended without a head", responseStarted: true))
                context.close(promise: nil)
                return
            }
            // An answer before the whole request was sent (a refusal): the rest of the body
            // will not follow, so the connection cannot carry another request.
            let keepAlive = head.isKeepAlive && outgoing == nil
            outgoing = nil
            let response = S3HTTPResponse(
                status: Int(head.status.code), headers: head.headers.map { (name: $0.name, value: $0.value) },
                body: p.body, keepAlive: keepAlive)
            if !keepAlive {
                closedReason = "the server asked to close the connection, or answered before the request was sent"
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
        outgoing = nil
        guard let p = pending else { return }
        pending = nil
        p.timeout.cancel()
        p.promise.fail(failure)
    }
}
