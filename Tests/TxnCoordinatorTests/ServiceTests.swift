#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Logging
import PersistClient
import PersistCodec
import PersistConformance
import PersistCore
import PersistLocation
import PersistRPC
import PersistServices
import ServiceLifecycle
import Testing
import TxnClient
import TxnCoordinator

let serviceTestLogger: Logger = {
    var l = Logger(label: "coordinator-service-test")
    l.logLevel = .critical
    return l
}()

/// Runs a coordinator over in-memory storage behind a TxnCoordinatorService on a free
/// loopback port for the duration of `body`, then drains it.
func withCoordinatorServer<T: Sendable>(
    token: [UInt8]? = nil, maxBytesPerCommit: Int = 64 << 20,
    _ body: @Sendable (RPCEndpoint, TxnCoordinator) async throws -> T
) async throws -> T {
    let blob = MemoryBlob()
    let consensus = MemoryConsensus()
    let client = PersistClient(blob: blob, consensus: consensus, logger: serviceTestLogger)
    let coordinator = try await TxnCoordinator.open(
        client: client, consensus: consensus,
        configuration: .init(txnsShard: ShardID.random(), maxBytesPerCommit: maxBytesPerCommit), logger: serviceTestLogger)
    let (addresses, continuation) = AsyncStream<[ListenAddress]>.makeStream()
    let service = TxnCoordinatorService(
        coordinator: coordinator, listen: [.tcp(host: "127.0.0.1", port: 0)],
        settings: .init(token: token, maxInFlightPerConnection: 256, helloTimeout: .seconds(60), metricsPrefix: "test_coordinator"),
        logger: serviceTestLogger, onListening: { continuation.yield($0) })
    let group = ServiceGroup(services: [service], logger: serviceTestLogger)
    return try await withThrowingTaskGroup(of: T?.self) { tasks in
        tasks.addTask {
            try await group.run()
            return nil
        }
        var iterator = addresses.makeAsyncIterator()
        guard case .tcp(let host, let port) = try #require(await iterator.next()?.first) else {
            throw ConformanceFailure("expected a TCP listener")
        }
        let result: Result<T, any Error>
        do { result = .success(try await body(.tcp(host: host, port: port), coordinator)) } catch { result = .failure(error) }
        await group.triggerGracefulShutdown()
        try await tasks.waitForAll()
        await coordinator.shutdown()
        return try result.get()
    }
}

func patientTxnClient(_ endpoint: RPCEndpoint, token: [UInt8]? = nil) -> TxnClient {
    TxnClient(.init(endpoint: endpoint, token: token, connectTimeout: .seconds(120), requestTimeout: .seconds(120)))
}

func rows(_ keys: [String], diff: Int64 = 1) -> [RowWrite] {
    keys.map { RowWrite(key: Array($0.utf8), value: Array("v".utf8), diff: diff) }
}

func keys(_ updates: [Update]) -> [String] {
    updates.flatMap { u in Array(repeating: String(decoding: u.key, as: UTF8.self), count: max(0, Int(u.diff))) }.sorted()
}

