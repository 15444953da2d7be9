import PersistClient
import PersistCodec
import PersistCore

// Library-ready: pure, no I/O (PersistCore, PersistCodec, PersistClient).

/// Which blobs a shard's state needs to exist, given how the shard layer writes and
/// collects them.
enum BlobReferences {
    /// A blob the state needs, by its full key (`<shard>/<relative key>`).
    struct Reference: Hashable, Comparable, Sendable {
        enum Kind: String, Sendable {
            case part
            case rollup
        }

        var key: String
        var kind: Kind

        static func < (a: Reference, b: Reference) -> Bool { a.key < b.key }
    }

    /// The blobs `state` needs:
    ///
    /// - every part of every batch in its trace (a reader of the current state fetches
    ///   them; GC only deletes parts no state from the seqno-since on references);
    /// - its latest rollup (the head's diff names it; without it the state cannot be
    ///   read at all);
    /// - every other rollup it records at a seqno at or after `lastGCReq`. GC deletes a
    ///   rollup's blob before it removes the rollup from state, so a recorded rollup may
    ///   be gone, but only below the newest seqno-since a GC was asked to reach, which
    ///   `lastGCReq` records. (The admin `maintain` call is the exception: it runs GC
    ///   without recording it; the crash test does not call it.)
    static func required(by state: ShardState) -> [Reference] {
        let shard = state.shardID
        var refs: Set<Reference> = []
        for batch in state.trace.batches {
            for part in batch.parts {
                refs.insert(Reference(key: BatchParts.blobKey(shard: shard, partKey: part.key), kind: .part))
            }
        }
        let latest = state.rollups.keys.max()
        for (seqno, rollup) in state.rollups where seqno == latest || seqno >= state.lastGCReq {
            refs.insert(Reference(key: "\(shard)/\(rollup.key)", kind: .rollup))
        }
        return refs.sorted()
    }

    /// The references whose keys are not in `existing`, in key order.
    static func missing(_ refs: [Reference], existing: Set<String>) -> [Reference] {
        refs.filter { !existing.contains($0.key) }
    }

    /// Every part key (full) of the batches in `state`'s trace.
    static func partKeys(of state: ShardState) -> Set<String> {
        var keys: Set<String> = []
        for batch in state.trace.batches {
            for part in batch.parts { keys.insert(BatchParts.blobKey(shard: state.shardID, partKey: part.key)) }
        }
        return keys
    }
}
