#if canImport(Glibc)
import Glibc
#endif
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

@Suite struct FileBlobRecyclingTests {
    /// The inode and bytes of `key`'s file, read through a registered open.
    private func opened(_ blob: FileBlob, _ key: String) async throws -> (inode: UInt64, bytes: [UInt8])? {
        guard let file = try await blob.openForReading(key) else { return nil }
        return (file.inode, read(file))
    }

    /// The spare files in the root.
    private func spares(_ root: String) -> [String] {
        listTree(root).filter { $0.hasPrefix(".spare-") }
    }

    private func read(_ file: FileBlobOpenFile) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: file.size)
        let n = bytes.withUnsafeMutableBytes { pread(file.descriptor, $0.baseAddress, $0.count, 0) }
        return Array(bytes.prefix(max(n, 0)))
    }

    @Test func aDeletedObjectsFileHoldsTheNextObject() async throws {
        let dir = TemporaryDirectory("file-blob-recycle")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path)
        try await blob.set("a", Array(repeating: 7, count: 5000))
        let before = try #require(try await opened(blob, "a"))
        #expect(try await blob.delete("a") == 5000)
        #expect(blob.spareCount == 1)
        // The spare keeps no data: deleting frees the object's space.
        let left = spares(dir.path)
        #expect(left.count == 1)
        #expect(left.allSatisfy { readFile(dir.path + "/" + $0) == [] })
        #expect(try await blob.get("a") == nil)
        #expect(try await blob.list(prefix: "").isEmpty, "spares are never listed")

        try await blob.set("b", [1, 2, 3])
        #expect(blob.spareCount == 0)
        let after = try #require(try await opened(blob, "b"))
        #expect(after.inode == before.inode, "b was written into a's old file")
        #expect(after.bytes == [1, 2, 3], "and holds exactly b's bytes")
        #expect(spares(dir.path).isEmpty)
    }

    @Test func aFileOpenForReadingIsNeverRecycled() async throws {
        let dir = TemporaryDirectory("file-blob-reader")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path)
        try await blob.set("a", [1, 1, 1, 1])
        let reader = try #require(try await blob.openForReading("a"))
        #expect(try await blob.delete("a") == 4)
        #expect(blob.spareCount == 0, "a reader had it open: unlinked instead")
        try await blob.set("b", [2, 2])
        #expect(read(reader) == [1, 1, 1, 1], "the reader still sees the deleted object")
        #expect(try await blob.get("a") == nil)

        // Once the reader is gone, deletes recycle again.
        _ = consume reader
        #expect(try await blob.delete("b") == 2)
        #expect(blob.spareCount == 1)
    }

    @Test func thePoolIsBounded() async throws {
        let dir = TemporaryDirectory("file-blob-bounded")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path, maxSpares: 2)
        for i in 0..<5 { try await blob.set("k\(i)", [UInt8(i)]) }
        for i in 0..<5 { #expect(try await blob.delete("k\(i)") == 1) }
        #expect(blob.spareCount == 2)
        #expect(spares(dir.path).count == 2, "the others were unlinked")

        let off = try FileBlob(root: dir.path + "/off", maxSpares: 0)
        try await off.set("x", [1])
        #expect(try await off.delete("x") == 1)
        #expect(off.spareCount == 0)
        #expect(spares(dir.path + "/off").isEmpty)
    }

    @Test func sparesOfAnEarlierProcessAreDiscarded() async throws {
        let dir = TemporaryDirectory("file-blob-reopen")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path)
        try await blob.set("kept", [4, 5])
        for i in 0..<3 {
            try await blob.set("gone\(i)", [UInt8(i)])
            _ = try await blob.delete("gone\(i)")
        }
        #expect(spares(dir.path).count == 1, "each set reused the previous delete's file")
        let reopened = try FileBlob(root: dir.path)
        #expect(reopened.spareCount == 0)
        #expect(spares(dir.path).isEmpty)
        #expect(try await reopened.get("kept") == [4, 5])
        #expect(try await reopened.list(prefix: "").map(\.key) == ["kept"])
    }

    /// A crash can leave a spare name and an object name on one inode (a rename half on
    /// disk). Opening must not unlink that spare: with the link count not yet updated,
    /// that would free the object's inode.
    @Test func aSpareSharingAnObjectsInodeIsLeftAlone() async throws {
        let dir = TemporaryDirectory("file-blob-shared-inode")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path)
        try await blob.set("obj", [8, 8, 8])
        let objectPath = dir.path + "/" + FileBlobPath.relativePath(for: "obj")
        #expect(link(objectPath, dir.path + "/.spare-77") == 0)
        writeFile(dir.path + "/.spare-78", [1])
        let reopened = try FileBlob(root: dir.path)
        #expect(spares(dir.path) == [".spare-77"], "the unshared spare went, the shared one stayed")
        #expect(reopened.spareCount == 0, "and it is not reused")
        #expect(try await reopened.get("obj") == [8, 8, 8])
        #expect(try await reopened.list(prefix: "").map(\.key) == ["obj"])
    }

    /// Keys too long for one file name live in chunk directories and never use spares.
    @Test func longKeysUsePlainFiles() async throws {
        let dir = TemporaryDirectory("file-blob-long")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path)
        let long = String(repeating: "k", count: FileBlobPath.maxComponent + 10)
        try await blob.set(long, [1])
        #expect(try await blob.delete(long) == 1)
        #expect(blob.spareCount == 0)
        try await blob.set("short", [2])
        #expect(try await blob.delete("short") == 1)
        #expect(blob.spareCount == 1)
        try await blob.set(long + "x", [3])
        #expect(blob.spareCount == 1, "a long key's object does not take the root's spare")
        #expect(try await blob.get(long + "x") == [3])
    }

    /// Many tasks write, read and delete objects with distinct contents at once: a read
    /// sees its key's bytes or nothing, never another object's.
    @Test func concurrentTrafficNeverMixesObjects() async throws {
        let dir = TemporaryDirectory("file-blob-mix")
        defer { dir.remove() }
        let blob = try FileBlob(root: dir.path, maxSpares: 8)
        func value(_ key: Int, _ round: Int) -> [UInt8] {
            Array(repeating: UInt8(truncatingIfNeeded: key &* 31 &+ round), count: 100 + (key * 37 + round * 11) % 3000)
        }
        let mixups = try await withThrowingTaskGroup(of: Int.self) { group in
            for worker in 0..<6 {
                group.addTask {
                    var rng = SeededGenerator(seed: UInt64(worker) + 1)
                    var bad = 0
                    for round in 0..<60 {
                        let key = Int.random(in: 0..<12, using: &rng)
                        let name = "obj\(key)"
                        switch Int.random(in: 0..<3, using: &rng) {
                        case 0:
                            // Each key's bytes say which key they are (and the round).
                            try await blob.set(name, value(key, round))
                        case 1:
                            if let got = try await blob.get(name), !(0..<60).contains(where: { value(key, $0) == got }) {
                                bad += 1
                            }
                        default:
                            _ = try await blob.delete(name)
                        }
                    }
                    return bad
                }
            }
            return try await group.reduce(0, +)
        }
        #expect(mixups == 0)
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
