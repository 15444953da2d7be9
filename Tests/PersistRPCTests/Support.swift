#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PersistCodec
import PersistConformance
import PersistCore
import PersistLocation
import PersistRPC
import PersistServices
import ServiceLifecycle
import Synchronization
import Testing

let testLogger: Logger = {
    var l = Logger(label: "test")
    l.logLevel = .critical
    return l
}()

/// A fresh directory under /tmp for one test, removed by `remove()`.
struct ScratchDirectory: Sendable {
    let path: String

    init(_ label: String) {
        path = NSTemporaryDirectory() + "swift-txn-wal-\(label)-\(UUID().uuidString.prefix(8))"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// Runs a ConsensusService in this process on a free loopback port for the duration of
/// `body`, then drains it.
func withConsensusServer<T: Sendable>(
    backend: any Consensus, token: [UInt8]? = nil, maxInFlight: Int = 512, helloTimeout: Duration = .seconds(60),
    _ body: @Sendable (ListenAddress) async throws -> T
) async throws -> T {
    let (addresses, continuation) = AsyncStream<[ListenAddress]>.makeStream()
    let service = ConsensusService(
        backend: backend, listen: [.tcp(host: "127.0.0.1", port: 0)],
        configuration: .init(token: token, maxInFlightPerConnection: maxInFlight, helloTimeout: helloTimeout),
        logger: testLogger,
        onListening: { continuation.yield($0) })
    let group = ServiceGroup(services: [service], logger: testLogger)
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        var iterator = addresses.makeAsyncIterator()
        let bound = try #require(await iterator.next()?.first)
        let result: Result<T, any Error>
        do { result = .success(try await body(bound)) } catch { result = .failure(error) }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        return try result.get()
    }
}

/// A client for tests that only want answers: deadlines long enough that a machine busy
/// with the rest of the suite never trips them (the tests that are about timeouts and
/// lost connections set their own).
func patientClient(_ endpoint: RemoteConsensus.Endpoint, token: [UInt8]? = nil, connections: Int = 2) -> RemoteConsensus {
    RemoteConsensus(
        .init(
            endpoint: endpoint, token: token, connections: connections, connectTimeout: .seconds(120),
            requestTimeout: .seconds(120)))
}

extension ListenAddress {
    var remoteEndpoint: RemoteConsensus.Endpoint {
        switch self {
        case .tcp(let host, let port): .tcp(host: host, port: port)
        case .unix(let path): .unix(path: path)
        }
    }
}

/// Runs blocking socket calls on a thread of their own, off Swift's cooperative pool
/// (which the in-process server needs to make progress).
func offload<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await SpawnedServer.offThread(body)
}

/// A blocking socket for sending hand-made (and deliberately broken) frames. Reads time
/// out after 10 s so a server that fails to answer fails the test instead of hanging it.
/// The async methods do their blocking calls through `offload`.
final class RawConnection: Sendable {
    let fd: Int32

    convenience init(_ address: ListenAddress) async throws {
        try await self.init(connectingTo: address)
    }

    private init(connectingTo address: ListenAddress) async throws {
        guard case .tcp(let host, let port) = address else { throw ConformanceFailure("raw connections use TCP") }
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &sa.sin_addr)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw ConformanceFailure("connect failed: errno \(errno)") }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) async throws {
        try await offload { try self.sendBlocking(bytes) }
    }

    func sendBlocking(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw ConformanceFailure("send failed: errno \(errno)") }
            done += n
        }
    }

    func send(_ request: ConsensusRequest, id: UInt64) async throws {
        try await send(ConsensusRPC.encode(request: request, id: id))
    }

    /// Exactly `count` bytes, or nil at end of stream.
    func read(_ count: Int) throws -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = buffer[done...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n == 0 { return nil }
            guard n > 0 else { throw ConformanceFailure("recv failed or timed out: errno \(errno)") }
            done += n
        }
        return buffer
    }

    /// The next response frame, or nil if the server closed the connection.
    func response() async throws -> (id: UInt64, response: ConsensusResponse)? {
        try await offload { try self.responseBlocking() }
    }

    func responseBlocking() throws -> (id: UInt64, response: ConsensusResponse)? {
        guard let prefix = try read(4) else { return nil }
        let length = try ConsensusRPC.payloadLength(prefix: prefix)
        guard let payload = try read(length) else { return nil }
        return try ConsensusRPC.decodeResponse(payload)
    }

    /// True once the server has closed its side (reads see end of stream).
    func isClosedByServer() async throws -> Bool {
        try await offload { try self.read(1) == nil }
    }
}

/// Servers started by a test, killed at the end whatever happened.
final class ServerPool: Sendable {
    private let servers = Mutex<[SpawnedServer]>([])

    func add(_ s: SpawnedServer) {
        servers.withLock { $0.append(s) }
    }

    func killAll() {
        for s in servers.withLock({ $0 }) { s.kill9() }
    }
}
