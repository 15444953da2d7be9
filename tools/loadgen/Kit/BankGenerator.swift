import PersistCore

/// Money moved between two accounts.
public struct Transfer: Hashable, Sendable {
    public var from: Int
    public var to: Int
    public var amount: Int64

    public init(from: Int, to: Int, amount: Int64) {
        self.from = from
        self.to = to
        self.amount = amount
    }
}

/// One step of the bank workload.
public enum BankOp: Hashable, Sendable {
    case transfer(Transfer)
    /// Read every shard at one time and check the total.
    case audit
}

/// The seeded source of bank operations.
public struct BankGenerator: Sendable {
    public let layout: BankLayout
    public let auditFraction: Double
    public let maxAmount: Int64
    var rng: SeededGenerator

    public init(layout: BankLayout, seed: UInt64, auditFraction: Double = 0.1, maxAmount: Int64 = 10) {
        precondition(layout.problem == nil, layout.problem ?? "")
        precondition(maxAmount >= 1, "transfers move at least 1")
        self.layout = layout
        self.auditFraction = auditFraction
        self.maxAmount = maxAmount
        rng = SeededGenerator(seed: seed)
    }

    public mutating func next() -> BankOp {
        if Double.random(in: 0..<1, using: &rng) < auditFraction { return .audit }
        let from = Int.random(in: 0..<layout.accounts, using: &rng)
        // Prefer an account on another shard, so the transfer spans shards.
        var candidates = (0..<layout.accounts).filter { layout.shard(of: $0) != layout.shard(of: from) }
        if candidates.isEmpty { candidates = (0..<layout.accounts).filter { $0 != from } }
        let to = candidates[Int.random(in: 0..<candidates.count, using: &rng)]
        return .transfer(Transfer(from: from, to: to, amount: Int64.random(in: 1...maxAmount, using: &rng)))
    }
}
