import PersistCore

/// One key of the list-append workload: key `k<index>` in the data shard numbered
/// `shard` (named `la-<shard>` by default, see `ListAppendMix.shardName`).
public struct ListKey: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var shard: Int
    public var index: Int

    public init(shard: Int, index: Int) {
        self.shard = shard
        self.index = index
    }

    /// The row key inside its shard.
    public var rowKey: [UInt8] { Array("k\(index)".utf8) }

    /// The key as the history names it, unique across shards.
    public var historyName: String { "\(shard)/k\(index)" }

    public var description: String { historyName }

    /// The index of a row key of the form `k<index>`, or nil for any other key.
    public static func index(ofRowKey key: [UInt8]) -> Int? {
        guard key.count >= 2, key.count <= 19, key[0] == UInt8(ascii: "k") else { return nil }
        var n = 0
        for b in key.dropFirst() {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(b - UInt8(ascii: "0"))
        }
        return n
    }

    public static func < (a: ListKey, b: ListKey) -> Bool { (a.shard, a.index) < (b.shard, b.index) }
}

/// A micro-operation of a list-append transaction.
public enum MicroOp: Hashable, Sendable {
    /// Read the whole list of the key.
    case read(ListKey)
    /// Append a value unique across the run.
    case append(ListKey, Int)

    public var key: ListKey {
        switch self {
        case .read(let k), .append(let k, _): k
        }
    }
}

/// A transaction to run: its number (which its appended values encode) and micro-ops.
public struct TxnPlan: Hashable, Sendable {
    public var number: Int
    public var ops: [MicroOp]

    public init(number: Int, ops: [MicroOp]) {
        self.number = number
        self.ops = ops
    }

    public var kind: TxnKind {
        let reads = ops.contains { if case .read = $0 { true } else { false } }
        let appends = ops.contains { if case .append = $0 { true } else { false } }
        switch (reads, appends) {
        case (true, true): return .mixed
        case (false, true): return .writeOnly
        default: return .readOnly
        }
    }

    /// The shards the reads touch, each once, in the order first read.
    public var readShards: [Int] {
        var out: [Int] = []
        for case .read(let k) in ops where !out.contains(k.shard) { out.append(k.shard) }
        return out
    }

    /// The appends grouped per shard (shards in the order first appended to), each a row
    /// `(k<j>, decimal value, +1)`.
    public var appendsByShard: [(shard: Int, rows: [(key: [UInt8], value: [UInt8])])] {
        var out: [(shard: Int, rows: [(key: [UInt8], value: [UInt8])])] = []
        for case .append(let k, let v) in ops {
            let row = (key: k.rowKey, value: Array(String(v).utf8))
            if let i = out.firstIndex(where: { $0.shard == k.shard }) {
                out[i].rows.append(row)
            } else {
                out.append((shard: k.shard, rows: [row]))
            }
        }
        return out
    }

    /// The value the op at `opIndex` of txn `number` appends: unique in the run, and
    /// ordered like the transactions (by number, then op index).
    ///
    /// Lists are read back ordered by (commit time, value), and this is why that order
    /// is a valid serial order. Commits share a timestamp only when the coordinator
    /// groups commits that name no time of their own; those are blind writes (write-only
    /// transactions) that were all in flight together, so none of them read another and
    /// none finished before another began: every order among them is serializable, also
    /// in real time. What matters is picking the same order on every key, and sorting
    /// by value does that (by txn number), keeping a transaction's own appends in op
    /// order. Mixed transactions commit at an explicit time, which the coordinator never
    /// groups, and their reads are at an earlier time, so nothing that reads ever shares
    /// a timestamp with what it could have observed.
    public static func value(txn number: Int, op opIndex: Int) -> Int {
        precondition(opIndex >= 0 && opIndex < valuesPerTxn, "at most \(valuesPerTxn) ops per txn")
        return number * valuesPerTxn + opIndex
    }

    public static let valuesPerTxn = 8
}
