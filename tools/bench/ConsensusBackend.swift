#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import ArgumentParser
import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistRPC
import Synchronization

/// Which `Consensus` implementation the consensus benchmark drives.
enum ConsensusBackendKind: String, CaseIterable, ExpressibleByArgument, Codable, Sendable {
    /// `MemoryConsensus`: no disk at all; measures the calling overhead alone.
    case mem
    /// `LogConsensus`: the durable log engine with group-commit fsync, in this process.
    case log
    /// The `consensus` server process (the same log engine behind the RPC), reached
    /// through `RemoteConsensus` over loopback TCP.
    case remote
    /// The same server process, reached over a Unix socket instead.
    case remoteUnix = "remote-unix"

    var displayName: String {
        switch self {
        case .mem: return "MemoryConsensus"
        case .log: return "LogConsensus"
        case .remote: return "RemoteConsensus/TCP"
        case .remoteUnix: return "RemoteConsensus/unix"
        }
    }

    /// Whether this backend talks to a separate `consensus` process.
    var isRemote: Bool { self == .remote || self == .remoteUnix }
}

/// A comma-separated list of consensus backends, e.g. `log,remote`.
struct ConsensusBackendList: ExpressibleByArgument {
    var kinds: [ConsensusBackendKind]

    init?(argument: String) {
        let parsed = argument.split(separator: ",").map {
            ConsensusBackendKind(rawValue: $0.trimmingCharacters(in: .whitespaces))
        }
        guard !parsed.isEmpty, parsed.allSatisfy({ $0 != nil }) else { return nil }
        kinds = parsed.compactMap { $0 }
    }

    init(_ kinds: [ConsensusBackendKind]) { self.kinds = kinds }

    var defaultValueDescription: String { kinds.map(\.rawValue).joined(separator: ",") }

    static var allValueStrings: [String] { ConsensusBackendKind.allCases.map(\.rawValue) }

    /// Rejects an empty list or one naming a backend twice; `flag` names the option.
    func validate(flag: String) throws {
        guard !kinds.isEmpty else { throw ValidationError("\(flag) names no backend") }
        guard Set(kinds).count == kinds.count else { throw ValidationError("\(flag) names a backend twice") }
    }
}

/// Durability work a backend did so far; only the in-process log engine exposes any.
struct FlushCounters: Sendable {
    var fsyncs: Int
    var records: Int
    var bytes: Int

    static func - (a: FlushCounters, b: FlushCounters) -> FlushCounters {
        FlushCounters(fsyncs: a.fsyncs - b.fsyncs, records: a.records - b.records, bytes: a.bytes - b.bytes)
    }
}

/// An opened backend plus the hooks the benchmark needs beyond the `Consensus` protocol.
struct OpenedConsensus: Sendable {
    var consensus: any Consensus
    /// Current durability counters, or nil for a backend whose disk work is not visible
    /// from here (none at all, or in another process).
    var counters: @Sendable () -> FlushCounters?
    /// Flushes and releases the backend; it is not used afterwards. Fails when a server
    /// process did not shut down cleanly.
    var close: @Sendable () async throws(BenchError) -> Void

    /// Opens a fresh instance of `kind`, keeping any files under `directory`. A remote
    /// backend's client opens `remoteConnections` connections (see
    /// `RemoteConnections`) for a load of `writers`.
    static func open(
        _ kind: ConsensusBackendKind, directory: String, writers: Int, remoteConnections: RemoteConnections
    ) throws(BenchError) -> OpenedConsensus {
        switch kind {
        case .mem:
            return OpenedConsensus(consensus: MemoryConsensus(), counters: { nil }, close: {})
        case .log:
            let log: LogConsensus
            do {
                log = try LogConsensus.open(directory: directory)
            } catch {
                throw BenchError("cannot open LogConsensus in \(directory): \(error)")
            }
            return OpenedConsensus(
                consensus: log,
                counters: {
                    let s = log.stats()
                    return FlushCounters(fsyncs: s.fsyncCount, records: s.recordsWritten, bytes: s.bytesWritten)
                },
                close: { await log.close() })
        case .remote, .remoteUnix:
            return try openRemote(unix: kind == .remoteUnix, directory: directory, connections: remoteConnections.count(writers: writers))
        }
    }

    /// The most connections a remote backend opens, whatever the writer count.
    static let maxConnections = 64

    /// Unix socket paths longer than this do not fit `sockaddr_un` on every platform.
    private static let maxSocketPathBytes = 100

