import Foundation
import NIOCore
import NIOSSL
import NIOTLS
import PersistCore

extension S3Blob {
    /// How the certificate of an `https://` endpoint is checked.
    public struct TLSOptions: Hashable, Sendable {
        /// PEM files whose certificates are trusted as roots besides the system's (a
        /// private CA; a test's own CA).
        public var additionalTrustRootFiles: [String]
        /// Whether the server's certificate chain and name are verified. `false` is unsafe
        /// (anyone on the path can read and alter the traffic, secrets included) and meant
        /// for tests only.
        public var verifyCertificates: Bool

        /// Options; by default the system's roots and full verification.
        public init(additionalTrustRootFiles: [String] = [], verifyCertificates: Bool = true) {
            self.additionalTrustRootFiles = additionalTrustRootFiles
            self.verifyCertificates = verifyCertificates
        }
    }
}

/// The TLS side of `S3Blob`'s connections: the context its options make, the name a
/// certificate must carry, and what a failed handshake means.
enum S3TLS {
    /// What every connection of one `S3Blob` to an `https` endpoint is made with, checked
    /// once when the client is made.
    struct Setup: Sendable {
        /// The client context (trust roots loaded).
        var context: NIOSSLContext
        /// The name sent in SNI and checked against the certificate, or nil for an IP
        /// address.
        var serverName: String?
        /// What the certificate must name (the server name or the IP address), for messages.
        var certificateName: String
    }

    /// The setup for `configuration`'s `https` endpoint. Throws a determinate
    /// `invalidArgument` when the server name cannot go in SNI or a trust root file
    /// cannot be used; the name is checked first, as it needs no file.
    static func setup(_ configuration: S3Blob.Configuration) throws(StorageError) -> Setup {
        let serverName = configuration.tlsServerName
        if let serverName, let problem = problem(withServerName: serverName) {
            throw .determinate(
                .invalidArgument,
                "cannot use \(serverName.debugDescription) as the TLS server name of \(configuration.endpoint): \(problem)")
        }
        return Setup(
            context: try makeContext(configuration.tls), serverName: serverName,
            certificateName: host(ofHostHeader: configuration.effectiveHostHeader))
    }

    /// The longest server name SNI carries, in bytes of UTF-8.
    static let maxServerNameBytes = 255

    /// Why `name` cannot be sent in SNI, or nil when it can. The rules are NIOSSL's (its
    /// client handler refuses such a name when a connection is set up): not an IP
    /// address, no NUL byte, 1 to 255 bytes of UTF-8.
    static func problem(withServerName name: String) -> String? {
        let bytes = name.utf8.count
        if bytes == 0 { return "it is empty" }
        if name.utf8.contains(0) { return "it contains a NUL character" }
        if bytes > maxServerNameBytes {
            return "it is \(bytes) bytes long, more than the \(maxServerNameBytes) a TLS server name may have (with virtual-host "
                + "addressing the name is bucket.host; path_style=true names the bucket in the path instead)"
        }
        if (try? SocketAddress(ipAddress: name, port: 0)) != nil { return "it is an IP address, which SNI does not carry" }
        return nil
    }

