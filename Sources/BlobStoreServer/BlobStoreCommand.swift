import ArgumentParser
import Foundation
import Logging
import PersistServices
import ServerCLI
import ServiceLifecycle

/// `blob-store`: objects on local disk behind the S3 REST API subset (DESIGN.md §2).
/// Flag parsing and the service group only; the server is `BlobStoreService`.
@main
struct BlobStoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "blob-store",
        abstract: "Serves objects stored on local disk over a subset of the Amazon S3 REST API.",
        discussion: """
            Supports PutObject, GetObject (with Range), HeadObject, DeleteObject, ListObjectsV2, \
            CreateBucket and HeadBucket with path-style addressing (http://host:port/bucket/key), \
            authenticated with AWS Signature Version 4. A PUT is answered only once the object \
            and its directory entry are fsync'd. Without --listen the server listens on \
            127.0.0.1:9000; without --metrics-listen, /metrics is served on a free loopback port \
            (127.0.0.1:0) named "metrics" in the ready file, whose S3 lines are named "s3".

            SIGTERM or SIGINT drains: the server stops accepting connections, closes idle ones, \
            answers the requests in flight and exits 0.

            Example:
              blob-store --data-dir /srv/blobs --bucket persist \\
                --credentials-file /srv/blob-keys --listen 127.0.0.1:9000 \\
                --listen unix:/srv/blob-store.sock --ready-file /srv/blob-store.ready
            """)

    @Option(
        name: .customLong("data-dir"),
        help: ArgumentHelp(
            "The directory that holds the buckets (created if missing).",
            discussion: "Bucket NAME is stored in <data-dir>/buckets/NAME, one file per object. Example: --data-dir /srv/blobs",
            valueName: "dir"))
    var dataDirectory: String

    @Option(
        name: .customLong("bucket"),
        help: ArgumentHelp(
            "A bucket to create at start if it does not exist (repeatable).",
            discussion: """
                Names follow S3's rules (3 to 63 characters: lower-case letters, digits, '.' and \
                '-'). Buckets already in the data directory are served too, and clients may \
                create more with CreateBucket. Example: --bucket persist
                """,
            valueName: "name"))
    var buckets: [String] = []

    @Option(
        name: .customLong("credentials-file"),
        help: ArgumentHelp(
            "A file of the access keys to accept: one \"ACCESS_KEY_ID SECRET_ACCESS_KEY\" per line.",
            discussion: """
                Blank lines and lines starting with # are ignored. Without this flag the pair in \
                AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY is accepted. \
                Example: --credentials-file /srv/blob-keys
                """,
            valueName: "path"))
    var credentialsFile: String?

    @Flag(
        name: .customLong("allow-anonymous"),
        help: ArgumentHelp(
            "Serve unsigned requests too.",
            discussion: """
                Signed requests are still verified and refused when wrong. For tests and trusted \
                sockets only. Example: --allow-anonymous
                """))
    var allowAnonymous = false

    @Option(
        name: .customLong("region"),
        help: ArgumentHelp(
            "The region request signatures must be scoped to.",
            discussion: "A signature scoped to another region is refused (AuthorizationHeaderMalformed). Example: --region eu-west-1",
            valueName: "name"))
    var region = "us-east-1"

    @Option(
        name: .customLong("max-object-size"),
        help: ArgumentHelp(
            "The largest object a PUT may store, in bytes (default 1 GiB).",
            discussion: """
                Larger uploads are refused with EntityTooLarge before their body is buffered. An \
                object is held in memory while it is received, so keep this well below the \
                machine's memory. Example: --max-object-size 268435456
                """,
            valueName: "bytes"))
    var maxObjectSize = BlobStoreConfiguration.defaultMaxObjectSize

    @Option(
        name: .customLong("idle-timeout"),
        help: ArgumentHelp(
            "Seconds a connection may stay silent while the server waits for it; 0 disables.",
            discussion: "Idle keep-alive connections and stalled uploads are closed after this long. Example: --idle-timeout 300",
            valueName: "seconds"))
    var idleTimeout = 120

    @OptionGroup var server: ServerOptions

    static let defaultListen = "127.0.0.1:9000"
    static let defaultMetrics = "127.0.0.1:0"

    func validate() throws {
        _ = try server.listenAddresses(fallback: Self.defaultListen)
        _ = try server.metricsAddress(fallback: Self.defaultMetrics)
        for name in buckets where !BlobStoreRouter.isValidBucketName(name) {
            throw ValidationError("--bucket: \"\(name)\" is not a valid S3 bucket name")
        }
        guard maxObjectSize > 0 else { throw ValidationError("--max-object-size must be positive") }
        guard idleTimeout >= 0 else { throw ValidationError("--idle-timeout must not be negative") }
    }

    func run() async throws {
        let (logger, registry) = ServerProcess.bootstrap(label: "blob-store", logLevel: server.logLevel)
        try FaultSwitches.prepare(logger: logger)
        let credentials: [String: String]
        do {
            credentials = try BlobStoreCredentialsFile.load(file: credentialsFile, environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError("--credentials-file: \(error)")
        }
        guard !credentials.isEmpty || allowAnonymous else {
            throw ValidationError(
                "no credentials: give --credentials-file, set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --allow-anonymous")
        }
        let configuration = BlobStoreConfiguration(
            dataDirectory: dataDirectory, listen: try server.listenAddresses(fallback: Self.defaultListen), buckets: buckets,
            credentials: credentials, allowAnonymous: allowAnonymous, region: region, maxObjectSize: maxObjectSize,
            idleTimeout: idleTimeout == 0 ? nil : .seconds(idleTimeout))

        let metricsAddress = try server.metricsAddress(fallback: Self.defaultMetrics)
        let ready = ReadyReporter(path: server.readyFile, expected: metricsAddress == nil ? ["s3"] : ["s3", "metrics"], logger: logger)
        var services: [any Service] = [
            BlobStoreService(configuration: configuration, logger: logger, onListening: { ready.report("s3", $0) })
        ]
        if let metricsAddress {
            services.append(
                MetricsEndpoint(address: metricsAddress, registry: registry, logger: logger, onListening: { ready.report("metrics", [$0]) }))
        }
        do {
            try await ServerRunner.run(services, logger: logger)
        } catch {
            logger.critical("blob-store failed", metadata: ["error": "\(error)"])
            throw ExitCode(1)
        }
    }
}
