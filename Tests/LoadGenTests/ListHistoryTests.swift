import LoadGenKit
import PersistCore
import Testing

@Suite struct ListHistoryTests {
    func row(_ key: String, _ value: String, _ time: Timestamp, _ diff: Int64 = 1) -> Update {
        Update(key: Array(key.utf8), value: Array(value.utf8), time: time, diff: diff)
    }

    @Test func ordersByTimeThenValue() {
        // Arrival order is scrambled; 17 and 9 share time 5 (a group commit).
        let rows = [row("k1", "17", 5), row("k1", "30", 7), row("k1", "9", 5), row("k1", "100", 2), row("k2", "1", 1)]
        let h = ListHistory(rows: rows, keys: [Array("k1".utf8), Array("k2".utf8), Array("k3".utf8)])
        #expect(h.list(Array("k1".utf8)) == [.int(100), .int(9), .int(17), .int(30)])
        #expect(h.list(Array("k2".utf8)) == [.int(1)])
        #expect(h.list(Array("k3".utf8)) == [])
        #expect(h.retractions == 0)
    }

    @Test func groupCommitTieBreakFollowsTransactionOrderOnEveryKey() {
        // Txns 4 and 6 committed in one group at time 10, each appending to both keys.
        let t4a = TxnPlan.value(txn: 4, op: 0)
        let t4b = TxnPlan.value(txn: 4, op: 1)
        let t6a = TxnPlan.value(txn: 6, op: 0)
        let t6b = TxnPlan.value(txn: 6, op: 1)
        let rows = [row("a", "\(t6a)", 10), row("b", "\(t6b)", 10), row("b", "\(t4b)", 10), row("a", "\(t4a)", 10)]
        let h = ListHistory(rows: rows, keys: [Array("a".utf8), Array("b".utf8)])
        #expect(h.list(Array("a".utf8)) == [.int(t4a), .int(t6a)])
        #expect(h.list(Array("b".utf8)) == [.int(t4b), .int(t6b)])
    }

    @Test func duplicatesShowAndRetractionsAreCounted() {
        let rows = [
            row("k", "5", 1, 2), row("k", "6", 2), row("k", "7", 3), row("k", "7", 4, -1), row("k", "8", 5, -1),
        ]
        let h = ListHistory(rows: rows, keys: [Array("k".utf8)])
        #expect(h.list(Array("k".utf8)) == [.int(5), .int(5), .int(6)])
        #expect(h.retractions == 2)
    }

    @Test func garbageValuesAreKeptAsText() {
        let rows = [row("k", "abc", 1), row("k", "007", 1), row("k", "3", 1)]
        let h = ListHistory(rows: rows, keys: [Array("k".utf8)])
        #expect(h.list(Array("k".utf8)) == [.int(3), .text("007"), .text("abc")])
        #expect(ReadElement(value: Array("-4".utf8)) == .int(-4))
        #expect(ReadElement(value: Array("".utf8)) == .text(""))
    }
}
