import PersistCore
import PersistLocation

/// The behaviour every `Blob` must have (spec/persist.md §2.2 and §8.5). Run each check
/// against each implementation.
public enum BlobConformance {
    public typealias Check = ConformanceCheck<any Blob>

    public static let checks: [Check] = [
        Check(name: "get, set and overwrite", run: basics),
        Check(name: "delete", run: deletion),
        Check(name: "list by prefix", run: listing),
        Check(name: "hostile keys", run: hostileKeys),
        Check(name: "keys compare by bytes", run: byteKeys),
        Check(name: "large object", run: largeObject),
        Check(name: "readers never see a partial object", run: atomicity),
        Check(name: "concurrent writers", run: concurrentWriters),
        Check(name: "durable across reopen", run: durability),
    ]

    static func basics(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        try expectEqual(try await b.get("k"), nil, "get of a missing key")
        try expectEqual(try await b.list(prefix: ""), [], "list of an empty store")
        try await b.set("k", [1, 2, 3])
        try expectEqual(try await b.get("k"), [1, 2, 3], "get after set")
        try await b.set("k", [1, 2, 3])
        try expectEqual(try await b.get("k"), [1, 2, 3], "get after setting the same bytes again")
        try await b.set("k", [4, 5])
        try expectEqual(try await b.get("k"), [4, 5], "get after overwrite")
        try await b.set("empty", [])
        try expectEqual(try await b.get("empty"), [], "an empty object is not a missing one")
    }

    static func deletion(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        try await b.set("k", [1, 2, 3, 4])
        try expectEqual(try await b.delete("k"), 4, "delete returns the size")
        try expectEqual(try await b.get("k"), nil, "get after delete")
        try expectEqual(try await b.delete("k"), nil, "repeated delete")
        try expectEqual(try await b.delete("never"), nil, "delete of a key never set")
        try await b.set("empty", [])
        try expectEqual(try await b.delete("empty"), 0, "delete of an empty object")
        try expectEqual(try await b.list(prefix: ""), [], "nothing left")
    }

