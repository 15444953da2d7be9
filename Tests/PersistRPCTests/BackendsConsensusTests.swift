import Foundation
import PersistCore
import PersistLocation
import PersistServices
import Testing

/// Consensus location URLs open working backends (`Backends.consensus`).
@Suite struct BackendsConsensusTests {
    static let v1 = VersionedData(seqno: SeqNo(1), data: [1])

    @Test func memoryStoresAreSharedByName() async throws {
        let name = "backends-\(UUID().uuidString.prefix(8))"
        let a = try Backends.consensus("mem://\(name)")
        let b = try Backends.consensus("mem://\(name)")
        let other = try Backends.consensus("mem://\(name)-other")
        #expect(try await a.backend.compareAndSet("k", expected: nil, new: Self.v1) == .committed)
        #expect(try await b.backend.head("k") == Self.v1)
        #expect(try await other.backend.head("k") == nil)
    }

    @Test func logURLsOpenADurableLog() async throws {
        let scratch = ScratchDirectory("backends-log")
        defer { scratch.remove() }
        let first = try Backends.consensus("log://\(scratch.path)/log")
        #expect(first.backend is LogConsensus)
        #expect(try await first.backend.compareAndSet("k", expected: nil, new: Self.v1) == .committed)
        await first.close()
        let again = try Backends.consensus("log://\(scratch.path)/log")
        #expect(try await again.backend.head("k") == Self.v1)
        await again.close()
    }

    @Test func remoteURLsReachAServerWithTheirToken() async throws {
        let scratch = ScratchDirectory("backends-remote")
        defer { scratch.remove() }
        let tokenFile = scratch.path + "/token"
        try Data("url-token\n".utf8).write(to: URL(fileURLWithPath: tokenFile))
        let backend = MemoryConsensus()
        try await withConsensusServer(backend: backend, token: Array("url-token".utf8)) { address in
            guard case .tcp(let host, let port) = address else { throw ScratchError("expected TCP") }
            let opened = try Backends.consensus("consensus://\(host):\(port)?token_file=\(tokenFile)")
            #expect(try await opened.backend.compareAndSet("r", expected: nil, new: Self.v1) == .committed)
            await opened.close()
            // Without the token the server refuses (determinately).
            let anonymous = try Backends.consensus("consensus://\(host):\(port)")
            await #expect(throws: StorageError.self) { _ = try await anonymous.backend.head("r") }
            await anonymous.close()
        }
        #expect(try await backend.head("r") == Self.v1)
        // A token file that is missing fails at open, naming the file.
        #expect(throws: StorageError.self) { _ = try Backends.consensus("consensus://127.0.0.1:1?token_file=/nonexistent/t") }
        #expect(throws: LocationParseError.self) { _ = try Backends.consensus("consensus://127.0.0.1") }
    }
}

struct ScratchError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