/// Every coordinator operation through TxnClient and the RPC service, in one process.
@Suite struct ServiceTests {
    @Test func everyOperationThroughTheClient() async throws {
        try await withCoordinatorServer { endpoint, _ in
            let txns = patientTxnClient(endpoint)
            let orders = try await txns.createShard("orders")
            let again = try await txns.createShard("orders")
            #expect(orders.id == again.id, "creating a name twice gives the same shard")
            _ = try await txns.createShard("stock")
            #expect(try await txns.listShards().map(\.name).sorted() == ["orders", "stock"])

            let registeredAt = try await txns.register([.name("orders"), .name("stock")])
            #expect(try await txns.listShards().allSatisfy(\.registered))

            let t1 = try await txns.commit([
                ShardWrites(shard: .name("orders"), rows: rows(["o1", "o2"])),
                ShardWrites(shard: .id(orders.id), rows: rows(["o3"])),
                ShardWrites(shard: .name("stock"), rows: rows(["widget"], diff: -1)),
            ])
            #expect(t1 > registeredAt)
            let (asOf, contents) = try await txns.read(.name("orders"), asOf: t1)
            #expect(asOf == t1)
            #expect(keys(contents) == ["o1", "o2", "o3"])
            let before = try await txns.read(.name("orders"), asOf: t1 - 1)
            #expect(before.rows.isEmpty, "nothing is visible before the commit's timestamp")
            let stock = try await txns.read(.name("stock"))
            #expect(stock.rows.map(\.diff) == [-1])

            // An explicit timestamp, then a closed one.
            let t2 = try await txns.commit([ShardWrites(shard: .name("orders"), rows: rows(["o4"]))], at: t1 + 10)
            #expect(t2 == t1 + 10)
            do {
                _ = try await txns.commit([ShardWrites(shard: .name("orders"), rows: rows(["late"]))], at: t1 + 5)
                Issue.record("a commit below the txns upper was accepted")
            } catch let e as CoordinatorError {
                #expect(e.code == .timestampClosed)
                #expect((e.nextUsable ?? 0) > t2)
            }

            // A history read keeps each row's commit time; a plain read forwards them.
            let history = try await txns.readHistory(.name("orders"), asOf: t2)
            #expect(history.asOf == t2)
            let timed = history.rows.map { (String(decoding: $0.key, as: UTF8.self), $0.time) }.sorted { $0.0 < $1.0 }
            #expect(timed.map(\.0) == ["o1", "o2", "o3", "o4"])
            #expect(timed.map(\.1) == [t1, t1, t1, t2])
            let early = try await txns.readHistory(.name("orders"), asOf: t2 - 1)
            #expect(early.rows.allSatisfy { $0.time == t1 } && early.rows.count == 3)
            #expect(try await txns.read(.name("orders"), asOf: t2).rows.allSatisfy { $0.time == t2 })

            let status = try await txns.status()
            #expect(status.shards == 2 && status.registered == 2)
            #expect(status.upper > t2)

            #expect(try await txns.compact(since: t1) >= t1)
            #expect(try await txns.status().since >= t1)

            let forgotten = try await txns.forget([.name("stock")])
            #expect(forgotten > t2)
            do {
                _ = try await txns.commit([ShardWrites(shard: .name("stock"), rows: rows(["x"]))])
                Issue.record("a commit to a forgotten shard was accepted")
            } catch let e as CoordinatorError {
                #expect(e.code == .notRegistered)
            }
            await txns.shutdown()
        }
    }

    @Test func typedErrorsKeepTheConnection() async throws {
        try await withCoordinatorServer { endpoint, _ in
            let txns = patientTxnClient(endpoint)
            let cases: [(@Sendable () async throws -> Void, CoordinatorError.Code)] = [
                ({ @Sendable in _ = try await txns.read(.name("nope")) }, .unknownShard),
                ({ @Sendable in _ = try await txns.commit([]) }, .badRequest),
                ({ @Sendable in _ = try await txns.createShard("bad name") }, .badRequest),
                ({ @Sendable in _ = try await txns.register([.id(ShardID.random())]) }, .unknownShard),
            ]
            for (request, code) in cases {
                do {
                    try await request()
                    Issue.record("expected \(code)")
                } catch let e as CoordinatorError {
                    #expect(e.code == code, "\(e)")
                }
            }
            _ = try await txns.createShard("fine")
            do {
                _ = try await txns.commit([ShardWrites(shard: .name("fine"), rows: rows(["k"]))])
                Issue.record("a commit to an unregistered shard was accepted")
            } catch let e as CoordinatorError {
                #expect(e.code == .notRegistered)
            }
            // The same connection still serves.
            #expect(try await txns.status().shards == 1)
            await txns.shutdown()
        }
    }

