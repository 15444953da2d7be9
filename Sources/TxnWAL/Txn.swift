import PersistClient
import PersistCodec
import PersistCore

/// The writes of one transaction to one data shard.
struct TxnWrite {
    /// Raw updates; their time is the commit time.
    var writes: [(key: [UInt8], value: [UInt8], diff: Int64)] = []
    /// Externally built transmittable batches.
    var staged: [[UInt8]] = []
    /// Batches already written by an earlier commit attempt (kept for a retry).
    var batches: [[UInt8]] = []
}

/// An atomic multi-shard transaction (spec/txn-wal.md §2.2): writes buffered locally,
/// committed all at once at one timestamp. A failed `commitAt` leaves the transaction
/// usable: the caller may retry at the returned time, and data already uploaded is reused.
public struct Txn {
    var writes: [ShardID: TxnWrite] = [:]
    /// Retractions to write along with the commit.
    public private(set) var pendingTidy = Tidy()

    public init() {}

    /// Adds an update to `dataID`; its time is assigned at commit.
    public mutating func write(_ dataID: ShardID, key: [UInt8], value: [UInt8] = [], diff: Int64) {
        writes[dataID, default: TxnWrite()].writes.append((key, value, diff))
    }

    /// Adds an externally written batch (transmittable bytes); it is retimed at commit.
    public mutating func writeBatch(_ dataID: ShardID, transmittable: [UInt8]) {
        writes[dataID, default: TxnWrite()].staged.append(transmittable)
    }

    /// Adds `other`'s writes and tidy to this transaction.
    public mutating func merge(_ other: Txn) {
        for (d, w) in other.writes {
            writes[d, default: TxnWrite()].writes += w.writes
            writes[d, default: TxnWrite()].staged += w.staged
            writes[d, default: TxnWrite()].batches += w.batches
        }
        pendingTidy.merge(other.pendingTidy)
    }

    /// Adds retractions to write along with this transaction's commit.
    public mutating func tidy(_ t: Tidy) { pendingTidy.merge(t) }

    /// Removes and returns the transaction's tidy.
    public mutating func takeTidy() -> Tidy {
        defer { pendingTidy = Tidy() }
        return pendingTidy
    }

    /// The shards this transaction writes.
    public var dataIDs: [ShardID] { writes.keys.sorted() }

    /// Commits every write atomically at `commitTs` (spec §3.2), along with the tidy's
    /// still-outstanding retractions. Returns the apply token, or `TimestampClosed` with
    /// the earliest time that may still work (the transaction keeps its writes).
    ///
    /// Every written shard must be registered as of the commit (else `TxnsUsageError`).
    public mutating func commitAt(_ handle: TxnsHandle, _ commitTs: Timestamp) async throws -> Result<TxnApply, TimestampClosed> {
        let start = ContinuousClock.now
        let result = try await commitAtUnmeasured(handle, commitTs)
        handle.metrics.record(.commit, outcome: (try? result.get()) == nil ? "timestamp_closed" : "ok", since: start)
        handle.logger.debug(
            "commit", metadata: ["ts": "\(commitTs)", "data_shards": "\(dataIDs)", "ok": "\((try? result.get()) != nil)"])
        return result
    }

