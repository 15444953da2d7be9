import PersistCodec
import PersistCore

/// The parameters of the list-append workload's transaction mix.
public struct ListAppendMix: Hashable, Sendable {
    public var shards: Int
    /// Keys per shard open for appends at any time (few, so transactions contend).
    public var keysPerShard: Int
    /// Appends a key takes before it is retired and replaced by a fresh one.
    public var maxAppendsPerKey: Int
    /// Micro-ops per transaction: uniformly 1...maxOps.
    public var maxOps: Int
    /// The probability of a micro-op being a read.
    public var readFraction: Double
    /// Data shard `i` is named `<shardPrefix>-<i>`.
    public var shardPrefix: String

    public init(
        shards: Int = 4, keysPerShard: Int = 3, maxAppendsPerKey: Int = 16, maxOps: Int = 4, readFraction: Double = 0.5,
        shardPrefix: String = "la"
    ) {
        self.shards = shards
        self.shardPrefix = shardPrefix
        self.keysPerShard = keysPerShard
        self.maxAppendsPerKey = maxAppendsPerKey
        self.maxOps = maxOps
        self.readFraction = readFraction
    }

    /// Nil when the mix is usable, else what is wrong with it.
    public var problem: String? {
        if shards < 1 { return "--shards must be at least 1" }
        if keysPerShard < 1 { return "--keys-per-shard must be at least 1" }
        if maxAppendsPerKey < 1 { return "--max-appends-per-key must be at least 1" }
        if maxOps < 1 || maxOps > TxnPlan.valuesPerTxn { return "--max-ops must be 1-\(TxnPlan.valuesPerTxn)" }
        if !(0...1).contains(readFraction) { return "--read-fraction must be between 0 and 1" }
        if !CoordinatorRPC.isValidShardName(shardName(shards - 1)) {
            return "--shard-prefix \(shardPrefix) does not make valid shard names (letters, digits, _ - . / :)"
        }
        return nil
    }

    /// The name of data shard `shard`.
    public func shardName(_ shard: Int) -> String { "\(shardPrefix)-\(shard)" }
}

/// The active keys: a small pool per shard, each key retired after a fixed number of
/// appends and replaced by a never-used one.
public struct KeyPool: Hashable, Sendable {
    struct Slot: Hashable, Sendable {
        var index: Int
        var appends: Int
    }

    public let keysPerShard: Int
    public let maxAppendsPerKey: Int
    var slots: [[Slot]]
    var nextIndex: [Int]
    /// Every key that was ever given an append.
    public private(set) var appended: Set<ListKey> = []
    public private(set) var retired = 0

    /// A pool whose shard `i` starts with key index `firstIndex[i]` (past any key an
    /// earlier run used).
    public init(firstIndex: [Int], keysPerShard: Int, maxAppendsPerKey: Int) {
        self.keysPerShard = keysPerShard
        self.maxAppendsPerKey = maxAppendsPerKey
        slots = firstIndex.map { first in (0..<keysPerShard).map { Slot(index: first + $0, appends: 0) } }
        nextIndex = firstIndex.map { $0 + keysPerShard }
    }

    public var shards: Int { slots.count }
    public var activeCount: Int { shards * keysPerShard }

    /// The active key at flat position `position` (0..<activeCount).
    public func key(at position: Int) -> ListKey {
        let shard = position / keysPerShard
        return ListKey(shard: shard, index: slots[shard][position % keysPerShard].index)
    }

    /// Every active key.
    public var activeKeys: [ListKey] { (0..<activeCount).map(key(at:)) }

    /// Takes one append for the key at `position`, retiring it when it has had its share.
    public mutating func noteAppend(at position: Int) {
        let shard = position / keysPerShard
        let slot = position % keysPerShard
        appended.insert(ListKey(shard: shard, index: slots[shard][slot].index))
        slots[shard][slot].appends += 1
        if slots[shard][slot].appends >= maxAppendsPerKey {
            slots[shard][slot] = Slot(index: nextIndex[shard], appends: 0)
            nextIndex[shard] += 1
            retired += 1
        }
    }
}

/// The seeded source of list-append transactions: the same seed and starting keys give
/// the same sequence of plans, whichever client ends up running each one.
public struct ListAppendGenerator: Sendable {
    public let mix: ListAppendMix
    public private(set) var pool: KeyPool
    var rng: SeededGenerator
    public private(set) var nextNumber: Int

    public init(mix: ListAppendMix, seed: UInt64, firstKeyIndex: [Int]? = nil) {
        precondition(mix.problem == nil, mix.problem ?? "")
        self.mix = mix
        let first = firstKeyIndex ?? Array(repeating: 0, count: mix.shards)
        precondition(first.count == mix.shards, "one first key index per shard")
        pool = KeyPool(firstIndex: first, keysPerShard: mix.keysPerShard, maxAppendsPerKey: mix.maxAppendsPerKey)
        rng = SeededGenerator(seed: seed)
        nextNumber = 1
    }

    public mutating func next() -> TxnPlan {
        let number = nextNumber
        nextNumber += 1
        let count = Int.random(in: 1...mix.maxOps, using: &rng)
        var ops: [MicroOp] = []
        for opIndex in 0..<count {
            let position = Int.random(in: 0..<pool.activeCount, using: &rng)
            let key = pool.key(at: position)
            if Double.random(in: 0..<1, using: &rng) < mix.readFraction {
                ops.append(.read(key))
            } else {
                ops.append(.append(key, TxnPlan.value(txn: number, op: opIndex)))
                pool.noteAppend(at: position)
            }
        }
        return TxnPlan(number: number, ops: ops)
    }
}