    @Test func subscriptionsStreamUntilCancelled() async throws {
        try await withCoordinatorServer { endpoint, _ in
            let txns = patientTxnClient(endpoint)
            _ = try await txns.createShard("feed")
            _ = try await txns.register([.name("feed")])
            let t1 = try await txns.commit([ShardWrites(shard: .name("feed"), rows: rows(["a"]))])
            let subscription = try await txns.subscribe(.name("feed"), from: t1)
            var seen: [String] = []
            var progress: Timestamp = 0
            var committedSecond = false
            var t2: Timestamp = 0
            for try await event in subscription {
                switch event {
                case .updates(let u): seen += keys(u)
                case .progress(let p):
                    progress = p
                    if !committedSecond, p > t1 {
                        committedSecond = true
                        t2 = try await txns.commit([ShardWrites(shard: .name("feed"), rows: rows(["b"]))])
                    }
                }
                if committedSecond && progress > t2 { break }
            }
            #expect(seen.sorted() == ["a", "b"])
            await subscription.cancel()
            // Iteration ends after the cancel.
            var after = 0
            for try await _ in subscription { after += 1 }
            #expect(try await txns.status().shards == 1)
            await txns.shutdown()
        }
    }

    @Test func tokensAreRequiredWhenConfigured() async throws {
        let token = Array("coordinator-secret".utf8)
        try await withCoordinatorServer(token: token) { endpoint, _ in
            let good = patientTxnClient(endpoint, token: token)
            _ = try await good.createShard("guarded")
            let bad = patientTxnClient(endpoint, token: Array("wrong".utf8))
            await #expect(throws: StorageError.self) { _ = try await bad.status() }
            let none = patientTxnClient(endpoint)
            await #expect(throws: (any Error).self) { _ = try await none.status() }
            #expect(try await good.status().shards == 1)
            await good.shutdown()
            await bad.shutdown()
            await none.shutdown()
        }
    }

    /// A commit over the coordinator's size limit is refused with a typed error, and a
    /// frame over the RPC's limit is refused before it is buffered; the server goes on.
    @Test func oversizedCommitsAreRefused() async throws {
        try await withCoordinatorServer(maxBytesPerCommit: 1 << 20) { endpoint, _ in
            let txns = patientTxnClient(endpoint)
            _ = try await txns.createShard("big")
            _ = try await txns.register([.name("big")])
            let huge = (0..<20).map { RowWrite(key: Array("k\($0)".utf8), value: Array(repeating: 7, count: 100 << 10)) }
            do {
                _ = try await txns.commit([ShardWrites(shard: .name("big"), rows: huge)])
                Issue.record("a 2 MB commit passed a 1 MiB limit")
            } catch let e as CoordinatorError {
                #expect(e.code == .badRequest, "\(e)")
            }
            #expect(try await txns.read(.name("big")).rows.isEmpty)
            // A frame announcing more than the RPC accepts is refused outright.
            guard case .tcp(let host, let port) = endpoint else { return }
            let raw = try await RawSocket(host: host, port: port)
            try await raw.send([0xFF, 0xFF, 0xFF, 0x7F])
            let refusal = try #require(try await raw.frame())
            guard case .error(let e) = try CoordinatorRPC.decodeResponse(refusal).response else {
                Issue.record("expected an error answer")
                return
            }
            #expect(e.message.contains("rpc frame length"))
            #expect(try await txns.status().shards == 1)
            await txns.shutdown()
        }
    }

