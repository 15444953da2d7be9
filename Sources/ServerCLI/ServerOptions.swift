import ArgumentParser
import Logging
import NIOConcurrencyHelpers
import PersistServices
import ServiceLifecycle

/// The flags every server executable shares: where it listens, where its metrics are
/// served, how much it logs, and the ready file launchers wait for.
public struct ServerOptions: ParsableArguments {
    @Option(
        name: .customLong("listen"),
        help: ArgumentHelp(
            "Address to serve on: host:port or unix:/absolute/path.sock (repeatable).",
            discussion: """
                TCP addresses bind as given (127.0.0.1 keeps the server on loopback; port 0 \
                picks a free port, reported in the ready file). Unix sockets are created with \
                mode 0600, replacing a stale socket file. Without --listen the server uses its \
                default TCP address.
                """,
            valueName: "address"))
    public var listen: [String] = []

    @Option(
        name: .customLong("metrics-listen"),
        help: ArgumentHelp(
            "Address of the Prometheus endpoint (GET /metrics), host:port or unix:/path; \"off\" disables it.",
            discussion: """
                The endpoint has its own listener, so the served protocol's names never clash \
                with it. Its port appears in the ready file as \"metrics\". \
                Example: --metrics-listen 127.0.0.1:9101
                """,
            valueName: "address"))
    public var metricsListen: String?

    @Option(
        name: .customLong("log-level"),
        help: ArgumentHelp(
            "Least severe log level written to stderr: trace, debug, info, notice, warning, error, critical.",
            discussion: """
                Lines carry a timestamp, the level, the logger label and key=value metadata. \
                info logs start, listening addresses, drains and stops; notice adds refused \
                requests; debug adds every connection's end. Example: --log-level notice
                """))
    public var logLevel: Logger.Level = .info

    @Option(
        name: .customLong("ready-file"),
        help: ArgumentHelp(
            "Write the bound addresses here once listening, one \"<name> <address>\" line each.",
            discussion: "The file appears atomically (written, then renamed), so a launcher can wait for it.",
            valueName: "path"))
    public var readyFile: String?

    public init() {}

    /// The listen addresses, or `fallback` when none was given.
    public func listenAddresses(fallback: String) throws -> [ListenAddress] {
        try (listen.isEmpty ? [fallback] : listen).map { text in
            do { return try ListenAddress(parsing: text) } catch { throw ValidationError("--listen: \(error)") }
        }
    }

    /// The metrics address, nil when disabled.
    public func metricsAddress(fallback: String) throws -> ListenAddress? {
        let text = metricsListen ?? fallback
        if text == "off" { return nil }
        do { return try ListenAddress(parsing: text) } catch { throw ValidationError("--metrics-listen: \(error)") }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// Collects the addresses each listener reports and writes the ready file once every
/// expected listener has reported.
public final class ReadyReporter: Sendable {
    private let path: String?
    private let expected: Set<String>
    private let logger: Logger
    private let reported = NIOLockedValueBox<[(name: String, address: ListenAddress)]>([])
    private let names = NIOLockedValueBox<Set<String>>([])

    public init(path: String?, expected: Set<String>, logger: Logger) {
        self.path = path
        self.expected = expected
        self.logger = logger
    }

    public func report(_ name: String, _ addresses: [ListenAddress]) {
        let complete: [(name: String, address: ListenAddress)]? = reported.withLockedValue { entries in
            entries.append(contentsOf: addresses.map { (name: name, address: $0) })
            let done = names.withLockedValue { n -> Bool in
                n.insert(name)
                return n.isSuperset(of: expected)
            }
            return done ? entries : nil
        }
        guard let complete, let path else { return }
        do {
            try ReadyFile.write(complete, to: path)
        } catch {
            logger.error("cannot write the ready file", metadata: ["path": "\(path)", "error": "\(error)"])
        }
    }
}

/// Runs a server's services until SIGTERM or SIGINT, which drain them gracefully.
public enum ServerRunner {
    public static func run(_ services: [any Service], logger: Logger) async throws {
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services.map { ServiceGroupConfiguration.ServiceConfiguration(service: $0) },
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}
