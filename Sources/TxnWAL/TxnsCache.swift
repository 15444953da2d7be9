import PersistClient
import PersistCodec
import PersistCore

/// The txns cache (spec/txn-wal.md §2.5): `TxnsCacheState` kept up to date by a persist
/// subscription on the txns shard, from that shard's since on.
///
/// Not thread-safe: one task owns a cache (a `TxnsHandle` owns its own).
public final class TxnsCache {
    public private(set) var state: TxnsCacheState
    let reader: ReadHandle
    private var listen: Listen.Iterator
    private var buffer: [(entry: TxnsEntry, time: Timestamp, diff: Int64)] = []
    /// The register and forget updates the cache has taken in and nobody has collected
    /// yet (see `takeRegistrationUpdates`); nil when the cache was opened without keeping them.
    private var registrationUpdates: [(entry: TxnsEntry, diff: Int64)]?

    private init(state: TxnsCacheState, reader: ReadHandle, listen: Listen.Iterator, keepRegistrationUpdates: Bool) {
        self.state = state
        self.reader = reader
        self.listen = listen
        self.registrationUpdates = keepRegistrationUpdates ? [] : nil
    }

    /// Opens a cache of the txns shard `txnsID`, following every data shard or only
    /// `onlyDataID`. It starts at the txns shard's since (the critical since when one
    /// exists) and waits until the shard is readable there.
    ///
    /// With `keepRegistrationUpdates`, every register and forget update the cache takes in
    /// (the snapshot's included) is also kept for `takeRegistrationUpdates`, so an owner
    /// can follow registration times without reading the txns shard a second time.
    public static func open(
        client: PersistClient, txnsID: ShardID, onlyDataID: ShardID? = nil, keepRegistrationUpdates: Bool = false
    ) async throws -> TxnsCache {
        let reader = try await client.openLeasedReader(shard: txnsID, purpose: "txns cache", useCriticalSince: true)
        guard let initTs = reader.since.element else {
            throw TxnsInvariantViolation(description: "the txns shard \(txnsID) has a closed since")
        }
        var state = TxnsCacheState(txnsID: txnsID, initTs: initTs, onlyDataID: onlyDataID)
        let (snapshot, listen) = try await reader.subscribe(asOf: initTs)
        let entries = try decode(snapshot, only: onlyDataID)
        try state.pushEntries(entries, progress: initTs + 1)
        let cache = TxnsCache(
            state: state, reader: reader, listen: listen.makeAsyncIterator(), keepRegistrationUpdates: keepRegistrationUpdates)
        cache.keepRegistrations(of: entries)
        return cache
    }

    static func decode(_ updates: [Update], only: ShardID?) throws -> [(entry: TxnsEntry, time: Timestamp, diff: Int64)] {
        var out: [(TxnsEntry, Timestamp, Int64)] = []
        out.reserveCapacity(updates.count)
        let onlyKey = only.map { Array($0.description.utf8) }
        for u in updates {
            if let onlyKey, u.key != onlyKey { continue }
            // Consolidated reads may carry a multiplicity; every txn-wal diff is +-1.
            let entry = try TxnsEntry.decode(key: u.key, value: u.value)
            if u.diff == 0 { continue }
            let unit: Int64 = u.diff > 0 ? 1 : -1
            for _ in 0..<abs(u.diff) { out.append((entry, u.time, unit)) }
        }
        return out
    }

    /// The exclusive progress: the cache knows every txns update below it.
    public var progress: Timestamp { state.progressExclusive }

    /// Waits until the cache knows everything up to and including `ts`; returns progress.
    @discardableResult
    public func updateGt(_ ts: Timestamp) async throws -> Timestamp {
        while state.progressExclusive <= ts { try await pump() }
        return state.progressExclusive
    }

    /// Waits until the cache knows everything before `ts`; returns progress.
    @discardableResult
    public func updateGe(_ ts: Timestamp) async throws -> Timestamp {
        while state.progressExclusive < ts { try await pump() }
        return state.progressExclusive
    }

    private func pump() async throws {
        guard let event = try await listen.next() else {
            throw TxnsInvariantViolation(description: "the txns shard was closed")
        }
        switch event {
        case .updates(let updates):
            buffer += try Self.decode(updates, only: state.onlyDataID)
        case .progress(let frontier):
            guard let p = frontier.element else {
                throw TxnsInvariantViolation(description: "the txns shard was closed")
            }
            let entries = buffer
            buffer.removeAll()
            try state.pushEntries(entries, progress: p)
            keepRegistrations(of: entries)
        }
    }

    private func keepRegistrations(of entries: [(entry: TxnsEntry, time: Timestamp, diff: Int64)]) {
        guard registrationUpdates != nil else { return }
        for e in entries {
            if case .register = e.entry { registrationUpdates?.append((e.entry, e.diff)) }
        }
    }

    /// The register (+1) and forget (-1) updates taken in since the last call, in the
    /// order they arrived; every one below `progress` has arrived. Empty when the cache
    /// was opened without `keepRegistrationUpdates`.
    public func takeRegistrationUpdates() -> [(entry: TxnsEntry, diff: Int64)] {
        guard let taken = registrationUpdates, !taken.isEmpty else { return [] }
        registrationUpdates = []
        return taken
    }

    /// Applies to the state directly (for handles that just performed the work).
    func markRegisterApplied(_ ts: Timestamp) { state.markRegisterApplied(ts) }

    /// Releases the cache's reader on the txns shard.
    public func expire() async throws { try await reader.expire() }
}
