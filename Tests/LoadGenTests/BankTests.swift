import LoadGenKit
import PersistCodec
import PersistCore
import Testing

@Suite struct BankTests {
    let layout = BankLayout(accounts: 8, shards: 4, initial: 100)

    func row(_ account: Int, _ diff: Int64, value: String = "") -> Update {
        Update(key: BankLayout.key(account), value: Array(value.utf8), time: 9, diff: diff)
    }

    @Test func layoutPlacesAccountsAndDeposits() {
        #expect(layout.shard(of: 5) == 1)
        #expect(BankLayout.key(5) == Array("acct-5".utf8))
        #expect(BankLayout.account(ofKey: Array("acct-12".utf8)) == 12)
        #expect(BankLayout.account(ofKey: Array("acct-".utf8)) == nil)
        #expect(BankLayout.account(ofKey: Array("k12".utf8)) == nil)
        #expect(layout.expectedTotal == 800)
        let deposit = layout.deposit
        #expect(deposit.count == 4)
        #expect(deposit.flatMap(\.rows).map(\.diff).reduce(0, +) == 800)
        #expect(
            deposit[1]
                == ShardWrites(
                    shard: .name("bank-1"),
                    rows: [RowWrite(key: BankLayout.key(1), diff: 100), RowWrite(key: BankLayout.key(5), diff: 100)]))
        #expect(BankLayout(accounts: 1).problem != nil)
        #expect(BankLayout(accounts: 2, shards: 1).problem == nil)
        #expect(BankLayout(shardPrefix: "").problem == nil, "\"-0\" is a valid name")
        #expect(BankLayout(shardPrefix: "a b").problem != nil)
        #expect(BankLayout(shardPrefix: "b2").shardName(3) == "b2-3")
    }

    @Test func transfersAreOneBalancedCommitAcrossShards() {
        var g = BankGenerator(layout: layout, seed: 4, auditFraction: 0.2, maxAmount: 10)
        var audits = 0
        for _ in 0..<2000 {
            switch g.next() {
            case .audit:
                audits += 1
            case .transfer(let t):
                #expect(t.from != t.to)
                #expect(layout.shard(of: t.from) != layout.shard(of: t.to), "other shard when possible")
                #expect((1...10).contains(t.amount))
                let writes = layout.writes(t)
                #expect(writes.count == 2)
                #expect(writes.flatMap(\.rows).map(\.diff).reduce(0, +) == 0)
            }
        }
        #expect((300...500).contains(audits), "about a fifth are audits: \(audits)")
        // One shard: transfers still move money, within the shard.
        let single = BankLayout(accounts: 3, shards: 1, initial: 5)
        var g1 = BankGenerator(layout: single, seed: 1, auditFraction: 0)
        guard case .transfer(let t) = g1.next() else {
            Issue.record("expected a transfer")
            return
        }
        #expect(single.writes(t).count == 1)
        #expect(single.writes(t)[0].rows.count == 2)
    }

    @Test func sameSeedSameOperations() {
        var a = BankGenerator(layout: layout, seed: 12)
        var b = BankGenerator(layout: layout, seed: 12)
        for _ in 0..<500 { #expect(a.next() == b.next()) }
    }

    @Test func auditFindsLostAndCreatedMoney() {
        // Balances after some transfers: per shard [0+4 | 1+5 | 2+6 | 3+7].
        let good: [[Update]] = [
            [row(0, 90), row(4, 110)], [row(1, 100), row(5, 100)], [row(2, 95), row(6, 105)], [row(3, 200), row(7, 0)],
        ]
        let ok = BankAudit(layout: layout, asOf: 9, rowsByShard: good)
        #expect(!ok.isViolation)
        #expect(ok.shardSums == [200, 200, 200, 200])
        #expect(!ok.empty)

        var torn = good
        torn[3] = [row(3, 190), row(7, 0)]  // a debit applied without its credit
        let bad = BankAudit(layout: layout, asOf: 12, rowsByShard: torn)
        #expect(bad.isViolation)
        #expect(bad.total == 790)
        #expect(bad.description.contains("as of 12"))
        #expect(bad.description.contains("[200, 200, 200, 190]"))

        var stray = good
        stray[0].append(row(1, 0 + 1))  // account 1 belongs to shard 1
        #expect(BankAudit(layout: layout, asOf: 9, rowsByShard: stray).strayRows == 1)
        stray = good
        stray[2].append(row(2, 1, value: "x"))
        #expect(BankAudit(layout: layout, asOf: 9, rowsByShard: stray).isViolation)

        let empty = BankAudit(layout: layout, asOf: 1, rowsByShard: [[], [], [], []])
        #expect(empty.empty)
        #expect(empty.isViolation, "an unopened bank has no money")
    }
}
