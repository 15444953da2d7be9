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
        .executable(name: "persist-bench", targets: ["PersistBench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.1.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
    ],
    targets: [
        // Vocabulary types shared by every layer. No dependencies.
        .target(name: "PersistCore", swiftSettings: strict),
        // Every persisted and wire format. Depends on PersistCore only.
        .target(name: "PersistCodec", dependencies: ["PersistCore"], swiftSettings: strict),

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
            ],
            swiftSettings: strict),
        // The Blob/Consensus conformance suites, shared by every backend's tests
        // (later: remote, Postgres and S3). Framework-free: checks throw on failure.
        .target(
            name: "PersistConformance", dependencies: ["PersistCore", "PersistLocation"],
            swiftSettings: strict),

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

        // Executables.
        .executableTarget(
            name: "PersistBench",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistCompression", "PersistLocation", "PersistClient",
                "TxnWAL",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "tools/bench", swiftSettings: strict),
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
            name: "PersistClientTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistCompression", "PersistLocation", "PersistClient",
            ],
            swiftSettings: strict),
        .testTarget(
            name: "TxnWALTests",
            dependencies: [
                "PersistCore", "PersistCodec", "PersistLocation", "PersistClient", "TxnWAL",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: strict),
    ]
)
