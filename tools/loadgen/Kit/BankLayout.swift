import PersistCodec
import PersistCore

/// Where the bank's accounts live: account `a` is row `(acct-<a>, empty value)` in data
/// shard `<prefix>-<a mod shards>` (prefix `bank` by default), and its balance is the
/// sum of that row's diffs.
public struct BankLayout: Hashable, Sendable {
    public var accounts: Int
    public var shards: Int
    /// Each account's opening balance.
    public var initial: Int64
    /// Data shard `i` is named `<shardPrefix>-<i>`.
    public var shardPrefix: String

    public init(accounts: Int = 8, shards: Int = 4, initial: Int64 = 100, shardPrefix: String = "bank") {
        self.accounts = accounts
        self.shards = shards
        self.initial = initial
        self.shardPrefix = shardPrefix
    }

    /// Nil when usable, else what is wrong.
    public var problem: String? {
        if accounts < 2 { return "--accounts must be at least 2" }
        if shards < 1 { return "--shards must be at least 1" }
        if initial < 0 { return "--initial must not be negative" }
        if Int64(accounts).multipliedReportingOverflow(by: initial).overflow {
            return "--accounts times --initial overflows"
        }
        if !CoordinatorRPC.isValidShardName(shardName(shards - 1)) {
            return "--shard-prefix \(shardPrefix) does not make valid shard names (letters, digits, _ - . / :)"
        }
        return nil
    }

    public func shardName(_ shard: Int) -> String { "\(shardPrefix)-\(shard)" }
    public func shard(of account: Int) -> Int { account % shards }
    public static func key(_ account: Int) -> [UInt8] { Array("acct-\(account)".utf8) }

    /// The account a row key names, or nil.
    public static func account(ofKey key: [UInt8]) -> Int? {
        let prefix = Array("acct-".utf8)
        guard key.count > prefix.count, key.count <= prefix.count + 18, Array(key.prefix(prefix.count)) == prefix else {
            return nil
        }
        var n = 0
        for b in key.dropFirst(prefix.count) {
            guard b >= UInt8(ascii: "0"), b <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(b - UInt8(ascii: "0"))
        }
        return n
    }

    /// The money in the bank, which no transfer changes.
    public var expectedTotal: Int64 { Int64(accounts) * initial }

    /// The opening deposit: `initial` into every account, one commit.
    public var deposit: [ShardWrites] {
        (0..<shards).compactMap { shard in
            let rows = (0..<accounts).filter { self.shard(of: $0) == shard }.map {
                RowWrite(key: Self.key($0), value: [], diff: initial)
            }
            return rows.isEmpty ? nil : ShardWrites(shard: .name(shardName(shard)), rows: rows)
        }
    }

    /// A transfer as one commit: `-amount` on `from`, `+amount` on `to`.
    public func writes(_ transfer: Transfer) -> [ShardWrites] {
        let debit = RowWrite(key: Self.key(transfer.from), value: [], diff: -transfer.amount)
        let credit = RowWrite(key: Self.key(transfer.to), value: [], diff: transfer.amount)
        let a = shard(of: transfer.from)
        let b = shard(of: transfer.to)
        if a == b { return [ShardWrites(shard: .name(shardName(a)), rows: [debit, credit])] }
        return [
            ShardWrites(shard: .name(shardName(a)), rows: [debit]),
            ShardWrites(shard: .name(shardName(b)), rows: [credit]),
        ]
    }
}