    /// A snapshot larger than one answer frame's share arrives in pieces and is put back
    /// together by the client, rows intact.
    @Test func largeReadsArriveInPieces() async throws {
        try await withCoordinatorServer { endpoint, _ in
            let txns = patientTxnClient(endpoint)
            _ = try await txns.createShard("wide")
            _ = try await txns.register([.name("wide")])
            var last: Timestamp = 0
            for batch in 0..<3 {
                let rows = (0..<40).map { i in
                    RowWrite(key: Array("b\(batch)-\(i)".utf8), value: Array(repeating: UInt8(i), count: 100 << 10))
                }
                last = try await txns.commit([ShardWrites(shard: .name("wide"), rows: rows)])
            }
            let (asOf, rows) = try await txns.read(.name("wide"), asOf: last)
            #expect(asOf == last)
            #expect(rows.count == 120, "12 MB of rows, more than one piece")
            #expect(Set(rows.map { String(decoding: $0.key, as: UTF8.self) }).count == 120)
            #expect(rows.allSatisfy { $0.value.count == 100 << 10 && $0.diff == 1 })
            // On the wire: `updates` pieces under the read's id, then the `snapshot`.
            guard case .tcp(let host, let port) = endpoint else { return }
            let raw = try await RawSocket(host: host, port: port)
            try await raw.send(CoordinatorRPC.encode(request: .read(shard: .name("wide"), asOf: last), id: 41))
            var pieces = 0
            var total = 0
            while let payload = try await raw.frame() {
                let (id, answer) = try CoordinatorRPC.decodeResponse(payload)
                #expect(id == 41)
                if case .updates(let piece) = answer {
                    pieces += 1
                    total += piece.count
                    continue
                }
                guard case .snapshot(_, let rest) = answer else {
                    Issue.record("unexpected answer \(answer)")
                    break
                }
                total += rest.count
                break
            }
            #expect(pieces >= 10, "a 12 MB snapshot is sent in pieces of about 1 MiB, got \(pieces + 1) frames")
            #expect(total == 120)
            await txns.shutdown()
        }
    }

    /// Hand-made broken frames get error answers and the server goes on serving.
    @Test func garbageFramesAreRefused() async throws {
        try await withCoordinatorServer { endpoint, _ in
            guard case .tcp(let host, let port) = endpoint else { return }
            let garbage = try await RawSocket(host: host, port: port)
            try await garbage.send(Array("GET / HTTP/1.1\r\n\r\n".utf8))
            let refusal = try #require(try await garbage.frame())
            guard case .error(let e) = try CoordinatorRPC.decodeResponse(refusal).response else {
                Issue.record("expected an error answer")
                return
            }
            #expect(e.code == .badRequest)
            #expect(try await garbage.frame() == nil, "the connection closes after an untrusted frame")
            // A consensus request sent to the coordinator is refused by kind.
            let wrongProtocol = try await RawSocket(host: host, port: port)
            try await wrongProtocol.send(ConsensusRPC.encode(request: .listKeys, id: 3))
            let answer = try #require(try await wrongProtocol.frame())
            guard case .error(let kindError) = try CoordinatorRPC.decodeResponse(answer).response else {
                Issue.record("expected an error answer")
                return
            }
            #expect(kindError.message.contains("coordinator request"))
            let txns = patientTxnClient(endpoint)
            #expect(try await txns.status().shards == 0)
            await txns.shutdown()
        }
    }
}

/// A blocking TCP socket for hand-made frames; blocking calls run on their own thread.
final class RawSocket: Sendable {
    let fd: Int32

    init(host: String, port: Int) async throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = in_port_t(UInt16(port).bigEndian)
        inet_pton(AF_INET, host, &sa.sin_addr)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw ConformanceFailure("connect failed: errno \(errno)") }
        var timeout = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        self.fd = fd
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) async throws {
        let fd = self.fd
        try await SpawnedServer.offThread {
            var done = 0
            while done < bytes.count {
                let n = bytes[done...].withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                guard n > 0 else { throw ConformanceFailure("send failed: errno \(errno)") }
                done += n
            }
        }
    }

    /// The next frame's payload, or nil once the server has closed the connection.
    func frame() async throws -> [UInt8]? {
        let fd = self.fd
        return try await SpawnedServer.offThread { () throws -> [UInt8]? in
            func read(_ count: Int) throws -> [UInt8]? {
                var buffer = [UInt8](repeating: 0, count: count)
                var done = 0
                while done < count {
                    let n = buffer[done...].withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
                    if n == 0 { return nil }
                    guard n > 0 else { throw ConformanceFailure("recv failed: errno \(errno)") }
                    done += n
                }
                return buffer
            }
            guard let prefix = try read(4) else { return nil }
            return try read(try RPCFraming.payloadLength(prefix: prefix))
        }
    }
}
