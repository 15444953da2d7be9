// swift-tools-version: 6.1
//
// swift-txn-wal: atomic multi-shard writes over blob storage and consensus.
// Module layout and dependency direction are described in DESIGN.md §3; the core
// modules (PersistCore, PersistCodec) deliberately depend on nothing so they build in
// seconds and can be compiled straight into fuzz harnesses with swiftc.

import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "swift-txn-wal",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PersistCore", targets: ["PersistCore"]),
        .library(name: "PersistCodec", targets: ["PersistCodec"]),
        .library(name: "PersistCompression", targets: ["PersistCompression"]),
        .library(name: "PersistLocation", targets: ["PersistLocation"]),
        .library(name: "PersistClient", targets: ["PersistClient"]),
        .library(name: "TxnWAL", targets: ["TxnWAL"]),
        .library(name: "PersistRPC", targets: ["PersistRPC"]),
        .library(name: "PersistS3", targets: ["PersistS3"]),
        .library(name: "PersistPostgres", targets: ["PersistPostgres"]),
        .library(name: "PersistServices", targets: ["PersistServices"]),
        .library(name: "TxnCoordinator", targets: ["TxnCoordinator"]),
        .library(name: "TxnClient", targets: ["TxnClient"]),
        .executable(name: "consensus", targets: ["ConsensusServer"]),
        .executable(name: "txn-coordinator", targets: ["TxnCoordinatorServer"]),
        .executable(name: "txnctl", targets: ["TxnCtl"]),
        .executable(name: "blob-store", targets: ["BlobStoreServer"]),
        .executable(name: "persist-bench", targets: ["PersistBench"]),
        .executable(name: "loadgen", targets: ["LoadGen"]),
        .executable(name: "txn-verify", targets: ["TxnVerify"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.1.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.25.0"),
    ],
    targets: [
        // Vocabulary types shared by every layer. No dependencies.
        .target(name: "PersistCore", swiftSettings: strict),
        // Every persisted and wire format. Depends on PersistCore only.
        .target(name: "PersistCodec", dependencies: ["PersistCore", "CCRC32C"], swiftSettings: strict),
        // CRC32C with the CPU's crc32 instruction where it has one (SSE4.2, ARMv8 CRC),
        // chosen at run time; the Swift table code covers everything else.
        .target(name: "CCRC32C"),

        // System compression libraries (the README's setup installs the -dev packages).
        .systemLibrary(
            name: "CZstd", pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]),
        .systemLibrary(
            name: "CLZ4", pkgConfig: "liblz4",
            providers: [.apt(["liblz4-dev"]), .brew(["lz4"])]),
        .target(
            name: "PersistCompression", dependencies: ["CZstd", "CLZ4"],
            swiftSettings: strict),

        // Blob and Consensus: protocols, backends and decorators.
        .target(
            name: "PersistLocation",
            dependencies: [
                "PersistCore", "PersistCodec",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict),
        // The Blob/Consensus conformance suites, shared by every backend's tests
        // (later: remote, Postgres and S3). Framework-free: checks throw on failure.
        .target(
            name: "PersistConformance", dependencies: ["PersistCore", "PersistLocation", "CSpawn"],
            swiftSettings: strict),
        // A C shim for posix_spawn's close-from file action (not visible to Swift), so
        // processes started by tests and tools inherit none of the parent's sockets.
        .target(name: "CSpawn"),

        // The shard layer: state machine, CaS loop, handles, batches, maintenance.
        .target(
            name: "PersistClient",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistCompression", "PersistLocation",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),

        // Atomic multi-shard writes: the txns shard, commit, apply, tidy, read translation.
        .target(
            name: "TxnWAL",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistClient",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Collections", package: "swift-collections"),
            ],
            swiftSettings: strict),

        // The consensus RPC over NIO: frame handling, the server's connection logic and
        // RemoteConsensus, the client.
        .target(
            name: "PersistRPC",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        // The S3 subset: SigV4, XML bodies, and S3Blob, the client for our blob-store and
        // for real S3-compatible services.
        .target(
            name: "PersistS3",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // PostgresConsensus: consensus in a PostgreSQL or CockroachDB table over
        // postgres-nio, and the opener of postgres:// URLs that programs pass to
        // Backends. Only the programs that accept such URLs link it; no other library
        // depends on it or on the driver.
        .target(
            name: "PersistPostgres",
            dependencies: [
                "PersistCore", "PersistLocation",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        // The servers as ServiceLifecycle services (runnable in-process by tests), the
        // Prometheus endpoint, and opening backends from location URLs.
        .target(
            name: "PersistServices",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistRPC", "PersistS3", "PersistClient",
                "TxnWAL", "TxnCoordinator",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),

        // The transaction coordinator's logic: shard names, group commit, apply and
        // tidy, reads and subscriptions over a TxnsHandle. No networking.
        .target(
            name: "TxnCoordinator",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistClient", "TxnWAL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        // The async Swift client of the coordinator RPC.
        .target(
            name: "TxnClient",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistRPC",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        // The flags and run loop the server executables share.
        .target(
            name: "ServerCLI",
            dependencies: [
                "PersistServices", "PersistCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        // Executables.
        .executableTarget(
            name: "ConsensusServer",
            dependencies: [
                "PersistServices", "ServerCLI", "PersistLocation", "PersistRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "TxnCoordinatorServer",
            dependencies: [
                "PersistServices", "ServerCLI", "PersistCore", "PersistLocation", "PersistClient", "TxnCoordinator",
                "PersistPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "TxnCtl",
            dependencies: [
                "TxnClient", "PersistCodec", "PersistCore", "PersistRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "Sources/txnctl", swiftSettings: strict),
        .executableTarget(
            name: "BlobStoreServer",
            dependencies: [
                "PersistServices", "ServerCLI",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .executableTarget(
            name: "PersistBench",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistCompression", "PersistLocation", "PersistClient",
                "TxnWAL", "PersistRPC", "PersistConformance", "PersistS3", "TxnClient", "PersistPostgres",
                // Not imported: listed so that building persist-bench also builds the
                // `consensus`, `blob-store` and `txn-coordinator` servers next to it,
                // which the remote consensus backends, the blob benchmark and the
                // coordinator benchmark start.
                "ConsensusServer", "BlobStoreServer", "TxnCoordinatorServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "tools/bench", exclude: ["plot_headline.py"], swiftSettings: strict),
        // The load generator: workloads and history recording in a library (tested),
        // the command line in the executable.
        .target(
            name: "LoadGenKit",
            dependencies: [
                "TxnClient", "PersistCore", "PersistCodec", "PersistRPC",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "tools/loadgen/Kit", swiftSettings: strict),
        .executableTarget(
            name: "LoadGen",
            dependencies: [
                "LoadGenKit", "TxnClient", "PersistCore", "PersistRPC",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/loadgen/CLI", swiftSettings: strict),
        // White-box checks of a cluster's stored state, run by the crash test.
        .executableTarget(
            name: "TxnVerify",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistClient", "TxnWAL", "PersistServices",
                "PersistPostgres",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            path: "tools/verify", swiftSettings: strict),
        .executableTarget(
            name: "LogCrashHelper",
            dependencies: ["PersistCore", "PersistLocation"],
            path: "tools/log-crash-helper", swiftSettings: strict),

        // Tests.
        .testTarget(name: "PersistCoreTests", dependencies: ["PersistCore"], swiftSettings: strict),
        .testTarget(
            name: "PersistCodecTests", dependencies: ["PersistCore", "PersistCodec"],
            swiftSettings: strict),
        .testTarget(
            name: "PersistCompressionTests",
            dependencies: ["PersistCodec", "PersistCompression"], swiftSettings: strict),
        .testTarget(
            name: "PersistLocationTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistConformance",
                "LogCrashHelper",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "PersistRPCTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistConformance", "PersistRPC",
                "PersistServices", "ConsensusServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "PersistS3Tests",
            dependencies: [
                "PersistCore", "PersistLocation", "PersistConformance", "PersistS3", "PersistServices",
                "BlobStoreServer",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "PersistPostgresTests",
            dependencies: [
                "PersistCore", "PersistLocation", "PersistConformance", "PersistPostgres", "PersistServices",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "TxnCoordinatorTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistClient", "TxnWAL", "TxnCoordinator",
                "PersistConformance", "PersistServices", "TxnClient", "TxnCoordinatorServer", "ConsensusServer",
                "BlobStoreServer", "TxnCtl",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "LoadGenTests",
            dependencies: ["LoadGenKit", "PersistCore", "PersistCodec", "TxnClient"],
            swiftSettings: strict),
        .testTarget(
            name: "PersistClientTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistCompression", "PersistLocation", "PersistClient",
            ],
            swiftSettings: strict),
        .testTarget(
            name: "TxnWALTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistClient", "TxnWAL",
                "PersistConformance", "PersistRPC", "PersistS3", "PersistPostgres", "ConsensusServer", "BlobStoreServer",
                // Not imported: the txn-verify tests run the built executable.
                "TxnVerify",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strict),
    ]
)