    private mutating func commitAtUnmeasured(_ handle: TxnsHandle, _ commitTs: Timestamp) async throws
        -> Result<TxnApply, TimestampClosed>
    {
        var txnsUpper = handle.txnsWrite.sharedUpper().element ?? 0
        var rng = SystemRandomNumberGenerator()
        while true {
            txnsUpper = try await handle.readCache.updateGe(txnsUpper)
            if commitTs < txnsUpper { return .failure(TimestampClosed(nextUsable: txnsUpper)) }
            var entries: [Update] = []
            var written: [ShardID: [[UInt8]]] = [:]
            var dataBytes = 0
            // Every shard is checked before any batch is uploaded (spec §3.2), so a usage
            // error leaves no written blobs behind.
            for d in writes.keys.sorted() where !handle.readCache.state.registeredAtProgress(d, txnsUpper) {
                throw TxnsUsageError.notRegistered(d, at: txnsUpper)
            }
            // Each shard's new updates become a batch; the shards upload in parallel.
            var handles: [ShardID: WriteHandle] = [:]
            for d in writes.keys.sorted() { handles[d] = try await handle.writeForCommit(d) }
            var built: [ShardID: HollowBatch] = [:]
            try await withThrowingTaskGroup(of: (ShardID, HollowBatch).self) { group in
                for (d, w) in writes where !w.writes.isEmpty {
                    guard let dw = handles[d] else { continue }
                    let rows = w.writes.map { Update(key: $0.key, value: $0.value, time: commitTs, diff: $0.diff) }
                    group.addTask {
                        let builder = dw.builder(lower: .minimum)
                        try await builder.add(contentsOf: rows)
                        return (d, try await builder.finish(upper: Antichain(commitTs + 1)))
                    }
                }
                for try await (d, hollow) in group { built[d] = hollow }
            }
            for d in writes.keys.sorted() {
                guard let dw = handles[d], let w = writes[d] else { continue }
                var raws: [[UInt8]] = []
                var batches: [Batch] = []
                if let hollow = built[d] {
                    batches.append(try dw.batchFromTransmittable(TransmittableBatch(shard: d, batch: hollow, using: &rng).encode()))
                }
                for bytes in w.staged + w.batches { batches.append(try dw.batchFromTransmittable(bytes)) }
                for b in batches {
                    dataBytes += b.hollow?.parts.reduce(0) { $0 + Int($1.encodedSizeBytes) } ?? 0
                    try b.rewriteTimestamps(frontier: commitTs, newUpper: Antichain(commitTs + 1))
                    // A fresh id per attempt: every committed entry's bytes are unique.
                    let raw = try b.intoTransmittable()
                    raws.append(raw)
                    entries.append(Primitives.update(.append(shard: d, ts: commitTs, batch: raw), at: commitTs, diff: 1))
                }
                written[d] = raws
            }
            let isEmpty = entries.isEmpty
            for r in handle.readCache.state.filterRetractions(pendingTidy, expectedTxnsUpper: txnsUpper) {
                entries.append(Primitives.update(.append(shard: r.shard, ts: r.ts, batch: r.raw), at: commitTs, diff: -1))
            }
            if !isEmpty { await Failpoints.hitAsync(.coordinatorAfterBatchPut) }
            switch try await Primitives.smallCaA(handle.txnsWrite, entries, upper: txnsUpper, newUpper: commitTs + 1) {
            case .success:
                if !isEmpty { await Failpoints.hitAsync(.coordinatorAfterTxnsCaS) }
                handle.metrics.committed(batches: written.values.reduce(0) { $0 + $1.count }, bytes: dataBytes)
                return .success(TxnApply(isEmpty: isEmpty, commitTs: commitTs))
            case .failure(let closed):
                handle.metrics.retried(.commit)
                precondition(txnsUpper < closed.nextUsable, "a lost CaA moves the txns upper forward")
                txnsUpper = closed.nextUsable
                // Keep the uploaded (and retimed) batches for the retry; their raw updates
                // are now inside them.
                for (d, raws) in written { writes[d] = TxnWrite(writes: [], staged: [], batches: raws) }
                try await handle.readCache.updateGe(txnsUpper)
            }
        }
    }
}

/// A committed transaction: applying it makes it readable at its commit time.
public struct TxnApply: Hashable, Sendable {
    /// True when the commit wrote no batches (only retractions, or nothing).
    public let isEmpty: Bool
    public let commitTs: Timestamp

    /// Applies the transaction (and everything before it) so reads at `commitTs` see it.
    public func apply(_ handle: TxnsHandle) async throws -> Tidy { try await handle.applyLE(commitTs) }

    /// `apply`, and also moves every registered shard's physical upper beyond `commitTs`.
    public func applyEager(_ handle: TxnsHandle) async throws -> Tidy { try await handle.applyEagerLE(commitTs) }
}

/// A transaction used the txns layer against its contract (a bug in the caller).
public enum TxnsUsageError: Error, Hashable, Sendable, CustomStringConvertible {
    case notRegistered(ShardID, at: Timestamp)

    public var description: String {
        switch self {
        case .notRegistered(let d, let t): return "data shard \(d) is not registered at \(t)"
        }
    }
}
