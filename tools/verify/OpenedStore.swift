import Foundation
import PersistCore
import PersistLocation
import PersistPostgres
import PersistServices

/// The store a command checks, opened from location URLs through `Backends` (as the
/// coordinator opens it) and wrapped so that it is only read, with bounded retries.
struct OpenedStore: Sendable {
    let blob: (any Blob)?
    let consensus: any Consensus
    private let closers: [@Sendable () async -> Void]

    /// Opens `consensus` and, when given, `blob`. Refuses (usage) URLs that do not parse,
    /// local directories that do not exist (opening would create an empty store there),
    /// and missing credentials, token or password files.
    ///
    /// Opening a `postgres://` consensus creates its table when the database has none
    /// (an empty table reads as an empty store); nothing else is written.
    static func open(
        blob blobURL: String?, consensus consensusURL: String, attempts: Int
    ) async throws(VerifyFailure) -> OpenedStore {
        let policy = AttemptPolicy(attempts: max(1, attempts))
        do {
            switch try LocationURL.consensus(consensusURL) {
            case .log(let path): try requireDirectory(path, for: "--consensus")
            case .memory, .remote, .remoteUnix, .postgres: break
            }
            if let blobURL {
                switch try LocationURL.blob(blobURL) {
                case .file(let path): try requireDirectory(path, for: "--blob")
                case .memory, .s3: break
                }
            }
        } catch let e as LocationParseError {
            throw .usage("\(e)")
        } catch let e as VerifyFailure {
            throw e
        } catch {
            throw .usage("\(error)")
        }
        let consensus: OpenedBackend<any Consensus>
        do {
            consensus = try await Backends.consensus(consensusURL, postgres: PostgresBackends.opener())
        } catch {
            throw classify(error, opening: "--consensus \(consensusURL)")
        }
        var closers: [@Sendable () async -> Void] = [consensus.close]
        var blob: (any Blob)?
        if let blobURL {
            do {
                let opened = try Backends.blob(blobURL)
                blob = ReadOnlyBlob(inner: opened.backend, policy: policy)
                closers.append(opened.close)
            } catch {
                let close = consensus.close
                Task { await close() }
                throw classify(error, opening: "--blob \(blobURL)")
            }
        }
        return OpenedStore(blob: blob, consensus: ReadOnlyConsensus(inner: consensus.backend, policy: policy), closers: closers)
    }

    /// Releases the backends (closes a log, connection pools).
    func close() async {
        for c in closers { await c() }
    }

    private static func requireDirectory(_ path: String, for option: String) throws(VerifyFailure) {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .usage("\(option): \(path) is not an existing directory")
        }
    }

    /// Bad arguments (credentials, token files) are usage errors; anything else means
    /// the store could not be reached.
    private static func classify(_ error: any Error, opening what: String) -> VerifyFailure {
        if let e = error as? StorageError {
            if e.code == .invalidArgument { return .usage("\(what): \(e.message)") }
            return VerifyFailure(status: .unreachable, message: "\(what): storage unreachable: \(e)")
        }
        if let e = error as? LocationParseError { return .usage("\(e)") }
        return VerifyFailure(status: .unreachable, message: "\(what): \(error)")
    }
}