    /// The client context for `options`: TLS 1.2 or later, the system's roots plus the
    /// given files, full verification unless switched off. Throws a determinate
    /// `invalidArgument` naming a trust root file that cannot be used.
    static func makeContext(_ options: S3Blob.TLSOptions) throws(StorageError) -> NIOSSLContext {
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.minimumTLSVersion = .tlsv12
        if !options.verifyCertificates { configuration.certificateVerification = .none }
        var roots: [NIOSSLCertificate] = []
        for path in options.additionalTrustRootFiles {
            func refused(_ why: String) -> StorageError { .determinate(.invalidArgument, "the CA file \(path) (ca_file=) \(why)") }
            let data: Data
            do {
                data = try S3LocalFile.read(path)
            } catch {
                switch error {
                case .missing, .directory: throw refused("does not exist or is a directory")
                case .unreadable(let reason): throw refused("cannot be read: \(reason)")
                case .tooLarge(let limit): throw refused("is larger than \(limit) bytes, too large for a PEM file of CA certificates")
                }
            }
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMBytes(Array(data))
            } catch {
                throw refused("cannot be read as PEM certificates: \(error)")
            }
            guard !certificates.isEmpty else { throw refused("holds no PEM certificate") }
            roots += certificates
        }
        if !roots.isEmpty { configuration.additionalTrustRoots = [.certificates(roots)] }
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch {
            throw .determinate(.invalidArgument, "cannot set up TLS: \(error)")
        }
    }

    /// The host of a `Host` header value: without its port, an IPv6 literal without its
    /// brackets.
    static func host(ofHostHeader hostHeader: String) -> String {
        if hostHeader.hasPrefix("["), let close = hostHeader.firstIndex(of: "]") {
            return String(hostHeader[hostHeader.index(after: hostHeader.startIndex)..<close])
        }
        if let colon = hostHeader.lastIndex(of: ":") {
            let port = hostHeader[hostHeader.index(after: colon)...]
            if !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }) { return String(hostHeader[..<colon]) }
        }
        return hostHeader
    }

    /// The name sent in SNI and looked for in the server's certificate: the host of the
    /// `Host` header (so the bucket's name under virtual-host addressing), or nil for an
    /// IP address, which goes in no SNI and is matched against the certificate's IP
    /// addresses instead.
    static func serverName(hostHeader: String) -> String? {
        let name = host(ofHostHeader: hostHeader)
        if name.isEmpty || (try? SocketAddress(ipAddress: name, port: 0)) != nil { return nil }
        return name
    }

    /// What a failed handshake (or TLS set-up) means: the error to report and whether
    /// another attempt may help. Nothing of a request was written, so it is determinate.
    /// Certificate problems are `rejected` and final; a connection dropped during the
    /// handshake is `unavailable` and may be retried.
    static func failure(_ error: any Error, endpoint: String, name: String) -> (error: StorageError, retryable: Bool) {
        let prefix = "TLS handshake with \(endpoint) (as \(name)) failed"
        if let extra = error as? NIOSSLExtraError {
            if extra == .failedToValidateHostname {
                return (
                    .determinate(
                        .rejected,
                        "\(prefix): the server's certificate does not name \(name) (host name mismatch; the name is the "
                            + "endpoint's host, or bucket.host with virtual-host addressing, where path_style=true uses the "
                            + "endpoint's host alone)"),
                    false
                )
            }
            return (.determinate(.invalidArgument, "\(prefix): \(extra)"), false)
        }
        if let ssl = error as? NIOSSLError {
            guard case .handshakeFailed(let reason) = ssl else { return (.determinate(.unavailable, "\(prefix): \(ssl)"), false) }
            let text = "\(reason)"
            if text.contains("CERTIFICATE_VERIFY_FAILED") {
                return (
                    .determinate(
                        .rejected,
                        "\(prefix): the server's certificate is not trusted (not issued by a trusted root, expired or "
                            + "otherwise invalid; a private CA's root can be added with ca_file=/path.pem)"),
                    false
                )
            }
            if text.contains("WRONG_VERSION_NUMBER") || text.contains("PACKET_LENGTH_TOO_LONG") || text.contains("HTTP_REQUEST") {
                return (.determinate(.unavailable, "\(prefix): the server does not speak TLS there (an http:// endpoint?)"), false)
            }
            if case .sslError(let stack) = reason, stack.contains(.eofDuringHandshake) {
                return (.determinate(.unavailable, "\(prefix): the server closed the connection during the handshake"), true)
            }
            return (.determinate(.unavailable, "\(prefix): \(reason)"), false)
        }
        switch error as? S3TLSHandshakeHandler.Failure {
        case .timedOut?:
            return (.determinate(.timeout, "\(prefix): no answer within the connect timeout"), true)
        case .closed?:
            return (.determinate(.unavailable, "\(prefix): the connection closed during the handshake"), true)
        case nil:
            return (.determinate(.unavailable, "\(prefix): \(error)"), true)
        }
    }
}

/// Stands right after the TLS handler of a new connection and reports the handshake's
/// end through `promise`: success when it completes, the first error otherwise (the
/// connection closing, or `deadline` passing once connected, which also closes it). It
/// then leaves the pipeline, so requests only start on a connection whose handshake is
/// done. The deadline is only watched from the moment the connection is up: a TCP connect
/// that stalls is the bootstrap's connect timeout to report.
final class S3TLSHandshakeHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny

    enum Failure: Error {
        case timedOut
        case closed
    }

    private var promise: EventLoopPromise<Void>?
    private let deadline: NIODeadline
    private var timer: Scheduled<Void>?
    private var context: ChannelHandlerContext?

    init(deadline: NIODeadline, promise: EventLoopPromise<Void>) {
        self.deadline = deadline
        self.promise = promise
    }

    /// Whether `event` is the TLS handler's report of a finished handshake.
    static func isHandshakeCompleted(_ event: Any) -> Bool {
        guard let event = event as? TLSUserEvent, case .handshakeCompleted = event else { return false }
        return true
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
        // Usually added before the TCP connect, whose own timeout covers that wait.
        if context.channel.isActive { startTimer(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        startTimer(context: context)
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish(.failure(Failure.closed))
        self.context = nil
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let completed = Self.isHandshakeCompleted(event)
        if completed { finish(.success(())) }
        context.fireUserInboundEventTriggered(event)
        if completed { context.pipeline.syncOperations.removeHandler(context: context, promise: nil) }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        finish(.failure(error))
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(Failure.closed))
        context.fireChannelInactive()
    }

    /// Starts the wait for the handshake once connected; the deadline stays the one
    /// given, so connecting and the handshake share one budget.
    private func startTimer(context: ChannelHandlerContext) {
        guard timer == nil, promise != nil else { return }
        let this = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: deadline) { this.value.deadlinePassed() }
    }

    private func deadlinePassed() {
        guard promise != nil else { return }
        finish(.failure(Failure.timedOut))
        context?.close(promise: nil)
    }

    private func finish(_ result: Result<Void, any Error>) {
        guard let promise else { return }
        self.promise = nil
        timer?.cancel()
        timer = nil
        promise.completeWith(result)
    }
}
