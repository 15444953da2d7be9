import PersistCore

/// A whole-bank read at one time, checked: the total must be what the bank opened with.
public struct BankAudit: Hashable, Sendable, Codable {
    public var asOf: Timestamp
    /// Per shard, the sum of its account rows' diffs.
    public var shardSums: [Int64]
    public var total: Int64
    public var expected: Int64
    /// Rows that are not an account of this layout with an empty value.
    public var strayRows: Int
    /// True when no shard holds any row at all (a bank not yet opened).
    public var empty: Bool

    /// Audits `rowsByShard` (index = shard), all read at `asOf`.
    public init(layout: BankLayout, asOf: Timestamp, rowsByShard: [[Update]]) {
        self.asOf = asOf
        expected = layout.expectedTotal
        var sums: [Int64] = []
        var stray = 0
        for (shard, rows) in rowsByShard.enumerated() {
            var sum: Int64 = 0
            for row in rows where row.diff != 0 {
                if let account = BankLayout.account(ofKey: row.key), account < layout.accounts,
                    layout.shard(of: account) == shard, row.value.isEmpty
                {
                    sum &+= row.diff
                } else {
                    stray += 1
                }
            }
            sums.append(sum)
        }
        shardSums = sums
        total = sums.reduce(0, &+)
        strayRows = stray
        empty = rowsByShard.allSatisfy { $0.allSatisfy { $0.diff == 0 } }
    }

    /// The invariant is broken: money appeared or vanished, or foreign rows showed up.
    public var isViolation: Bool { total != expected || strayRows > 0 }

    public var description: String {
        "as of \(asOf): total \(total), expected \(expected); per shard \(shardSums)"
            + (strayRows > 0 ? "; \(strayRows) rows that are no account" : "")
    }
}
