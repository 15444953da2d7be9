import ArgumentParser
import Foundation
import Logging
import PersistClient
import PersistCore
import PersistLocation
import PersistPostgres
import PersistServices
import ServerCLI
import ServiceLifecycle
import TxnCoordinator

/// `txn-coordinator`: the service applications talk to (DESIGN.md §2, §6).
@main
struct TxnCoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "txn-coordinator",
        abstract: "Commits transactions that write many shards atomically, and serves reads and subscriptions.",
        discussion: """
            Clients (TxnClient, txnctl) create and register data shards, commit \
            transactions (rows per shard; the coordinator picks a timestamp unless one is \
            given, and groups commits that arrive together into one compare-and-set on the \
            txns shard), read a shard at a timestamp, subscribe to its changes, compact and \
            ask for status. A commit is answered once it is durable; apply and tidy run \
            right after it.

            Storage comes from location URLs: embedded (--data-dir alone: file:///<dir>/blob \
            and log:///<dir>/consensus), or the storage servers \
            (--consensus consensus://127.0.0.1:7100?token_file=/path, --blob \
            s3://bucket?endpoint=https://host:port, or http://, or none for AWS; \
            ca_file=/ca.pem trusts a private CA; credentials from \
            credentials_file=/path&profile=name in the URL, else AWS_ACCESS_KEY_ID and \
            AWS_SECRET_ACCESS_KEY, else AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials \
            with AWS_PROFILE), or PostgreSQL/CockroachDB for consensus \
            (--consensus postgres://user@host:5432/db?password_file=/path, or PGPASSWORD \
            set; a password in the URL is refused; see deploy/postgres.md). On start it \
            recovers: committed but unapplied \
            transactions are applied, and timestamps continue above every earlier one.

            SIGTERM or SIGINT drains: no new requests, running ones answered, queued \
            commits finished and applied, then exit 0.

            Example:
              txn-coordinator --data-dir /srv/txn --listen 127.0.0.1:7300 --token-file /srv/token
            """)

    @Option(
        name: .customLong("data-dir"),
        help: ArgumentHelp(
            "Directory for embedded storage: blob in <dir>/blob, consensus in <dir>/consensus.",
            discussion: "Used for whichever of --blob and --consensus is not given.", valueName: "dir"))
    var dataDirectory: String?

    @Option(
        name: .customLong("blob"),
        help: ArgumentHelp("Blob location URL (mem://, file:///dir, s3://bucket?endpoint=...).", valueName: "url"))
    var blob: String?

    @Option(
        name: .customLong("consensus"),
        help: ArgumentHelp(
            "Consensus location URL (mem://, log:///dir, consensus://host:port, consensus+unix:///path, postgres://user@host:port/db).",
            valueName: "url"))
    var consensus: String?

    @Option(
        name: .customLong("txns-shard"),
        help: ArgumentHelp(
            "The txns shard's id (s + UUID). Coordinators sharing storage share it by default.",
            discussion: "Give different ids to keep independent sets of data shards on the same storage.",
            valueName: "id"))
    var txnsShard: String = TxnCoordinatorCommand.defaultTxnsShard

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp(
            "File holding the shared token clients must present (whitespace around it is ignored).",
            discussion: "Without it any client that reaches the sockets is served.", valueName: "path"))
    var tokenFile: String?

    @Flag(
        name: .customLong("no-group-commit"),
        help: "Commit each transaction with its own compare-and-set instead of grouping concurrent ones.")
    var noGroupCommit = false

    @Flag(
        name: .customLong("no-compaction"),
        help: ArgumentHelp(
            "Never compact shards: every batch stays as it was written.",
            discussion: """
                For tests and debugging: with it, a shard's parts are exactly the batches its \
                transactions committed, which txn-verify can replay row by row. Storage grows \
                without bound, so do not use it in production.
                """))
    var noCompaction = false

    @Option(
        name: .customLong("max-in-flight"),
        help: "Requests one connection may have running at once; beyond it the server stops reading from that connection.")
    var maxInFlight = 1024

    @Option(
        name: .customLong("max-retry-backoff-ms"),
        help: ArgumentHelp(
            "Longest pause, in milliseconds, between retries of a failing blob or consensus call.",
            discussion: """
                Retries start 4 ms apart and double up to this. Every client's commit waits on \
                these calls, so once storage is back (say a database restart) the coordinator \
                should notice within about this long; the persist library's own default, 16 s, \
                suits background readers better. Raise it when many coordinators share a \
                database that struggles under their retries.
                """,
            valueName: "ms"))
    var maxRetryBackoffMilliseconds = 1000

    @Option(
        name: .customLong("shutdown-timeout-seconds"),
        help: ArgumentHelp(
            "How long each step of a stop (SIGTERM/SIGINT) may take before the process exits anyway.",
            discussion: """
                A stop first lets open connections finish their running requests (then \
                closes them), then finishes and applies the commits already queued; each \
                step gets this long, so a stop takes at most about twice it. If storage is \
                unreachable the second step cannot end, and the coordinator gives up and \
                exits with status 1: commits not yet acknowledged stay in doubt for their \
                clients (as after a crash), nothing acknowledged is lost.
                """,
            valueName: "s"))
    var shutdownTimeoutSeconds = 30

    @OptionGroup var server: ServerOptions

    static let defaultTxnsShard = "s7a5a0000-0000-4000-8000-000000000001"
    static let defaultListen = "127.0.0.1:7300"
    static let defaultMetrics = "127.0.0.1:7301"

    func validate() throws {
        guard (try? ShardID(parsing: txnsShard)) != nil else { throw ValidationError("--txns-shard: not a shard id: \(txnsShard)") }
        guard dataDirectory != nil || (blob != nil && consensus != nil) else {
            throw ValidationError("give --data-dir, or both --blob and --consensus")
        }
        guard maxInFlight >= 1 else { throw ValidationError("--max-in-flight must be at least 1") }
        guard shutdownTimeoutSeconds >= 1 else { throw ValidationError("--shutdown-timeout-seconds must be at least 1") }
        guard maxRetryBackoffMilliseconds >= 4 else {
            throw ValidationError("--max-retry-backoff-ms must be at least 4 (the first retry's pause)")
        }
        _ = try server.listenAddresses(fallback: Self.defaultListen)
        _ = try server.metricsAddress(fallback: Self.defaultMetrics)
    }

    func run() async throws {
        let (logger, registry) = ServerProcess.bootstrap(label: "txn-coordinator", logLevel: server.logLevel)
        try FaultSwitches.prepare(logger: logger)
        let token: [UInt8]?
        do {
            token = try tokenFile.map(Backends.readToken)
        } catch {
            throw ValidationError("--token-file: \(error)")
        }
        if token == nil { logger.warning("no --token-file: any client that reaches the sockets is served") }

        let blobURL = blob ?? "file://\(dataDirectory ?? "")/blob"
        let consensusURL = consensus ?? "log://\(dataDirectory ?? "")/consensus"
        let openedBlob: OpenedBackend<any Blob>
        let openedConsensus: OpenedBackend<any Consensus>
        do {
            openedBlob = try Backends.blob(blobURL, logger: logger)
            openedConsensus = try await Backends.consensus(consensusURL, logger: logger, postgres: PostgresBackends.opener())
        } catch {
            // A refused postgres:// URL may carry a password: never log it.
            logger.critical(
                "cannot open storage",
                metadata: [
                    "blob": "\(blobURL)", "consensus": "\(PostgresLocation.redactingPassword(consensusURL))", "error": "\(error)",
                ])
            throw ExitCode(2)
        }
        var persistConfig = PersistConfig()
        persistConfig.compactionEnabled = !noCompaction
        persistConfig.maxBackoff = .milliseconds(maxRetryBackoffMilliseconds)
        let client = PersistClient(
            blob: openedBlob.backend, consensus: openedConsensus.backend, config: persistConfig, logger: logger)
        let coordinator: TxnCoordinator
        do {
            coordinator = try await TxnCoordinator.open(
                client: client, consensus: openedConsensus.backend,
                configuration: .init(txnsShard: try ShardID(parsing: txnsShard), groupCommit: !noGroupCommit), logger: logger)
        } catch {
            logger.critical("cannot open the txns shard", metadata: ["error": "\(error)"])
            await openedConsensus.close()
            await openedBlob.close()
            throw ExitCode(2)
        }
        logger.info("coordinator ready", metadata: ["txns_shard": "\(txnsShard)", "blob": "\(blobURL)", "consensus": "\(consensusURL)"])

        let metricsAddress = try server.metricsAddress(fallback: Self.defaultMetrics)
        let ready = ReadyReporter(
            path: server.readyFile, expected: metricsAddress == nil ? ["rpc"] : ["rpc", "metrics"], logger: logger)
        var services: [any Service] = [
            TxnCoordinatorService(
                coordinator: coordinator, listen: try server.listenAddresses(fallback: Self.defaultListen),
                settings: .init(
                    token: token, maxInFlightPerConnection: maxInFlight, helloTimeout: .seconds(10),
                    metricsPrefix: "coordinator_rpc"),
                logger: logger, drainDeadline: .seconds(Int64(shutdownTimeoutSeconds)),
                onListening: { ready.report("rpc", $0) })
        ]
        if let metricsAddress {
            services.append(
                MetricsEndpoint(
                    address: metricsAddress, registry: registry, logger: logger,
                    onListening: { ready.report("metrics", [$0]) }))
        }
        var failed = false
        do {
            try await ServerRunner.run(services, logger: logger)
        } catch {
            logger.critical("txn-coordinator failed", metadata: ["error": "\(error)"])
            failed = true
        }
        guard await Self.finishes(within: .seconds(shutdownTimeoutSeconds), { await coordinator.shutdown() }) else {
            logger.critical(
                "shutdown did not finish: storage unreachable? exiting without it; unacknowledged commits stay in doubt",
                metadata: ["timeout_s": "\(shutdownTimeoutSeconds)"])
            throw ExitCode(1)
        }
        await openedConsensus.close()
        await openedBlob.close()
        logger.info("coordinator closed")
        if failed { throw ExitCode(1) }
    }

    /// Runs `work` and reports whether it finished within `limit`. When it does not, it
    /// is cancelled and left behind (the process is about to exit).
    private static func finishes(within limit: Duration, _ work: @escaping @Sendable () async -> Void) async -> Bool {
        let (outcomes, sink) = AsyncStream<Bool>.makeStream()
        let worker = Task {
            await work()
            sink.yield(true)
        }
        let timer = Task {
            try? await Task.sleep(for: limit)
            sink.yield(false)
        }
        var first = outcomes.makeAsyncIterator()
        let finished = await first.next() ?? false
        timer.cancel()
        if !finished { worker.cancel() }
        return finished
    }
}
