import Foundation
import Logging
import NIOConcurrencyHelpers
import PersistCore
import PersistLocation
import PersistRPC
import PersistS3

/// Opens blob and consensus backends from location URLs (`LocationURL`), the one way
/// every tool and server turns a URL into a backend.
///
/// `mem://name` backends live in a process-wide table, so two opens of the same name
/// (a coordinator and a test in one process, say) share one store.
///
/// `postgres://` consensus URLs are opened by the PersistPostgres module, which this one
/// does not link (nor does anything below it): programs that accept them pass its
/// opener (`PostgresBackends.opener()`) to `consensus(_:logger:postgres:)`. Without one,
/// such URLs are refused with an error saying so.
public enum Backends {
    /// Opens a `postgres://` location (`url` is its text, for `OpenedBackend.location`).
    public typealias PostgresOpener =
        @Sendable (_ location: PostgresLocation, _ url: String, _ logger: Logger) async throws -> OpenedBackend<any Consensus>

    /// `consensus(_:logger:)`, with `postgres://` locations opened by `postgres`, or
    /// refused when it is nil.
    public static func consensus(
        _ text: String, logger: Logger = Logger(label: "persist.backends"), postgres: PostgresOpener?
    ) async throws -> OpenedBackend<any Consensus> {
        if case .postgres(let location) = try LocationURL.consensus(text), let postgres {
            return try await postgres(location, text, logger)
        }
        return try consensus(text, logger: logger)
    }

    /// Opens the consensus backend `text` names. `postgres://` locations need
    /// `consensus(_:logger:postgres:)` and are refused here.
    public static func consensus(
        _ text: String, logger: Logger = Logger(label: "persist.backends")
    ) throws -> OpenedBackend<any Consensus> {
        switch try LocationURL.consensus(text) {
        case .memory(let name):
            return OpenedBackend(backend: MemoryStores.shared.consensus(name), location: text, close: {})
        case .log(let path):
            let log = try LogConsensus.open(directory: path, logger: logger)
            return OpenedBackend(backend: log, location: text, close: { await log.close() })
        case .remote(let host, let port, let tokenFile):
            let remote = RemoteConsensus(
                .init(endpoint: .tcp(host: host, port: port), token: try tokenFile.map(readToken)), logger: logger)
            return OpenedBackend(backend: remote, location: text, close: { await remote.shutdown() })
        case .remoteUnix(let path, let tokenFile):
            let remote = RemoteConsensus(
                .init(endpoint: .unix(path: path), token: try tokenFile.map(readToken)), logger: logger)
            return OpenedBackend(backend: remote, location: text, close: { await remote.shutdown() })
        case .postgres:
            throw StorageError.determinate(
                .invalidArgument,
                "\(text): postgres:// consensus needs the PersistPostgres module, which this program does not "
                    + "include (txn-coordinator, txn-verify and persist-bench do)")
        }
    }

    /// Opens the blob backend `text` names. An `s3://` location signs with `credentials`
    /// when given, else with the key pair its URL and the environment lead to (the order
    /// is `S3CredentialSource`'s); `environment` stands in for the process's variables.
    public static func blob(
        _ text: String, credentials: S3Credentials? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "persist.backends")
    ) throws -> OpenedBackend<any Blob> {
        switch try LocationURL.blob(text) {
        case .memory(let name):
            return OpenedBackend(backend: MemoryStores.shared.blob(name), location: text, close: {})
        case .file(let path):
            return OpenedBackend(backend: try FileBlob(root: path), location: text, close: {})
        case .s3(let location):
            let resolved: S3Credentials
            do {
                resolved = try credentials ?? S3Credentials.resolve(for: location, environment: environment)
            } catch {
                throw StorageError.determinate(.invalidArgument, "\(text): \(error)")
            }
            let s3 = try S3Blob(location: location, credentials: resolved, logger: logger)
            return OpenedBackend(backend: s3, location: text, close: { await s3.shutdown() })
        }
    }

    /// A token file's contents without surrounding whitespace. Empty files are refused.
    public static func readToken(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw StorageError.determinate(.invalidArgument, "cannot read the token file \(path)")
        }
        let token = Array(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines).utf8)
        guard !token.isEmpty else { throw StorageError.determinate(.invalidArgument, "the token file \(path) is empty") }
        return token
    }
}

/// The process's named in-memory stores.
final class MemoryStores: Sendable {
    static let shared = MemoryStores()

    private let consensusStores = NIOLockedValueBox<[String: MemoryConsensus]>([:])
    private let blobStores = NIOLockedValueBox<[String: MemoryBlob]>([:])

    func consensus(_ name: String) -> MemoryConsensus {
        consensusStores.withLockedValue { stores in
            if let s = stores[name] { return s }
            let s = MemoryConsensus()
            stores[name] = s
            return s
        }
    }

    func blob(_ name: String) -> MemoryBlob {
        blobStores.withLockedValue { stores in
            if let s = stores[name] { return s }
            let s = MemoryBlob()
            stores[name] = s
            return s
        }
    }
}
