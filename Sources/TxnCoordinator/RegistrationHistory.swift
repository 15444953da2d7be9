import PersistClient
import PersistCodec
import PersistCore
import TxnWAL

/// When each data shard was registered with the txns shard: the register (+1) and forget
/// (-1) entries by their embedded times. Pure; fed from the txns shard's contents.
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

    /// Whether `shard` was registered at `t`.
    func isRegistered(_ shard: ShardID, at t: Timestamp) -> Bool {
        guard let last = events[shard]?.last(where: { $0.ts <= t }) else { return false }
        return last.registers || last.ts == t
    }
}

/// Keeps a `RegistrationHistory` current by following the txns shard with its own
/// leased reader (the txn-wal cache does not expose registration times). Owned by the
/// coordinator's worker; not thread-safe.
final class RegistrationFeed {
    private let reader: ReadHandle
    private var listen: Listen.Iterator
    private var buffer: [(TxnsEntry, Int64)] = []
    private(set) var history = RegistrationHistory()
    /// Every registration before this time is in `history`.
    private(set) var progress: Timestamp

    private init(reader: ReadHandle, listen: Listen.Iterator, progress: Timestamp) {
        self.reader = reader
        self.listen = listen
        self.progress = progress
    }

    /// Starts at the txns shard's since: registration rows are never retracted, so the
    /// snapshot there holds the whole history up to it.
    static func open(client: PersistClient, txnsID: ShardID) async throws -> RegistrationFeed {
        let reader = try await client.openLeasedReader(
            shard: txnsID, purpose: "txn-coordinator registrations", useCriticalSince: true)
        guard let since = reader.since.element else {
            throw CoordinatorError(.storage, "the txns shard \(txnsID) has a closed since")
        }
        let (snapshot, listen) = try await reader.subscribe(asOf: since)
        let feed = RegistrationFeed(reader: reader, listen: listen.makeAsyncIterator(), progress: since + 1)
        for u in snapshot { feed.history.record(try TxnsEntry.decode(key: u.key, value: u.value), diff: u.diff) }
        return feed
    }

    /// Reads the txns shard until everything before `target` is known. `target` must not
    /// pass the txns shard's upper, or this waits for someone to write there.
    func catchUp(to target: Timestamp) async throws {
        while progress < target {
            guard let event = try await listen.next() else {
                throw CoordinatorError(.storage, "the txns shard was closed")
            }
            switch event {
            case .updates(let updates):
                for u in updates { buffer.append((try TxnsEntry.decode(key: u.key, value: u.value), u.diff)) }
            case .progress(let frontier):
                guard let p = frontier.element else { throw CoordinatorError(.storage, "the txns shard was closed") }
                for (entry, diff) in buffer { history.record(entry, diff: diff) }
                buffer.removeAll()
                progress = max(progress, p)
            }
        }
    }

    /// Releases the reader (and the since it holds).
    func expire() async throws { try await reader.expire() }
}
