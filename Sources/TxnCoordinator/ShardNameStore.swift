import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// The durable shard-name table of one txns shard, kept in consensus under
/// `txn-coordinator/<txns shard>/names` and changed only by compare-and-set, so any
/// number of coordinators may share it. Caches the newest version it has seen.
final class ShardNameStore: Sendable {
    let consensus: any Consensus
    let key: String
    private let cached = Mutex<(table: ShardNameTable, seqno: SeqNo?)>((ShardNameTable(), nil))

    init(consensus: any Consensus, txnsShard: ShardID) {
        self.consensus = consensus
        self.key = Self.key(txnsShard: txnsShard)
    }

    /// The consensus key of the name table for `txnsShard`.
    static func key(txnsShard: ShardID) -> String { "txn-coordinator/\(txnsShard)/names" }

    /// The newest table this process has seen (no I/O).
    var table: ShardNameTable { cached.withLock { $0.table } }

    /// Reads the current table from consensus.
    @discardableResult
    func refresh() async throws(CoordinatorError) -> ShardNameTable {
        let head: VersionedData?
        do {
            head = try await consensus.head(key)
        } catch {
            throw CoordinatorError.from(error, during: "reading the shard name table")
        }
        return try remember(head)
    }

    /// Decodes `head` and keeps it unless a newer version is already cached.
    private func remember(_ head: VersionedData?) throws(CoordinatorError) -> ShardNameTable {
        guard let head else { return table }
        let decoded: ShardNameTable
        do {
            decoded = try ShardNameTable.decode(head.data)
        } catch {
            throw CoordinatorError(.storage, "the shard name table at \(key) \(head.seqno) is corrupt: \(error)")
        }
        return cached.withLock { c in
            if let s = c.seqno, s > head.seqno { return c.table }
            c = (decoded, head.seqno)
            return decoded
        }
    }

    /// The id and name a reference stands for, reading the table again before saying
    /// that it names no shard (another coordinator may have created it).
    func resolve(_ ref: ShardRef) async throws(CoordinatorError) -> (id: ShardID, name: String) {
        if let found = Self.lookup(ref, in: table) { return found }
        if case .name(let n) = ref, !CoordinatorRPC.isValidShardName(n) {
            throw CoordinatorError(.badRequest, "\"\(n.prefix(64))\" is not a valid shard name")
        }
        if let found = Self.lookup(ref, in: try await refresh()) { return found }
        switch ref {
        case .name(let n): throw CoordinatorError(.unknownShard, "no shard is named \"\(n)\"")
        case .id(let id): throw CoordinatorError(.unknownShard, "no shard has the id \(id)")
        }
    }

    static func lookup(_ ref: ShardRef, in table: ShardNameTable) -> (id: ShardID, name: String)? {
        switch ref {
        case .name(let n): return table.id(named: n).map { ($0, n) }
        case .id(let id): return table.name(of: id).map { (id, $0) }
        }
    }

    /// Returns the shard named `name`, creating it (a fresh random id) if there is none.
    /// Idempotent by name; `created` says whether this call added it.
    func create(name: String) async throws(CoordinatorError) -> (id: ShardID, created: Bool) {
        guard CoordinatorRPC.isValidShardName(name) else {
            throw CoordinatorError(.badRequest, "\"\(name.prefix(64))\" is not a valid shard name")
        }
        if let id = table.id(named: name) { return (id, false) }
        var current: VersionedData?
        do {
            current = try await consensus.head(key)
        } catch {
            throw CoordinatorError.from(error, during: "reading the shard name table")
        }
        while true {
            let table = try remember(current)
            if let id = table.id(named: name) { return (id, false) }
            var next = table
            let id = ShardID.random()
            guard case .inserted = next.insert(name: name, id: id) else { continue }
            let seqno: SeqNo? = if let current { current.seqno.next } else { SeqNo.minimum }
            guard let seqno else { throw CoordinatorError(.storage, "the shard name table at \(key) has no seqnos left") }
            let proposed = VersionedData(seqno: seqno, data: next.encode())
            let outcome: CaSResult
            do {
                outcome = try await consensus.compareAndSet(key, expected: current?.seqno, new: proposed)
            } catch let e where !e.isDeterminate {
                // The write may have happened: find out by reading, then decide again.
                do {
                    current = try await consensus.head(key)
                } catch {
                    throw CoordinatorError.from(error, during: "reading the shard name table")
                }
                continue
            } catch {
                throw CoordinatorError.from(error, during: "updating the shard name table")
            }
            switch outcome {
            case .committed:
                _ = try remember(proposed)
                // Older versions are never read again; failing to drop them is harmless.
                _ = try? await consensus.truncate(key, seqno: seqno)
                return (id, true)
            case .expectationMismatch(let head):
                current = head
            }
        }
    }
}
