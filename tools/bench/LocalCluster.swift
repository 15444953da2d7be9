import Foundation
import TxnClient

/// The three-process cluster on this machine, wired the way `tools/cluster/cluster.py`
/// wires it: a `blob-store` (objects in files, fsync'd before a PUT is answered), a
/// `consensus` server (a durable, group-committed log) and a `txn-coordinator` that
/// reaches both through location URLs over Unix sockets, each server with generated
/// credentials or tokens.
///
/// The coordinator gets `--blob s3://BUCKET?endpoint=unix:///.../blob-store.sock` with the
/// blob-store's access key in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, and
/// `--consensus consensus+unix:///.../consensus.sock?token_file=...`. Every process is
/// registered with the cleanup registry, so an interrupt or an error stops it. With
/// `.postgres`, no consensus server is started and the coordinator gets the database's
/// `postgres://` URL instead.
struct LocalCluster: Sendable {
    /// Where the coordinator keeps consensus state.
    enum ConsensusChoice: Sendable {
        /// A `consensus` server process started with the cluster.
        case server
        /// A database the caller runs: the coordinator gets this `postgres://` URL, and
        /// `environment` is added to its environment (PGPASSWORD, when one is needed).
        case postgres(url: String, environment: [String: String])
    }

    let blobStore: BlobStoreProcess
    /// Nil when the coordinator uses PostgreSQL.
    let consensus: BenchServer?
    let coordinator: BenchServer
    /// What clients present to the coordinator (its `--token-file`).
    let coordinatorToken: [UInt8]
    /// The coordinator's `--blob` and `--consensus` arguments, for the run's header.
    let blobURL: String
    let consensusURL: String

    /// Starts the storage servers, then the coordinator on them, each in a directory of
    /// its own under `directory` (secrets in `directory/secrets`, mode 0700). If one fails
    /// to start, those already running are stopped.
    static func start(directory: String, consensus choice: ConsensusChoice = .server) throws(BenchError) -> LocalCluster {
        let secrets = "\(directory)/secrets"
        try System.makeDirectory(secrets)
        guard chmod(secrets, 0o700) == 0 else { throw BenchError("chmod \(secrets): \(System.errnoText())") }
        let consensusTokenFile = "\(secrets)/consensus.token"
        let coordinatorTokenFile = "\(secrets)/coordinator.token"
        let coordinatorToken = System.randomHex(32)
        try System.writePrivateFile(consensusTokenFile, System.randomHex(32) + "\n")
        try System.writePrivateFile(coordinatorTokenFile, coordinatorToken + "\n")

        let roles = ["blob-store", "consensus", "txn-coordinator"].map { "\(directory)/\($0)" }
        for role in roles { try System.makeDirectory(role) }

        // Servers already running when a later one fails to start, stopped on the way out.
        var started: [BenchServer] = []
        do throws(BenchError) {
            let blobStore = try BlobStoreProcess.start(directory: roles[0], unix: true, maxObjectBytes: maxObjectBytes)
            started.append(blobStore.server)
            var environment = ProcessInfo.processInfo.environment
            let consensus: BenchServer?
            let consensusURL: String
            switch choice {
            case .server:
                let server = try BenchServer.start(
                    name: "the consensus server", executable: try OpenedConsensus.serverExecutable(),
                    arguments: ["--data-dir", "\(roles[1])/log", "--token-file", consensusTokenFile],
                    directory: roles[1], unix: true, socketName: "consensus.sock", listener: "rpc")
                started.append(server)
                consensus = server
                consensusURL = "consensus+unix://\(try socketPath(server))?token_file=\(consensusTokenFile)"
            case .postgres(let url, let extra):
                consensus = nil
                consensusURL = url
                environment.merge(extra) { _, new in new }
            }

            let blobURL = "s3://\(BlobStoreProcess.bucket)?endpoint=unix://\(try socketPath(blobStore.server))"
            environment["AWS_ACCESS_KEY_ID"] = blobStore.credentials.accessKeyID
            environment["AWS_SECRET_ACCESS_KEY"] = blobStore.credentials.secretAccessKey
            let coordinator = try BenchServer.start(
                name: "the txn-coordinator", executable: try CoordinatorProcess.executable(),
                arguments: ["--blob", blobURL, "--consensus", consensusURL, "--token-file", coordinatorTokenFile],
                directory: roles[2], unix: true, socketName: "rpc.sock", listener: "rpc", environment: environment)
            return LocalCluster(
                blobStore: blobStore, consensus: consensus, coordinator: coordinator,
                coordinatorToken: Array(coordinatorToken.utf8), blobURL: blobURL, consensusURL: consensusURL)
        } catch {
            for server in started.reversed() { server.stopQuietly() }
            throw error
        }
    }

    /// Starts a cluster in `directory`, runs one level of `load` with `clients` clients on
    /// four fresh data shards, and stops the cluster (requiring every server to exit 0),
    /// also stopping it when anything fails.
    static func measure(
        clients: Int, load: CoordinatorLoad, directory: String, consensus: ConsensusChoice = .server
    ) async throws(BenchError) -> CoordinatorLoad.LevelResult {
        try System.makeDirectory(directory)
        let cluster = try start(directory: directory, consensus: consensus)
        let client = TxnClient(cluster.clientConfiguration)
        let result: CoordinatorLoad.LevelResult
        do throws(BenchError) {
            let shards = try await load.createShards(client: client, level: clients)
            result = try await load.measureLevel(clients: clients, shared: client, shards: shards)
        } catch {
            print("")
            await client.shutdown()
            cluster.stopQuietly()
            throw error
        }
        await client.shutdown()
        try cluster.stop()
        return result
    }

    /// Batches of the benchmark's transactions are far smaller; this only bounds what the
    /// blob-store buffers for one PUT.
    static let maxObjectBytes = 256 << 20

    /// How a TxnClient reaches the coordinator.
    var clientConfiguration: TxnClient.Configuration {
        TxnClient.Configuration(endpoint: coordinator.endpoint, token: coordinatorToken)
    }

    /// Stops the coordinator (it drains: queued commits finish and apply), then the
    /// storage servers, and requires each to exit 0. Every server is stopped even when an
    /// earlier one fails; the first failure is thrown.
    func stop() throws(BenchError) {
        var firstFailure: BenchError?
        for server in servers {
            do throws(BenchError) {
                try server.stop()
            } catch {
                firstFailure = firstFailure ?? error
            }
        }
        if let firstFailure { throw firstFailure }
    }

    /// Stops every server on a failure path, ignoring how they end.
    func stopQuietly() {
        for server in servers { server.stopQuietly() }
    }

    /// The processes in the order they are stopped: clients' first.
    private var servers: [BenchServer] { [coordinator] + (consensus.map { [$0] } ?? []) + [blobStore.server] }

    /// The Unix socket a server started with `unix: true` listens on.
    private static func socketPath(_ server: BenchServer) throws(BenchError) -> String {
        guard case .unix(let path) = server.endpoint else {
            throw BenchError("\(server.name) listens on \(server.endpoint), not on a Unix socket")
        }
        return path
    }
}