    static func listing(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        let objects: [(String, Int)] = [
            ("s1/p/w1/a", 1), ("s1/p/w1/b", 2), ("s1/p/w2/c", 3), ("s1/r/5/x", 4), ("s2/p/w1/a", 5), ("s10/p/q", 6),
        ]
        for (k, n) in objects { try await b.set(k, Array(repeating: 7, count: n)) }
        func keys(_ p: String) async throws -> [String] { try await b.list(prefix: p).map(\.key) }
        try expectEqual(try await keys(""), objects.map(\.0).sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }, "all keys, byte order")
        try expectEqual(try await keys("s1/"), ["s1/p/w1/a", "s1/p/w1/b", "s1/p/w2/c", "s1/r/5/x"], "prefix s1/")
        try expectEqual(try await keys("s1"), ["s1/p/w1/a", "s1/p/w1/b", "s1/p/w2/c", "s1/r/5/x", "s10/p/q"], "prefix s1 without slash")
        try expectEqual(try await keys("s1/p/w"), ["s1/p/w1/a", "s1/p/w1/b", "s1/p/w2/c"], "prefix ending mid-component")
        try expectEqual(try await keys("s3"), [], "prefix with no keys")
        try expectEqual(try await b.list(prefix: "s1/r/").map(\.sizeBytes), [4], "sizes listed")
        _ = try await b.delete("s1/p/w1/b")
        try expectEqual(try await keys("s1/p/"), ["s1/p/w1/a", "s1/p/w2/c"], "deleted key not listed")
    }

    /// Keys that would escape a naive file or URL mapping. The longest stay under S3's
    /// 1024-byte key limit (with room for a test prefix) while still exceeding the 255
    /// bytes a file name may have.
    public static let hostileKeys: [String] = [
        "", ".", "..", "../escape", "a/../../b", "/", "//", "/absolute", "trailing/", "a/./b", "a//b",
        ".tmp-1234", "@", "%41", "A", "a", "+", "x+", "with\u{0}nul", "tab\there", "new\nline", "\\back\\slash",
        String(repeating: "long", count: 240), String(repeating: "é", count: 200), String(repeating: "/", count: 300),
        "\u{FFFD}", "\u{2215}", "emoji 🐘", "ctrl\u{1}\u{7F}", "%2F", "%",
    ]

    static func hostileKeys(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        for (i, key) in hostileKeys.enumerated() { try await b.set(key, Array("value \(i)".utf8)) }
        for (i, key) in hostileKeys.enumerated() {
            try expectEqual(try await b.get(key), Array("value \(i)".utf8), "value of hostile key #\(i)")
        }
        let listed = try await b.list(prefix: "").map { Array($0.key.utf8) }
        try expectEqual(
            listed, hostileKeys.map { Array($0.utf8) }.sorted { $0.lexicographicallyPrecedes($1) },
            "every hostile key listed once, byte order")
        for (i, key) in hostileKeys.enumerated() {
            try expectEqual(try await b.delete(key), "value \(i)".utf8.count, "delete hostile key #\(i)")
        }
        try expectEqual(try await b.list(prefix: ""), [], "nothing left after deleting hostile keys")
    }

    static func byteKeys(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        try await b.set("caf\u{E9}", [1])
        try expectEqual(try await b.get("cafe\u{301}"), nil, "the decomposed spelling is another key")
        try await b.set("cafe\u{301}", [2])
        try expectEqual(try await b.get("caf\u{E9}"), [1], "composed key keeps its value")
        try expectEqual(try await b.list(prefix: "caf").count, 2, "two keys listed")
    }

    static func largeObject(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        let big = payload(3, count: 8 << 20)
        try await b.set("big", big)
        try expect(try await b.get("big") == big, "8 MiB object read back intact")
        try expectEqual(try await b.list(prefix: "big").first?.sizeBytes, big.count, "size listed")
    }

    /// Overwrites a key with uniformly filled objects while readers read it: every read
    /// must be one whole object.
    static func atomicity(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        let size = 256 << 10
        try await b.set("atomic", Array(repeating: 0, count: size))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for fill in 1...20 { try await b.set("atomic", Array(repeating: UInt8(fill), count: size)) }
            }
            for _ in 0..<3 {
                group.addTask {
                    for _ in 0..<40 {
                        guard let v = try await b.get("atomic") else {
                            throw ConformanceFailure(message: "an overwritten key vanished", file: #filePath, line: #line)
                        }
                        try expectEqual(v.count, size, "size of a read during overwrites")
                        try expect(v.allSatisfy { $0 == v[0] }, "a read mixed two objects")
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    static func concurrentWriters(_ h: ConformanceHarness<any Blob>) async throws {
        let b = try await h.open()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<16 {
                group.addTask {
                    for i in 0..<10 { try await b.set("w\(w)/\(i)", payload(UInt64(w * 100 + i), count: 100 + i)) }
                }
            }
            try await group.waitForAll()
        }
        for w in 0..<16 {
            for i in 0..<10 {
                try expectEqual(try await b.get("w\(w)/\(i)"), payload(UInt64(w * 100 + i), count: 100 + i), "object w\(w)/\(i)")
            }
        }
        try expectEqual(try await b.list(prefix: "w").count, 160, "every object listed")
    }

    static func durability(_ h: ConformanceHarness<any Blob>) async throws {
        guard let reopen = h.reopen else { return }
        let b = try await h.open()
        try await b.set("s/p/1", [1, 2, 3])
        try await b.set("s/r/2", payload(9, count: 5000))
        try await b.set("gone", [0])
        _ = try await b.delete("gone")
        let again = try await reopen(b)
        try expectEqual(try await again.get("s/p/1"), [1, 2, 3], "object after reopen")
        try expectEqual(try await again.get("s/r/2"), payload(9, count: 5000), "second object after reopen")
        try expectEqual(try await again.get("gone"), nil, "deleted object stays deleted")
        try expectEqual(try await again.list(prefix: "").map(\.key), ["s/p/1", "s/r/2"], "listing after reopen")
    }
}
