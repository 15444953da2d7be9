import NIOCore
import NIOHTTP1
import Synchronization

/// The open connections of a blob-store and whether each is busy with a request, so
/// that a graceful shutdown can reach them: once draining, idle connections (including
/// ones accepted a moment later, and ones with half a request head) are closed, and busy
/// ones are closed after the response in flight.
///
/// (NIO's own `ChannelShouldQuiesceEvent` is not used: a connection it closes with part
/// of a head buffered makes the HTTP error handler write into a pipeline that already
/// considers itself finished.)
final class BlobStoreConnections: Sendable {
    private struct Entry {
        var channel: any Channel
        var busy = false
    }

    private struct State {
        var draining = false
        var entries: [ObjectIdentifier: Entry] = [:]
    }

    private let state = Mutex(State())

    /// Tracks `channel`; closes it at once if the server is already draining.
    func register(_ channel: any Channel) {
        let draining = state.withLock { s in
            s.entries[ObjectIdentifier(channel)] = Entry(channel: channel)
            return s.draining
        }
        if draining { channel.close(promise: nil) }
    }

    func unregister(_ channel: any Channel) {
        _ = state.withLock { $0.entries.removeValue(forKey: ObjectIdentifier(channel)) }
    }

    /// A request head arrived on `channel`. Returns false when the server is draining
    /// and the request must not be started.
    func beginRequest(on channel: any Channel) -> Bool {
        state.withLock { s in
            guard !s.draining else { return false }
            s.entries[ObjectIdentifier(channel)]?.busy = true
            return true
        }
    }

    /// The response to the request on `channel` is complete. Returns false when the
    /// connection must now close because the server is draining.
    func endRequest(on channel: any Channel) -> Bool {
        state.withLock { s in
            s.entries[ObjectIdentifier(channel)]?.busy = false
            return !s.draining
        }
    }

    /// Whether a graceful shutdown has begun.
    var isDraining: Bool { state.withLock { $0.draining } }

    /// Starts draining: closes every idle connection.
    func drain() {
        let idle = state.withLock { s in
            s.draining = true
            return s.entries.values.filter { !$0.busy }.map(\.channel)
        }
        for channel in idle { channel.close(promise: nil) }
    }

    var count: Int { state.withLock { $0.entries.count } }

    /// Closes every connection still tracked.
    func closeAll() {
        let channels = state.withLock { $0.entries.values.map(\.channel) }
        for channel in channels { channel.close(promise: nil) }
    }
}

/// When a connection may be closed for idleness: only while the server waits for the
/// client (for a new request, or for more of the current one), never while the server
/// itself is still working on a request whose body has fully arrived. Pure.
struct BlobStoreIdleState {
    /// Requests fully received minus responses fully written. Negative after an answer
    /// given before its request ended (the request's end then brings it back to zero).
    private(set) var pending = 0

    mutating func requestEnded() { pending += 1 }

    mutating func responseEnded() { pending -= 1 }

    /// Whether a read timeout should close the connection.
    var closeOnReadTimeout: Bool { pending <= 0 }
}

/// Closes a connection on `IdleStateHandler`'s read-idle event when `BlobStoreIdleState`
/// allows it. Sits between the HTTP codec and the async channel.
final class BlobStoreIdleCloser: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var state = BlobStoreIdleState()

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = unwrapInboundIn(data) { state.requestEnded() }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data) { state.responseEnded() }
        context.write(data, promise: promise)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if let idle = event as? IdleStateHandler.IdleStateEvent, idle == .read {
            if state.closeOnReadTimeout { context.close(promise: nil) }
            return
        }
        context.fireUserInboundEventTriggered(event)
    }
}
