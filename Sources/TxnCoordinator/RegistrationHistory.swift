import PersistClient
import PersistCodec
import PersistCore
import TxnWAL

/// When each data shard was registered with the txns shard: the register (+1) and forget
/// (-1) entries by their embedded times. Pure; the coordinator's worker feeds it the
/// registration updates its txns cache has already read and decoded
/// (`TxnsCache.takeRegistrationUpdates`), so keeping it costs no extra reads.
///
/// A shard registered at `r` and forgotten at `f` is registered at every `t` with
/// `r <= t <= f` (the forget's own time still belongs to the registration, as in the
/// txn-wal cache).
struct RegistrationHistory: Sendable {
    /// Per shard, `(ts, registers)` ascending by time.
    private var events: [ShardID: [(ts: Timestamp, registers: Bool)]] = [:]

    /// Records one txns-shard update; entries other than registrations are ignored.
    mutating func record(_ entry: TxnsEntry, diff: Int64) {
        guard case .register(let shard, let ts) = entry, diff != 0 else { return }
        var list = events[shard] ?? []
        let event = (ts: ts, registers: diff > 0)
        if list.contains(where: { $0.ts == event.ts && $0.registers == event.registers }) { return }
        let index = list.firstIndex { $0.ts > ts } ?? list.count
        list.insert(event, at: index)
        events[shard] = list
    }

    /// Records a run of txns-shard updates, in any order.
    mutating func record(_ updates: [(entry: TxnsEntry, diff: Int64)]) {
        for u in updates { record(u.entry, diff: u.diff) }
    }

    /// Whether `shard` was registered at `t`.
    func isRegistered(_ shard: ShardID, at t: Timestamp) -> Bool {
        guard let last = events[shard]?.last(where: { $0.ts <= t }) else { return false }
        return last.registers || last.ts == t
    }
}
