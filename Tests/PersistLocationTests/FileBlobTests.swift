import PersistConformance
import PersistCore
import Testing

@testable import PersistLocation

@Suite struct FileBlobTests {
    @Test func escapedNamesAreSafeAndDistinct() {
        var seen: [String: String] = [:]
        let keys = Set(BlobConformance.hostileKeys + ["a", "A", "%61", "a%", "@a", "b+", "b%2B"])
        for key in keys.sorted() {
            let path = FileBlobPath.relativePath(for: key)
            for component in path.split(separator: "/", omittingEmptySubsequences: false) {
                #expect(!component.isEmpty, "empty path component for \(key.debugDescription)")
                #expect(component != "." && component != "..", "dot component for \(key.debugDescription)")
                #expect(component.utf8.count <= FileBlobPath.maxComponent + 1)
                #expect(!component.utf8.contains(0))
                #expect(!component.hasPrefix(".tmp-"))
                #expect(component.utf8.allSatisfy { $0 < 0x80 }, "names are ASCII")
            }
            #expect(!path.hasPrefix("/"))
            if let other = seen[path] { Issue.record("\(key.debugDescription) and \(other.debugDescription) share \(path)") }
            seen[path] = key
            #expect(FileBlobPath.key(fromEscaped: path.split(separator: "/").map { $0.hasSuffix("+") ? String($0.dropLast()) : String($0) }.joined()) == Array(key.utf8))
        }
    }

    @Test func escapingIsInjectiveOnRandomKeys() {
        var rng = SeededGenerator(seed: 99)
        var seen: [String: [UInt8]] = [:]
        let alphabet: [Character] = ["a", "A", "/", ".", "%", "+", "@", "\u{0}", "é", "e", "\u{301}", "_", "-", "4", "1"]
        for _ in 0..<20_000 {
            let key = String((0..<Int.random(in: 0...8, using: &rng)).map { _ in alphabet.randomElement(using: &rng) ?? "a" })
            let path = FileBlobPath.relativePath(for: key)
            if let other = seen[path] {
                #expect(other == Array(key.utf8), "collision at \(path)")
            }
            seen[path] = Array(key.utf8)
        }
    }

    @Test func hostileKeysStayInsideTheRoot() async throws {
        let dir = TemporaryDirectory("file-blob-jail")
        defer { dir.remove() }
        let root = dir.path + "/root"
        let blob = try FileBlob(root: root)
        for (i, key) in BlobConformance.hostileKeys.enumerated() { try await blob.set(key, [UInt8(i)]) }
        // Nothing was created beside the root.
        #expect(listTree(dir.path).allSatisfy { $0 == "root" || $0.hasPrefix("root/") })
        // And every entry inside is an object's name or a chunk directory of one.
        for entry in listTree(root) {
            let parts = entry.split(separator: "/")
            #expect(parts.first?.hasPrefix("@") == true, "\(entry) starts like an object name")
            #expect(parts.dropLast().allSatisfy { $0.hasSuffix("+") }, "\(entry) passes only through chunk directories")
        }
        #expect(try await blob.list(prefix: "").count == BlobConformance.hostileKeys.count)
    }

    @Test func leftoverTemporaryFilesAreRemovedAtOpen() async throws {
        let dir = TemporaryDirectory("file-blob-tmp")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path)
        try await blob.set("kept", [1])
        writeFile(dir.path + "/.tmp-deadbeef", [9, 9, 9])
        #expect(try await blob.list(prefix: "").map(\.key) == ["kept"], "temporaries are never listed")
        _ = try FileBlob(root: dir.path)
        #expect(!listTree(dir.path).contains(".tmp-deadbeef"))
        #expect(try await blob.get("kept") == [1])
    }
}

@Suite struct DecoratorTests {
    @Test func faultInjectionIsSeededAndClassified() async throws {
        func outcomes(seed: UInt64) async -> [String] {
            let c = UnreliableConsensus(MemoryConsensus(), faults: FaultInjector(seed: seed, rates: .init(happenRate: 0.7, timeoutRate: 0.3)))
            var out: [String] = []
            for i in 1...200 {
                do {
                    _ = try await c.compareAndSet("k\(i)", expected: nil, new: VersionedData(seqno: SeqNo(1), data: []))
                    out.append("ok")
                } catch {
                    out.append(error.isDeterminate ? "skipped" : "timeout")
                }
            }
            return out
        }
        let a = await outcomes(seed: 5)
        #expect(a == (await outcomes(seed: 5)), "same seed, same faults")
        #expect(a != (await outcomes(seed: 6)), "another seed, other faults")
        #expect(a.contains("ok") && a.contains("skipped") && a.contains("timeout"))
    }

    @Test func skippedOperationsDidNotHappenAndTimedOutOnesDid() async throws {
        let inner = MemoryConsensus()
        let faults = FaultInjector(seed: 11, rates: .init(happenRate: 0.5, timeoutRate: 0.5))
        let c = UnreliableConsensus(inner, faults: faults)
        for i in 0..<300 {
            let key = "k\(i)"
            do {
                _ = try await c.compareAndSet(key, expected: nil, new: VersionedData(seqno: SeqNo(1), data: [1]))
                #expect(try await inner.head(key) != nil)
            } catch {
                if error.isDeterminate {
                    #expect(try await inner.head(key) == nil, "a determinate failure must not have happened")
                } else {
                    #expect(error.code == .timeout)
                    #expect(try await inner.head(key) != nil, "an injected timeout happens after the operation")
                }
            }
        }
        faults.setRates(.unavailable)
        await #expect(throws: StorageError.self) { try await c.head("k0") }
        faults.setRates(.reliable)
        _ = try await c.head("k0")
        #expect(faults.injectedCount > 0)
    }

    @Test func unreliableBlobReportsIndeterminateWhenConfigured() async throws {
        let b = UnreliableBlob(MemoryBlob(), faults: FaultInjector(seed: 3, rates: .init(happenRate: 0, timeoutRate: 0, skippedDeterminacy: .indeterminate)))
        await #expect {
            try await b.set("k", [1])
        } throws: { ($0 as? StorageError)?.determinacy == .indeterminate }
    }
}
