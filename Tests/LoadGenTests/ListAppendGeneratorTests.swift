import LoadGenKit
import PersistCore
import Testing

@Suite struct ListAppendGeneratorTests {
    let mix = ListAppendMix(shards: 3, keysPerShard: 2, maxAppendsPerKey: 4, maxOps: 4, readFraction: 0.5)

    func plans(seed: UInt64, count: Int, first: [Int]? = nil) -> [TxnPlan] {
        var g = ListAppendGenerator(mix: mix, seed: seed, firstKeyIndex: first)
        return (0..<count).map { _ in g.next() }
    }

    @Test func sameSeedSameTransactions() {
        #expect(plans(seed: 7, count: 500) == plans(seed: 7, count: 500))
        #expect(plans(seed: 7, count: 50) != plans(seed: 8, count: 50))
    }

    @Test func plansHaveOneToMaxOpsAndEveryKind() {
        let all = plans(seed: 3, count: 2000)
        #expect(all.allSatisfy { (1...mix.maxOps).contains($0.ops.count) })
        #expect(all.map(\.number) == Array(1...2000))
        let kinds = Set(all.map(\.kind))
        #expect(kinds == [.readOnly, .writeOnly, .mixed])
        let reads = all.flatMap(\.ops).filter { if case .read = $0 { true } else { false } }.count
        let fraction = Double(reads) / Double(all.flatMap(\.ops).count)
        #expect(abs(fraction - 0.5) < 0.05, "read fraction \(fraction)")
    }

    @Test func appendedValuesAreUniqueAndSortLikeTheirTransactions() {
        let all = plans(seed: 11, count: 3000)
        var seen: Set<Int> = []
        var previous = -1
        for plan in all {
            for (i, op) in plan.ops.enumerated() {
                guard case .append(_, let v) = op else { continue }
                #expect(v == TxnPlan.value(txn: plan.number, op: i))
                #expect(seen.insert(v).inserted, "value \(v) appended twice")
                #expect(v > previous, "values grow with txn number and op index")
                previous = v
            }
        }
    }

    @Test func keysRetireAfterMaxAppendsAndFreshOnesReplaceThem() {
        let all = plans(seed: 5, count: 3000)
        var appends: [ListKey: Int] = [:]
        var lastAppend: [ListKey: Int] = [:]
        var firstUse: [ListKey: Int] = [:]
        for plan in all {
            for op in plan.ops {
                if firstUse[op.key] == nil { firstUse[op.key] = plan.number }
                #expect(op.key.shard < mix.shards)
                if case .append(let k, _) = op {
                    appends[k, default: 0] += 1
                    lastAppend[k] = plan.number
                }
                // A retired key is never touched by a later transaction.
                if let n = appends[op.key], n > mix.maxAppendsPerKey { Issue.record("\(op.key) took \(n) appends") }
            }
        }
        #expect(appends.values.allSatisfy { $0 <= mix.maxAppendsPerKey })
        let retired = appends.filter { $0.value == mix.maxAppendsPerKey }.map(\.key)
        #expect(retired.count > 100, "keys rotate")
        for key in retired {
            let last = lastAppend[key] ?? 0
            for plan in all where plan.number > last {
                #expect(!plan.ops.contains { $0.key == key }, "\(key) used after it retired")
            }
            if retired.firstIndex(of: key) ?? 0 > 5 { break }  // a sample keeps this quick
        }
        // Key indices per shard are handed out in order, without gaps.
        for shard in 0..<mix.shards {
            let indices = Set(firstUse.keys.filter { $0.shard == shard }.map(\.index))
            #expect(indices == Set(0..<indices.count))
        }
        var g = ListAppendGenerator(mix: mix, seed: 5)
        for _ in 0..<3000 { _ = g.next() }
        #expect(g.pool.retired == retired.count)
        #expect(g.pool.appended == Set(appends.keys))
        #expect(g.pool.activeKeys.count == mix.shards * mix.keysPerShard)
    }

    @Test func keysStartPastTheFirstIndexGiven() {
        let all = plans(seed: 9, count: 200, first: [10, 0, 7])
        let minimum = Dictionary(grouping: all.flatMap(\.ops).map(\.key), by: \.shard).mapValues {
            $0.map(\.index).min() ?? -1
        }
        #expect(minimum[0] == 10)
        #expect(minimum[1] == 0)
        #expect(minimum[2] == 7)
        #expect(
            ListAppendWorkload.firstFreeKeyIndex([
                Array("k3".utf8), Array("k12".utf8), Array("x9".utf8), Array("k".utf8),
            ]) == 13)
        #expect(ListAppendWorkload.firstFreeKeyIndex([]) == 0)
    }

    @Test func keyNamesAndRows() {
        let k = ListKey(shard: 2, index: 17)
        #expect(k.historyName == "2/k17")
        #expect(k.rowKey == Array("k17".utf8))
        #expect(ListAppendMix().shardName(2) == "la-2")
        #expect(ListAppendMix(shardPrefix: "run7/la").shardName(0) == "run7/la-0")
        #expect(ListKey.index(ofRowKey: Array("k17".utf8)) == 17)
        #expect(ListKey.index(ofRowKey: Array("k1x".utf8)) == nil)
        #expect(ListKey.index(ofRowKey: Array("acct-1".utf8)) == nil)
        let plan = TxnPlan(
            number: 3,
            ops: [
                .append(k, 24), .read(ListKey(shard: 0, index: 1)), .append(ListKey(shard: 0, index: 1), 26),
                .append(k, 27),
            ])
        #expect(plan.kind == .mixed)
        #expect(plan.readShards == [0])
        let groups = plan.appendsByShard
        #expect(groups.map(\.shard) == [2, 0])
        #expect(groups[0].rows.map(\.value) == [Array("24".utf8), Array("27".utf8)])
        #expect(groups[1].rows.map(\.key) == [Array("k1".utf8)])
    }

    @Test func completionsAddTheTransactionsOwnAppends() {
        let a = ListKey(shard: 0, index: 0)
        let b = ListKey(shard: 1, index: 0)
        let plan = TxnPlan(number: 5, ops: [.read(a), .append(a, 40), .read(a), .append(a, 41), .read(b), .read(a)])
        let ops = ListAppendWorkload.completion(plan, snapshot: [a: [.int(1), .int(2)], b: []])
        #expect(
            ops == [
                .read(key: "0/k0", list: [.int(1), .int(2)]),
                .append(key: "0/k0", value: 40),
                .read(key: "0/k0", list: [.int(1), .int(2), .int(40)]),
                .append(key: "0/k0", value: 41),
                .read(key: "1/k0", list: []),
                .read(key: "0/k0", list: [.int(1), .int(2), .int(40), .int(41)]),
            ])
    }

    @Test func mixProblems() {
        #expect(ListAppendMix().problem == nil)
        #expect(ListAppendMix(shards: 0).problem != nil)
        #expect(ListAppendMix(maxOps: 9).problem != nil)
        #expect(ListAppendMix(readFraction: 1.5).problem != nil)
        #expect(ListAppendMix(maxAppendsPerKey: 0).problem != nil)
        #expect(ListAppendMix(shardPrefix: "has space").problem != nil)
    }
}
