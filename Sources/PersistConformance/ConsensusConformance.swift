import PersistCore
import PersistLocation

/// The behaviour every `Consensus` must have (spec/persist.md §2.3 and §8.5). Run each
/// check against each implementation.
public enum ConsensusConformance {
    public typealias Check = ConformanceCheck<any Consensus>

    public static let checks: [Check] = [
        Check(name: "empty key", run: emptyKey),
        Check(name: "first write", run: firstWrite),
        Check(name: "expectation mismatches", run: mismatches),
        Check(name: "invalid arguments", run: invalidArguments),
        Check(name: "scan", run: scanLimits),
        Check(name: "truncate", run: truncation),
        Check(name: "keys are independent", run: independentKeys),
        Check(name: "keys compare by bytes", run: byteKeys),
        Check(name: "large payload", run: largePayload),
        Check(name: "seqno range", run: seqnoRange),
        Check(name: "racing compare-and-set", run: racingCaS),
        Check(name: "concurrent writers on distinct keys", run: distinctKeyWriters),
        Check(name: "durable across reopen", run: durability),
    ]

    static func emptyKey(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        try expectEqual(try await c.head("k"), nil, "head of a new key")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 10), [], "scan of a new key")
        try expectEqual(try await c.listKeys(), [], "keys of an empty store")
        try await expectStorageError(.invalidArgument, "truncate of a new key") { () async throws(StorageError) in
            try await c.truncate("k", seqno: seq(0))
        }
        try expectEqual(
            try await c.compareAndSet("k", expected: seq(0), new: VersionedData(seqno: seq(1), data: [1])),
            .expectationMismatch(current: nil), "CaS expecting v0 on a new key")
        try expectEqual(try await c.head("k"), nil, "head after a failed CaS")
    }

    static func firstWrite(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let v1 = VersionedData(seqno: seq(1), data: Array("first".utf8))
        try expectEqual(try await c.compareAndSet("k", expected: nil, new: v1), .committed, "first CaS")
        try expectEqual(try await c.head("k"), v1, "head after first CaS")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 10), [v1], "scan after first CaS")
        try expectEqual(try await c.scan("k", from: seq(2), limit: 10), [], "scan from above the head")
        try expectEqual(try await c.listKeys(), ["k"], "keys after first CaS")
        // A second "first write" must not succeed.
        try expectEqual(
            try await c.compareAndSet("k", expected: nil, new: VersionedData(seqno: seq(1), data: [9])),
            .expectationMismatch(current: v1), "CaS expecting no versions on a written key")
        try expectEqual(try await c.truncate("k", seqno: seq(0)), 0, "truncate at 0")
        try expectEqual(try await c.truncate("k", seqno: seq(1)), 0, "truncate at the head")
        try await expectStorageError(.invalidArgument, "truncate above the head") { () async throws(StorageError) in
            try await c.truncate("k", seqno: seq(2))
        }
        try expectEqual(try await c.head("k"), v1, "head after truncations")
    }

    static func mismatches(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let v5 = VersionedData(seqno: seq(5), data: [5])
        try expectEqual(try await c.compareAndSet("k", expected: nil, new: v5), .committed, "first CaS at v5")
        for wrong in [0, 4, 6, 100] {
            try expectEqual(
                try await c.compareAndSet("k", expected: seq(wrong), new: VersionedData(seqno: seq(wrong + 1), data: [0])),
                .expectationMismatch(current: v5), "CaS expecting v\(wrong) when the head is v5")
        }
        let v6 = VersionedData(seqno: seq(6), data: [6])
        try expectEqual(try await c.compareAndSet("k", expected: seq(5), new: v6), .committed, "CaS v5 -> v6")
        // Seqnos may skip ahead; they must only grow.
        let v9 = VersionedData(seqno: seq(9), data: [9])
        try expectEqual(try await c.compareAndSet("k", expected: seq(6), new: v9), .committed, "CaS v6 -> v9")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 10), [v5, v6, v9], "all versions in order")
    }

    static func invalidArguments(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        _ = try await c.compareAndSet("k", expected: nil, new: VersionedData(seqno: seq(3), data: []))
        for bad in [2, 3] {
            try await expectStorageError(.invalidArgument, "CaS to v\(bad) expecting v3") { () async throws(StorageError) in
                try await c.compareAndSet("k", expected: seq(3), new: VersionedData(seqno: seq(bad), data: []))
            }
        }
        try await expectStorageError(.invalidArgument, "scan with limit 0") { () async throws(StorageError) in
            try await c.scan("k", from: seq(0), limit: 0)
        }
        try expectEqual(try await c.head("k")?.seqno, seq(3), "head after rejected calls")
    }

    static func scanLimits(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        var all: [VersionedData] = []
        var expected: SeqNo? = nil
        for i in 1...5 {
            let v = VersionedData(seqno: seq(i), data: payload(UInt64(i), count: i * 3))
            try expectEqual(try await c.compareAndSet("k", expected: expected, new: v), .committed, "CaS v\(i)")
            expected = v.seqno
            all.append(v)
        }
        try expectEqual(try await c.scan("k", from: seq(0), limit: 1), [all[0]], "scan limit 1")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 5), all, "scan with the exact limit")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 100), all, "scan with a larger limit")
        try expectEqual(try await c.scan("k", from: seq(3), limit: 2), Array(all[2..<4]), "scan from the middle")
        try expectEqual(try await c.scan("k", from: seq(5), limit: 9), [all[4]], "scan from the head")
        try expectEqual(try await c.scan("k", from: seq(6), limit: 9), [], "scan past the head")
        try expectEqual(try await c.scanAll("k"), all, "scanAll")
    }

    static func truncation(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        var all: [VersionedData] = []
        var expected: SeqNo? = nil
        for i in 1...8 {
            let v = VersionedData(seqno: seq(i), data: [UInt8(i)])
            _ = try await c.compareAndSet("k", expected: expected, new: v)
            expected = v.seqno
            all.append(v)
        }
        try expectEqual(try await c.truncate("k", seqno: seq(2)), 1, "truncate below v2")
        try expectEqual(try await c.truncate("k", seqno: seq(2)), 0, "repeated truncate below v2")
        try expectEqual(try await c.truncate("k", seqno: seq(6)), 4, "truncate below v6 deletes several")
        try expectEqual(try await c.truncate("k", seqno: seq(4)), 0, "truncate below an earlier point")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 100), Array(all[5...]), "scan after truncation")
        try expectEqual(try await c.truncate("k", seqno: seq(8)), 2, "truncate up to the head")
        try expectEqual(try await c.scan("k", from: seq(0), limit: 100), [all[7]], "only the head remains")
        try await expectStorageError(.invalidArgument, "truncate above the head") { () async throws(StorageError) in
            try await c.truncate("k", seqno: seq(9))
        }
        let v9 = VersionedData(seqno: seq(9), data: [9])
        try expectEqual(try await c.compareAndSet("k", expected: seq(8), new: v9), .committed, "CaS after truncation")
        try expectEqual(try await c.scanAll("k"), [all[7], v9], "versions after truncation and CaS")
    }

    static func independentKeys(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let a1 = VersionedData(seqno: seq(1), data: [0xA])
        let b7 = VersionedData(seqno: seq(7), data: [0xB])
        _ = try await c.compareAndSet("a", expected: nil, new: a1)
        _ = try await c.compareAndSet("b", expected: nil, new: b7)
        // An expectation taken from another key must not match.
        try expectEqual(
            try await c.compareAndSet("a", expected: seq(7), new: VersionedData(seqno: seq(8), data: [])),
            .expectationMismatch(current: a1), "CaS on a with b's head")
        try expectEqual(try await c.truncate("b", seqno: seq(7)), 0, "truncate b")
        try expectEqual(try await c.head("a"), a1, "a unaffected")
        try expectEqual(try await c.head("b"), b7, "b unaffected")
        try expectEqual(try await c.listKeys(), ["a", "b"], "both keys listed in order")
    }

    static func byteKeys(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        // Canonically equivalent in Swift, different bytes: two different keys.
        let composed = "caf\u{E9}"
        let decomposed = "cafe\u{301}"
        _ = try await c.compareAndSet(composed, expected: nil, new: VersionedData(seqno: seq(1), data: [1]))
        try expectEqual(try await c.head(decomposed), nil, "the decomposed spelling is another key")
        _ = try await c.compareAndSet(decomposed, expected: nil, new: VersionedData(seqno: seq(2), data: [2]))
        try expectEqual(try await c.head(composed)?.data, [1], "composed key keeps its value")
        try expectEqual(try await c.head(decomposed)?.data, [2], "decomposed key keeps its value")
        try expectEqual(try await c.listKeys().count, 2, "two keys listed")
        for key in ["", "a/b", "..", "with\u{0}nul", String(repeating: "x", count: 1000)] {
            _ = try await c.compareAndSet(key, expected: nil, new: VersionedData(seqno: seq(1), data: Array(key.utf8)))
            try expectEqual(try await c.head(key)?.data, Array(key.utf8), "value of an unusual key")
        }
    }

    static func largePayload(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let big = VersionedData(seqno: seq(1), data: payload(42, count: 10 * 1024))
        try expectEqual(try await c.compareAndSet("k", expected: nil, new: big), .committed, "CaS of 10 KiB")
        try expectEqual(try await c.head("k"), big, "10 KiB read back")
    }

    static func seqnoRange(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let zero = VersionedData(seqno: seq(0), data: [0])
        try expectEqual(try await c.compareAndSet("k", expected: nil, new: zero), .committed, "CaS at v0")
        let top = VersionedData(seqno: .maximum, data: [1])
        try expectEqual(try await c.compareAndSet("k", expected: seq(0), new: top), .committed, "CaS at Int64.max")
        try expectEqual(try await c.scanAll("k"), [zero, top], "both extremes stored")
        try expect(SeqNo(UInt64(Int64.max) + 1) == nil, "seqnos above Int64.max are unrepresentable")
    }

    /// Many callers race head-then-CaS on one key; every seqno must have exactly one
    /// winner, the chain must have no gaps, and stored bytes must be the winner's.
    static func racingCaS(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let workers = 16
        let attemptsPerWorker = 40
        let wins = try await withThrowingTaskGroup(of: [(SeqNo, [UInt8])].self) { group in
            for w in 0..<workers {
                group.addTask {
                    var mine: [(SeqNo, [UInt8])] = []
                    for attempt in 0..<attemptsPerWorker {
                        let head = try await c.head("race")
                        guard let s = SeqNo(head.map { $0.seqno.rawValue + 1 } ?? 1) else { continue }
                        let data = Array("w\(w)-a\(attempt)".utf8)
                        let r = try await c.compareAndSet("race", expected: head?.seqno, new: VersionedData(seqno: s, data: data))
                        if r == .committed { mine.append((s, data)) }
                    }
                    return mine
                }
            }
            var all: [(SeqNo, [UInt8])] = []
            for try await m in group { all += m }
            return all
        }
        let stored = try await c.scanAll("race")
        try expect(!wins.isEmpty, "someone won")
        try expectEqual(Set(wins.map(\.0)).count, wins.count, "each seqno won at most once")
        try expectEqual(stored.map(\.seqno), (1...wins.count).map { seq($0) }, "a gap-free chain of every win")
        let winner = Dictionary(uniqueKeysWithValues: wins)
        for v in stored {
            try expectEqual(v.data, winner[v.seqno] ?? [], "stored bytes at \(v.seqno) are the winner's")
        }
    }

    static func distinctKeyWriters(_ h: ConformanceHarness<any Consensus>) async throws {
        let c = try await h.open()
        let writers = 32
        let perWriter = 20
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<writers {
                group.addTask {
                    var expected: SeqNo? = nil
                    for i in 1...perWriter {
                        let v = VersionedData(seqno: seq(i), data: Array("\(w):\(i)".utf8))
                        let r = try await c.compareAndSet("key-\(w)", expected: expected, new: v)
                        try expectEqual(r, .committed, "uncontended CaS of writer \(w) at v\(i)")
                        expected = v.seqno
                        if i % 8 == 0 { _ = try await c.truncate("key-\(w)", seqno: seq(i - 2)) }
                    }
                }
            }
            try await group.waitForAll()
        }
        for w in 0..<writers {
            let versions = try await c.scanAll("key-\(w)")
            try expectEqual(versions.last?.seqno, seq(perWriter), "head of writer \(w)")
            try expectEqual(versions.first?.seqno, seq(perWriter - 6), "oldest kept version of writer \(w)")
            try expectEqual(versions.last?.data, Array("\(w):\(perWriter)".utf8), "head bytes of writer \(w)")
        }
        try expectEqual(try await c.listKeys().count, writers, "one key per writer")
    }

    static func durability(_ h: ConformanceHarness<any Consensus>) async throws {
        guard let reopen = h.reopen else { return }  // not a durable backend
        let c = try await h.open()
        var expected: SeqNo? = nil
        for i in 1...10 {
            _ = try await c.compareAndSet("d", expected: expected, new: VersionedData(seqno: seq(i), data: [UInt8(i)]))
            expected = seq(i)
        }
        _ = try await c.truncate("d", seqno: seq(4))
        _ = try await c.compareAndSet("e", expected: nil, new: VersionedData(seqno: seq(1), data: payload(7, count: 300)))
        let before = (try await c.scanAll("d"), try await c.scanAll("e"), try await c.listKeys())
        let again = try await reopen(c)
        try expectEqual(try await again.scanAll("d"), before.0, "versions of d after reopen")
        try expectEqual(try await again.scanAll("e"), before.1, "versions of e after reopen")
        try expectEqual(try await again.listKeys(), before.2, "keys after reopen")
        try expectEqual(
            try await again.compareAndSet("d", expected: seq(10), new: VersionedData(seqno: seq(11), data: [11])),
            .committed, "CaS continues after reopen")
    }
}
