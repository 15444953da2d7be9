import Foundation
#if canImport(Glibc)
import Glibc
#endif
import NIOCore
import NIOPosix

/// Where a server listens: a TCP address or a Unix socket path.
///
/// Text forms (the `--listen` flags of every server): `127.0.0.1:7000`, `[::1]:7000`,
/// `localhost:0` (port 0 picks a free port; the ready file reports the real one), and
/// `unix:/path/to.sock`.
public enum ListenAddress: Hashable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)

    public init(parsing text: String) throws(ListenAddressError) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst("unix:".count))
            guard path.hasPrefix("/") else { throw ListenAddressError(text: text, reason: "a Unix socket path must be absolute") }
            // sockaddr_un holds 108 bytes including the terminator.
            guard path.utf8.count < 108 else { throw ListenAddressError(text: text, reason: "Unix socket paths are limited to 107 bytes") }
            self = .unix(path: path)
            return
        }
        guard let colon = text.lastIndex(of: ":") else {
            throw ListenAddressError(text: text, reason: "expected host:port or unix:/path")
        }
        var host = String(text[..<colon])
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        guard !host.isEmpty else { throw ListenAddressError(text: text, reason: "missing host (use 127.0.0.1 for loopback)") }
        guard let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
            throw ListenAddressError(text: text, reason: "the port must be a number from 0 to 65535")
        }
        self = .tcp(host: host, port: port)
    }

    public var description: String {
        switch self {
        case .tcp(let host, let port): host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case .unix(let path): "unix:\(path)"
        }
    }
}

/// Why a listen address was refused.
public struct ListenAddressError: Error, Hashable, Sendable, CustomStringConvertible {
    public let text: String
    public let reason: String
    public var description: String { "invalid listen address \"\(text)\": \(reason)" }
}

/// Binding server sockets the same way for every service.
public enum Listener {
    /// Binds `address` and wraps each accepted connection with `configure`, which adds the
    /// protocol's handlers and returns the connection's async wrapper. A Unix socket gets
    /// mode 0600 before the first connection can be accepted (it is bound with a umask that
    /// masks group and other bits); an existing socket file at the path is replaced.
    public static func bind<Connection: Sendable>(
        _ address: ListenAddress,
        group: any EventLoopGroup,
        configure: @escaping @Sendable (any Channel) -> EventLoopFuture<Connection>
    ) async throws -> NIOAsyncChannel<Connection, Never> {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
        switch address {
        case .tcp(let host, let port):
            return try await bootstrap.bind(host: host, port: port, childChannelInitializer: configure)
        case .unix(let path):
            let fd = try bindPrivateUnixSocket(path)
            do {
                return try await bootstrap.bind(fd, childChannelInitializer: configure)
            } catch {
                close(fd)
                throw error
            }
        }
    }

    /// Creates, binds and listens on a Unix stream socket whose file has mode 0600 from
    /// the moment it exists: the mode comes from the umask at bind time, so the umask is
    /// narrowed around the (synchronous) bind instead of chmod-ing afterwards, which would
    /// leave a window in which another user could connect. A stale socket file at the
    /// path is removed first; any other kind of file there is an error.
    static func bindPrivateUnixSocket(_ path: String) throws -> CInt {
        var st = stat()
        if lstat(path, &st) == 0 {
            guard (st.st_mode & S_IFMT) == S_IFSOCK else {
                throw IOError(errnoCode: EEXIST, reason: "\(path) exists and is not a socket")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw IOError(errnoCode: errno, reason: "socket") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        let bytes = Array(path.utf8)
        guard bytes.count < capacity else {
            close(fd)
            throw IOError(errnoCode: ENAMETOOLONG, reason: "Unix socket path \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let old = umask(0o177)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        let bindErrno = errno
        umask(old)
        guard bound == 0 else {
            close(fd)
            throw IOError(errnoCode: bindErrno, reason: "bind \(path)")
        }
        guard listen(fd, 1024) == 0 else {
            let e = errno
            close(fd)
            throw IOError(errnoCode: e, reason: "listen \(path)")
        }
        return fd
    }

    /// Binds `address` with connections handled entirely by channel handlers that
    /// `initialize` installs: nothing per connection runs on Swift's cooperative pool, so
    /// accepting never waits for a task to be scheduled. Returns the listening channel;
    /// closing it stops accepting.
    public static func bindHandlers(
        _ address: ListenAddress,
        group: any EventLoopGroup,
        initialize: @escaping @Sendable (any Channel) -> EventLoopFuture<Void>
    ) async throws -> any Channel {
        let bootstrap = ServerBootstrap(group: group)
            .serverChannelOption(.backlog, value: 1024)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelOption(.tcpOption(.tcp_nodelay), value: 1)
            .childChannelOption(.maxMessagesPerRead, value: 16)
            .childChannelInitializer(initialize)
        switch address {
        case .tcp(let host, let port):
            return try await bootstrap.bind(host: host, port: port).get()
        case .unix(let path):
            let fd = try bindPrivateUnixSocket(path)
            do {
                return try await bootstrap.withBoundSocket(fd).get()
            } catch {
                close(fd)
                throw error
            }
        }
    }

    /// The address a bound server channel really listens on (the port chosen for port 0).
    public static func boundAddress(of channel: any Channel, requested: ListenAddress) -> ListenAddress {
        if case .tcp(let host, _) = requested, let port = channel.localAddress?.port { return .tcp(host: host, port: port) }
        return requested
    }
}

/// The file a server writes once it listens, so launchers and tests learn the ports it
/// picked without parsing logs: one line per listener, `<name> <address>`, e.g.
/// `rpc 127.0.0.1:41234`, `metrics 127.0.0.1:41235`. Written to a temporary file and
/// renamed into place, so a reader never sees half of it.
public enum ReadyFile {
    public static func write(_ entries: [(name: String, address: ListenAddress)], to path: String) throws {
        let text = entries.map { "\($0.name) \($0.address)\n" }.joined()
        let temp = path + ".tmp"
        try Data(text.utf8).write(to: URL(fileURLWithPath: temp))
        guard rename(temp, path) == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
        }
    }

    /// Parses a ready file's text into name -> address.
    public static func parse(_ text: String) throws(ListenAddressError) -> [String: ListenAddress] {
        var result: [String: ListenAddress] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { throw ListenAddressError(text: String(line), reason: "expected \"<name> <address>\"") }
            result[String(parts[0])] = try ListenAddress(parsing: String(parts[1]))
        }
        return result
    }
}
