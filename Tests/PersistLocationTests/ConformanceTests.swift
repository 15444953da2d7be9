import PersistConformance
import PersistCore
import PersistLocation
import Synchronization
import Testing

/// The Blob and Consensus conformance suites, run against every local implementation.
/// (Remote, Postgres and S3 backends add their own runs of the same checks.)
@Suite struct ConsensusConformanceTests {
    @Test(arguments: ConsensusConformance.checks)
    func memory(_ check: ConsensusConformance.Check) async throws {
        try await check.run(ConformanceHarness(open: { MemoryConsensus() }))
    }

    @Test(arguments: ConsensusConformance.checks)
    func log(_ check: ConsensusConformance.Check) async throws {
        let dirs = DirectoryPool("log-conformance")
        defer { dirs.removeAll() }
        try await check.run(
            ConformanceHarness(
                open: { try LogConsensus.open(directory: dirs.make()) },
                reopen: { old in
                    let log = try #require(old as? LogConsensus)
                    await log.close()
                    return try LogConsensus.open(directory: log.directory)
                }))
    }

    /// Tiny segments, so that rolling, compaction and recovery across many files happen
    /// during the ordinary checks.
    @Test(arguments: ConsensusConformance.checks)
    func logWithTinySegments(_ check: ConsensusConformance.Check) async throws {
        let dirs = DirectoryPool("log-tiny")
        defer { dirs.removeAll() }
        let options = { var o = LogConsensusOptions(); o.segmentSizeBytes = 4096; return o }()
        try await check.run(
            ConformanceHarness(
                open: { try LogConsensus.open(directory: dirs.make(), options: options) },
                reopen: { old in
                    let log = try #require(old as? LogConsensus)
                    await log.close()
                    return try LogConsensus.open(directory: log.directory, options: options)
                }))
    }

    @Test(arguments: ConsensusConformance.checks)
    func decorated(_ check: ConsensusConformance.Check) async throws {
        // Metrics and a fault injector that never fires must be transparent.
        try await check.run(
            ConformanceHarness(open: {
                MetricsConsensus(UnreliableConsensus(MemoryConsensus(), faults: FaultInjector(seed: 1, rates: .reliable)))
            }))
    }
}

@Suite struct BlobConformanceTests {
    @Test(arguments: BlobConformance.checks)
    func memory(_ check: BlobConformance.Check) async throws {
        try await check.run(ConformanceHarness(open: { MemoryBlob() }))
    }

    @Test(arguments: BlobConformance.checks)
    func file(_ check: BlobConformance.Check) async throws {
        let dirs = DirectoryPool("file-blob")
        defer { dirs.removeAll() }
        try await check.run(
            ConformanceHarness(
                open: { try FileBlob(root: dirs.make() + "/blobs") },
                reopen: { old in try FileBlob(root: try #require(old as? FileBlob).root) }))
    }

    @Test(arguments: BlobConformance.checks)
    func decorated(_ check: BlobConformance.Check) async throws {
        try await check.run(
            ConformanceHarness(open: {
                MetricsBlob(UnreliableBlob(MemoryBlob(), faults: FaultInjector(seed: 1, rates: .reliable)))
            }))
    }
}

/// Hands out temporary directories and removes them all at the end of a test.
final class DirectoryPool: Sendable {
    private let label: String
    private let made = Mutex<[TemporaryDirectory]>([])

    init(_ label: String) { self.label = label }

    func make() -> String {
        let d = TemporaryDirectory(label)
        made.withLock { $0.append(d) }
        return d.path
    }

    func removeAll() { made.withLock { $0.forEach { $0.remove() } } }
}
