import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistS3
import PersistServices
import Testing

/// `Backends.blob` turns every kind of blob location URL into a working backend: `s3://`
/// against a real `blob-store` process (over TCP and over its Unix socket), `file://`
/// and `mem://`.
@Suite struct BackendsS3Tests {
    /// Sets, gets, lists and deletes through `blob`, whose keys must not collide with
    /// other callers' (`tag` keeps them apart).
    static func exercise(_ blob: any Blob, tag: String) async throws {
        let keys = ["\(tag)/a", "\(tag)/b c", "\(tag)/d/e"]
        for (i, key) in keys.enumerated() { try await blob.set(key, Array("value \(i)".utf8)) }
        for (i, key) in keys.enumerated() { #expect(try await blob.get(key) == Array("value \(i)".utf8), "\(key)") }
        #expect(try await blob.get("\(tag)/missing") == nil)
        let listed = try await blob.list(prefix: tag + "/")
        #expect(listed == keys.enumerated().map { BlobMetadata(key: $1, sizeBytes: "value \($0)".utf8.count) })
        #expect(try await blob.delete(keys[0]) == "value 0".utf8.count)
        #expect(try await blob.delete(keys[0]) == nil)
        #expect(try await blob.get(keys[0]) == nil)
        #expect(try await blob.list(prefix: tag + "/").map(\.key) == Array(keys.dropFirst()))
    }

    @Test func s3LocationsReachABlobStore() async throws {
        try await BlobStoreServerProcess.with("backends-s3") { server in
            guard case .unix(let socket) = server.unix else { throw ConformanceFailure("no Unix listener: \(server.endpoints)") }
            let viaTCP = try Backends.blob(
                "s3://bkt/some/prefix?endpoint=\(try server.httpEndpoint)&region=us-east-1", credentials: BlobStoreTestKeys.credentials)
            let viaUnix = try Backends.blob("s3://bkt?endpoint=unix://\(socket)", credentials: BlobStoreTestKeys.credentials)
            let plain = S3Blob(server.s3Configuration(server.tcp, prefix: ""))
            try await withCleanup {
                try await Self.exercise(viaTCP.backend, tag: "tcp")
                try await Self.exercise(viaUnix.backend, tag: "unix")
                // What the prefixed backend wrote sits under its prefix in the bucket; the
                // unprefixed one wrote at the top.
                let everything = try await plain.list(prefix: "").map(\.key)
                #expect(everything == ["some/prefix/tcp/b c", "some/prefix/tcp/d/e", "unix/b c", "unix/d/e"])
                #expect(try await plain.get("some/prefix/tcp/b c") == Array("value 1".utf8))
                // And the prefix is invisible through the backend itself.
                #expect(try await viaTCP.backend.list(prefix: "").map(\.key) == ["tcp/b c", "tcp/d/e"])
            } cleanup: {
                await viaTCP.close()
                await viaUnix.close()
                await plain.shutdown()
            }
            #expect(try await server.stop() == 0, "\(server.process.logTail())")
        }
    }

    @Test func fileLocationsOpenADirectory() async throws {
        let directory = BlobStoreTestDirectory("backends-file")
        defer { directory.remove() }
        let url = "file://" + directory.path + "/blobs"
        let first = try Backends.blob(url)
        try await Self.exercise(first.backend, tag: "file")
        await first.close()
        // Two objects, plus (for the object deleted) an emptied file kept for reuse.
        let objects = directory.files().filter { !$0.hasPrefix("blobs/.spare-") }
        #expect(objects.count == 2 && objects.allSatisfy { $0.hasPrefix("blobs/") }, "\(directory.files())")
        // Opened again, the same directory holds the same objects.
        let again = try Backends.blob(url)
        #expect(try await again.backend.get("file/d/e") == Array("value 2".utf8))
        await again.close()
    }

    @Test func memoryLocationsAreSharedByName() async throws {
        let name = "backends-\(UUID().uuidString.prefix(8).lowercased())"
        let one = try Backends.blob("mem://" + name)
        let two = try Backends.blob("mem://" + name)
        let other = try Backends.blob("mem://" + name + "-other")
        try await Self.exercise(one.backend, tag: "mem")
        try await one.backend.set("shared", [7])
        #expect(try await two.backend.get("shared") == [7])
        #expect(try await two.backend.list(prefix: "mem/").map(\.key) == ["mem/b c", "mem/d/e"])
        #expect(try await other.backend.get("shared") == nil)
        #expect(try await other.backend.list(prefix: "") == [])
        #expect(try await two.backend.delete("shared") == 1)
        #expect(try await one.backend.get("shared") == nil)
    }
}
