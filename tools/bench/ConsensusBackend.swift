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
import PersistPostgres
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
    /// `PostgresConsensus` (a postgres-nio pool) against PostgreSQL: the server this run
    /// starts, or the one `--postgres-url` names.
    case postgres

    var displayName: String {
        switch self {
        case .mem: return "MemoryConsensus"
        case .log: return "LogConsensus"
        case .remote: return "RemoteConsensus/TCP"
        case .remoteUnix: return "RemoteConsensus/unix"
        case .postgres: return "PostgresConsensus"
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
        case .postgres:
            throw BenchError("the postgres backend is opened with openPostgres(url:writers:)")
        }
    }

    /// Opens a `PostgresConsensus` on the `postgres://` URL (password from its
    /// password_file or PGPASSWORD), with one pooled connection per writer (at most 64)
    /// unless the URL sets max_connections.
    static func openPostgres(url: String, writers: Int) async throws(BenchError) -> OpenedConsensus {
        guard case .postgres(var location) = try? LocationURL.consensus(url) else {
            throw BenchError("not a valid postgres:// URL: \(PostgresLocation.redactingPassword(url))")
        }
        if location.maxConnections == nil { location.maxConnections = min(max(writers, 1), maxConnections) }
        let consensus: PostgresConsensus
        do {
            consensus = try await PostgresConsensus.open(try PostgresConsensus.Configuration(location: location))
        } catch {
            throw BenchError("cannot open PostgresConsensus: \(error)")
        }
        return OpenedConsensus(consensus: consensus, counters: { nil }, close: { await consensus.close() })
    }

    /// The most connections a remote backend opens, whatever the writer count.
    static let maxConnections = 64

    /// Starts a `consensus` server on `directory/log` and connects a `RemoteConsensus`
    /// to it.
    private static func openRemote(unix: Bool, directory: String, connections: Int) throws(BenchError) -> OpenedConsensus {
        let server = try BenchServer.start(
            name: "the consensus server", executable: try serverExecutable(), arguments: ["--data-dir", "\(directory)/log"],
            directory: directory, unix: unix, socketName: "rpc.sock", listener: "rpc")
        let client = RemoteConsensus(.init(endpoint: server.endpoint, connections: connections))
        return OpenedConsensus(
            consensus: client, counters: { nil },
            close: { () async throws(BenchError) in
                await client.shutdown()
                try server.stop()
            })
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