    /// Starts a `consensus` server on `directory/log` and connects a `RemoteConsensus`
    /// to it. The server is also registered with the cleanup registry, so an interrupt
    /// stops it.
    private static func openRemote(unix: Bool, directory: String, connections: Int) throws(BenchError) -> OpenedConsensus {
        let executable = try serverExecutable()
        // The socket goes in the backend's directory unless that path would be too long,
        // in which case it gets a short private directory of its own.
        let socketDirectory: String? =
            unix && "\(directory)/rpc.sock".utf8.count > maxSocketPathBytes
            ? try System.makeScratchDirectory(under: "/tmp", prefix: "pbsock-") : nil
        let socketPath = "\(socketDirectory ?? directory)/rpc.sock"
        let listen = unix ? "unix:\(socketPath)" : "127.0.0.1:0"
        let server: SpawnedServer
        do {
            server = try SpawnedServer.start(
                executable: executable,
                arguments: [
                    "--data-dir", "\(directory)/log", "--listen", listen, "--metrics-listen", "off",
                    "--log-level", "warning",
                ],
                readyFile: "\(directory)/ready", logPath: "\(directory)/consensus.log")
        } catch {
            if let socketDirectory { System.removeTree(socketDirectory) }
            throw BenchError("cannot start \(executable): \(error)")
        }

        // Stopping is one action, run either by `close` or by an interrupt; it records
        // the exit status for `close` to judge.
        let exitStatus = Mutex<Int32?>(nil)
        let stopToken = cleanup.register("stop the consensus server (pid \(server.pid))") {
            server.signal(SIGTERM)
            let status = server.wait()
            exitStatus.withLock { $0 = status }
            if let socketDirectory { System.removeTree(socketDirectory) }
        }

        let endpoint: RemoteConsensus.Endpoint
        if unix {
            endpoint = .unix(path: socketPath)
        } else {
            do {
                endpoint = try tcpEndpoint(try server.address("rpc"))
            } catch {
                cleanup.run(stopToken)
                throw BenchError("the consensus server's ready file has no usable rpc address: \(error)")
            }
        }
        let client = RemoteConsensus(.init(endpoint: endpoint, connections: connections))
        return OpenedConsensus(
            consensus: client, counters: { nil },
            close: { () async throws(BenchError) in
                await client.shutdown()
                cleanup.run(stopToken)
                let status = exitStatus.withLock { $0 }
                guard status == 0 else {
                    throw BenchError(
                        "the consensus server (pid \(server.pid)) ended with status "
                            + "\(status.map { "\($0)" } ?? "unknown") after SIGTERM:\n\(server.logTail())")
                }
            })
    }

    /// Parses `host:port` as the server writes it in its ready file.
    private static func tcpEndpoint(_ address: String) throws(BenchError) -> RemoteConsensus.Endpoint {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            port > 0
        else {
            throw BenchError("'\(address)' is not host:port")
        }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return .tcp(host: host, port: port)
    }

    /// The `consensus` executable built next to this one.
    static func serverExecutable() throws(BenchError) -> String {
        try System.siblingExecutable("consensus", neededBy: "the remote backends")
    }
}

/// How many connections the remote backends' client opens: the client's default pool
/// (`pool`, how an application uses it: every writer's requests multiplexed over a few
/// connections), or one connection per writer (`per-writer`, at most 64), or a number.
enum RemoteConnections: Codable, Equatable, ExpressibleByArgument, CustomStringConvertible {
    case pool
    case perWriter
    case fixed(Int)

    init?(argument: String) {
        switch argument {
        case "pool": self = .pool
        case "per-writer": self = .perWriter
        default:
            guard let n = Int(argument), n > 0 else { return nil }
            self = .fixed(n)
        }
    }

    func count(writers: Int) -> Int {
        switch self {
        case .pool: RemoteConsensus.Configuration(endpoint: .unix(path: "/")).connections
        case .perWriter: min(writers, OpenedConsensus.maxConnections)
        case .fixed(let n): n
        }
    }

    var description: String {
        switch self {
        case .pool: "the client's default pool (\(count(writers: 1)) connections), shared by every writer"
        case .perWriter: "one connection per writer (at most \(OpenedConsensus.maxConnections))"
        case .fixed(let n): "\(n) connection(s), shared by every writer"
        }
    }

    var defaultValueDescription: String {
        switch self {
        case .pool: "pool"
        case .perWriter: "per-writer"
        case .fixed(let n): "\(n)"
        }
    }
}
