import ArgumentParser
import Foundation
import Logging
import PersistLocation
import PersistRPC
import PersistServices
import ServerCLI
import ServiceLifecycle

/// `consensus`: the durable compare-and-set server (DESIGN.md §2).
@main
struct ConsensusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "consensus",
        abstract: "Serves compare-and-set on versioned keys from a durable, group-committed log.",
        discussion: """
            Clients (RemoteConsensus, location consensus://host:port or \
            consensus+unix:///path) send head, compare-and-set, scan, truncate and list-keys \
            requests over a length-prefixed binary RPC; many requests may be in flight per \
            connection. A compare-and-set is answered only after its log record is fsync'd.

            SIGTERM or SIGINT drains: the server stops reading new requests, answers the ones \
            in flight, closes the log and exits 0.

            Example:
              consensus --data-dir /srv/consensus --listen 127.0.0.1:7100 \\
                --listen unix:/srv/consensus.sock --token-file /srv/token
            """)

    @Option(
        name: .customLong("data-dir"),
        help: ArgumentHelp(
            "Directory of the log (created if missing; locked while the server runs).", valueName: "dir"))
    var dataDirectory: String

    @Option(
        name: .customLong("token-file"),
        help: ArgumentHelp(
            "File holding the shared token clients must present (whitespace around it is ignored).",
            discussion: """
                Without it the server serves anyone who can reach its sockets; keep it on \
                loopback or a 0600 Unix socket then.
                """,
            valueName: "path"))
    var tokenFile: String?

    @Option(
        name: .customLong("segment-size-mib"),
        help: "Size at which the log rolls to a new segment file, in MiB.")
    var segmentSizeMiB = 64

    @Option(
        name: .customLong("max-in-flight"),
        help: "Requests one connection may have running at once; beyond it the server stops reading from that connection.")
    var maxInFlight = 512

    @OptionGroup var server: ServerOptions

    func validate() throws {
        guard segmentSizeMiB >= 1 else { throw ValidationError("--segment-size-mib must be at least 1") }
        guard maxInFlight >= 1 else { throw ValidationError("--max-in-flight must be at least 1") }
        _ = try server.listenAddresses(fallback: Self.defaultListen)
        _ = try server.metricsAddress(fallback: Self.defaultMetrics)
    }

    static let defaultListen = "127.0.0.1:7100"
    static let defaultMetrics = "127.0.0.1:7101"

    func run() async throws {
        let (logger, registry) = ServerProcess.bootstrap(label: "consensus", logLevel: server.logLevel)
        try FaultSwitches.prepare(logger: logger)
        let token: [UInt8]?
        do {
            token = try tokenFile.map(Backends.readToken)
        } catch {
            throw ValidationError("--token-file: \(error)")
        }
        if token == nil { logger.warning("no --token-file: any client that reaches the sockets is served") }

        var options = LogConsensusOptions()
        options.segmentSizeBytes = segmentSizeMiB << 20
        let log: LogConsensus
        do {
            log = try LogConsensus.open(directory: dataDirectory, options: options, logger: logger)
        } catch {
            logger.critical("cannot open the log", metadata: ["dir": "\(dataDirectory)", "error": "\(error)"])
            throw ExitCode(2)
        }
        let stats = log.stats()
        logger.info(
            "log recovered",
            metadata: ["keys": "\(stats.keyCount)", "segments": "\(stats.segmentCount)", "torn_bytes": "\(stats.recoveredTornBytes)"])

        let metricsAddress = try server.metricsAddress(fallback: Self.defaultMetrics)
        let ready = ReadyReporter(
            path: server.readyFile, expected: metricsAddress == nil ? ["rpc"] : ["rpc", "metrics"], logger: logger)
        var services: [any Service] = [
            ConsensusService(
                backend: log, listen: try server.listenAddresses(fallback: Self.defaultListen),
                configuration: .init(token: token, maxInFlightPerConnection: maxInFlight), logger: logger,
                onListening: { ready.report("rpc", $0) })
        ]
        if let metricsAddress {
            services.append(
                MetricsEndpoint(
                    address: metricsAddress, registry: registry, logger: logger,
                    onListening: { ready.report("metrics", [$0]) }))
        }
        do {
            try await ServerRunner.run(services, logger: logger)
        } catch {
            await log.close()
            logger.critical("consensus failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
        await log.close()
        logger.info("log closed")
    }
}
