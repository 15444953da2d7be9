import PersistClient
import PersistCodec
import PersistCore

/// A txns-shard operation asked for a time that is already closed: nothing was written,
/// and `nextUsable` (the txns shard's upper) is the earliest time that may still work.
public struct TimestampClosed: Error, Hashable, Sendable, CustomStringConvertible {
    public let nextUsable: Timestamp

    public var description: String { "timestamp already closed; the earliest usable one is \(nextUsable)" }
}

/// The helpers of spec/txn-wal.md §4.
enum Primitives {
    /// One compare-and-append of a small update list: `[upper, newUpper)`. Returns the
    /// shard's current upper on mismatch. Never retries.
    static func smallCaA(_ write: WriteHandle, _ updates: [Update], upper: Timestamp, newUpper: Timestamp) async throws
        -> Result<Void, TimestampClosed>
    {
        switch try await write.compareAndAppend(updates, expectedUpper: Antichain(upper), newUpper: Antichain(newUpper)) {
        case .success: return .success(())
        case .failure(let m):
            guard let current = m.current.element else {
                throw TxnsInvariantViolation(description: "shard \(write.shard) was closed under txn-wal")
            }
            return .failure(TimestampClosed(nextUsable: current))
        }
    }

    /// Makes sure the shard's upper is beyond `ts` with empty appends. Empty updates never
    /// conflict, so losing a race to anyone who moved the upper past `ts` is success too.
    static func emptyCaA(_ write: WriteHandle, beyond ts: Timestamp) async throws {
        var upper = write.upper
        while true {
            guard let u = upper.element else { return }  // closed: nothing can be written
            if ts < u { return }
            switch try await write.compareAndAppend([], expectedUpper: upper, newUpper: Antichain(ts + 1)) {
            case .success: return
            case .failure(let m): upper = m.current
            }
        }
    }

    /// Links committed batches into their data shard at `commitTs`, idempotently: once the
    /// data shard's upper is beyond `commitTs` they were applied (by anyone), because
    /// every applier works in time order and nothing else writes a registered shard.
    static func applyCaA(_ write: WriteHandle, raws: [[UInt8]], commitTs: Timestamp) async throws {
        var batches: [Batch] = []
        for raw in raws { batches.append(try write.batchFromTransmittable(raw)) }
        var upper = write.upper
        while true {
            guard let u = upper.element, u <= commitTs else { return }
            switch try await write.compareAndAppendBatch(batches, expectedUpper: upper, newUpper: Antichain(commitTs + 1)) {
            case .success: return
            case .failure(let m):
                guard !m.current.isEmpty else { return }
                upper = m.current
            }
        }
    }

    /// The txns-shard update for an entry.
    static func update(_ entry: TxnsEntry, at t: Timestamp, diff: Int64) -> Update {
        Update(key: entry.encodedKey, value: entry.encodedValue, time: t, diff: diff)
    }
}
