import PersistCodec
import PersistCore
import PersistLocation

extension PersistClient {
    /// Runs a shard's maintenance now instead of waiting for transitions to hand it out:
    /// writes a rollup of the current state if any diffs follow the latest one, then
    /// garbage-collects up to the current seqno_since, and waits for both.
    public func maintain(shard: ShardID, keyCodec: String = "bytes", valueCodec: String = "bytes") async throws {
        let m = try await machine(for: shard, keyCodec: keyCodec, valueCodec: valueCodec)
        var s = try await m.refresh()
        if let latest = s.latestRollup?.seqno, latest < s.seqno {
            try await maintenance.writeRollup(of: s, machine: m)
            s = try await m.refresh()
        }
        await maintenance.waitForIdle()
        try await GarbageCollector(machine: m, blob: blob, config: config).collect(GCRequest(newSeqnoSince: s.seqnoSince))
    }

    /// Deletes batch parts under the shard that no live state references and that were
    /// already unreferenced `graceMilliseconds` ago by this process's reckoning.
    ///
    /// Parts become unreferenced garbage when a writer crashes between uploading and
    /// linking, or abandons a batch. A part being uploaded right now is unreferenced too,
    /// so deletion waits out a grace period between the first sighting and the delete:
    /// call this periodically with a grace longer than any write (or handoff of a
    /// transmittable batch) takes. With a grace of 0 the caller asserts that no batch of
    /// this shard is in flight. Returns the keys deleted.
    @discardableResult
    public func collectLeakedBlobs(
        shard: ShardID, graceMilliseconds: UInt64, keyCodec: String = "bytes", valueCodec: String = "bytes"
    ) async throws -> [String] {
        let m = try await machine(for: shard, keyCodec: keyCodec, valueCodec: valueCodec)
        let now = clock.nowMilliseconds()
        let prefix = "\(shard)/p/"
        let listed = try await Retry.external("blob list", config: config, { () async throws(StorageError) in
            try await blob.list(prefix: prefix)
        })
        let referenced = try await referencedPartKeys(m)
        var doomed: [String] = []
        leakCandidates.withLock { candidates in
            var seen: [String: UInt64] = [:]
            for meta in listed {
                let relative = String(meta.key.dropFirst("\(shard)/".count))
                guard !referenced.contains(relative) else { continue }
                let first = candidates[meta.key] ?? now
                seen[meta.key] = first
                if now >= first &+ graceMilliseconds { doomed.append(meta.key) }
            }
            // Forget candidates that were linked or deleted meanwhile.
            candidates = candidates.filter { !$0.key.hasPrefix(prefix) }.merging(seen) { a, _ in a }
            for k in doomed { candidates[k] = nil }
        }
        for key in doomed {
            _ = try await Retry.external("blob delete", config: config, { () async throws(StorageError) in
                try await blob.delete(key)
            })
        }
        return doomed
    }

    /// Every part key referenced by any live state version (from the earliest retained
    /// diff to the head), so parts a reader may still fetch are never called leaked.
    func referencedPartKeys(_ m: ShardMachine) async throws -> Set<String> {
        let current = try await m.refresh()
        var keys = Set(current.trace.batches.flatMap { $0.parts.map(\.key) })
        let key = m.versions.consensusKey
        let consensus = m.versions.consensus
        let diffs = try await Retry.external("consensus scan", config: config, { () async throws(StorageError) in
            try await consensus.scan(key, from: .minimum, limit: Int(Int64.max))
        })
        // Parts removed by a live diff were referenced by the live state before it.
        for v in diffs {
            let d = try m.versions.decodeDiff(v)
            for b in d.deletedBatches { for p in b.parts { keys.insert(p.key) } }
            for b in d.insertedBatches { for p in b.parts { keys.insert(p.key) } }
        }
        // And everything in the earliest live state: its rollup is recorded in state.
        if let earliest = diffs.first?.seqno, let rollup = current.rollups[earliest],
            let s = try await m.versions.fetchRollup(rollup.key)
        {
            for b in s.trace.batches { for p in b.parts { keys.insert(p.key) } }
        }
        return keys
    }
}
