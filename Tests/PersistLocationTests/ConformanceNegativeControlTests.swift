import PersistConformance
import PersistCore
import PersistLocation
import Synchronization
import Testing

/// The conformance suites must be able to fail: deliberately broken backends are caught.
@Suite struct ConformanceNegativeControlTests {
    /// Commits whenever the new seqno is above the head, ignoring `expected`.
    final class LastWriterWinsConsensus: Consensus {
        let inner = MemoryConsensus()
        func head(_ key: String) async throws(StorageError) -> VersionedData? { try await inner.head(key) }
        func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
            let head = try await inner.head(key)
            return try await inner.compareAndSet(key, expected: head?.seqno, new: new)
        }
        func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
            try await inner.scan(key, from: from, limit: limit)
        }
        func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int { try await inner.truncate(key, seqno: seqno) }
        func listKeys() async throws(StorageError) -> [String] { try await inner.listKeys() }
    }

    /// Forgets everything on reopen, and treats keys as Swift strings.
    final class ForgetfulBlob: Blob {
        let objects = Mutex<[String: [UInt8]]>([:])
        func get(_ key: String) async throws(StorageError) -> [UInt8]? { objects.withLock { $0[key] } }
        func set(_ key: String, _ value: [UInt8]) async throws(StorageError) { objects.withLock { $0[key] = value } }
        func delete(_ key: String) async throws(StorageError) -> Int? { objects.withLock { $0.removeValue(forKey: key)?.count } }
        func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
            objects.withLock { $0.filter { $0.key.hasPrefix(prefix) }.map { BlobMetadata(key: $0.key, sizeBytes: $0.value.count) } }
        }
    }

    func failures<B>(_ checks: [ConformanceCheck<B>], _ harness: ConformanceHarness<B>) async -> [String] {
        var failed: [String] = []
        for check in checks {
            do { try await check.run(harness) } catch { failed.append(check.name) }
        }
        return failed
    }

    @Test func brokenConsensusIsCaught() async {
        let failed = await failures(ConsensusConformance.checks, ConformanceHarness(open: { LastWriterWinsConsensus() }))
        #expect(failed.contains("expectation mismatches"))
        #expect(failed.contains("empty key"))
    }

    @Test func brokenBlobIsCaught() async {
        let failed = await failures(
            BlobConformance.checks, ConformanceHarness(open: { ForgetfulBlob() }, reopen: { _ in ForgetfulBlob() }))
        #expect(failed.contains("durable across reopen"))
        #expect(failed.contains("keys compare by bytes"))
        #expect(failed.contains("list by prefix"), "unsorted listing is caught")
    }
}
