import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation

/// Merges a run of batches into one (spec/persist.md §6.1): reads every input part with
/// its batch's rules, advances times to the request's since, consolidates, writes the
/// result as new parts, and links it iff exactly the inputs are still in the trace.
/// Otherwise the output's blobs are deleted.
struct Compactor {
    let machine: ShardMachine
    let blob: any Blob
    let config: PersistConfig
    let runner: MaintenanceRunner

    static let writerKey = "compactor"

    /// Whether a request is worth the I/O (the reference's heuristic).
    static func worthIt(_ req: MergeRequest, config: PersistConfig) -> Bool {
        let parts = req.inputs.reduce(0) { $0 + $1.parts.count }
        let updates = req.inputs.reduce(UInt64(0)) { $0 + $1.rowCount }
        return req.inputs.count >= config.compactionMinInputs || parts >= config.compactionMinParts
            || updates >= config.compactionMinUpdates
    }

    /// The codec for the output of `req`: `config.compactionCompression` once the input
    /// parts' stored sizes add up to `config.compactionDenseMinBytes`, else the write
    /// path's `config.compression` (see `PersistConfig` for why).
    static func outputCompression(_ req: MergeRequest, config: PersistConfig) -> Compression {
        var inputBytes: UInt64 = 0
        for input in req.inputs {
            for part in input.parts {
                // Saturates: sizes come from state, and a wrapped sum must not pick the
                // fast codec for a huge merge.
                let (sum, overflow) = inputBytes.addingReportingOverflow(part.encodedSizeBytes)
                inputBytes = overflow ? .max : sum
            }
        }
        let threshold = UInt64(max(0, config.compactionDenseMinBytes))
        return inputBytes >= threshold ? config.compactionCompression : config.compression
    }

    func compact(_ req: MergeRequest) async throws {
        let shard = machine.shard
        var updates: [Update] = []
        for input in req.inputs {
            for part in input.parts {
                updates += try await BatchParts.fetch(
                    blob: blob, shard: shard, part: part, batch: input.desc, filter: .compaction(since: req.desc.since),
                    config: config)
            }
        }
        Consolidation.consolidate(&updates)
        let output = try await write(updates, desc: req.desc, compression: Self.outputCompression(req, config: config))
        let inputs = req.inputs
        let applied = try await machine.applyIdempotent { s in
            // After an indeterminate attempt, "inputs gone, output present" means ours won.
            if s.trace.batches.contains(output) { return .noOp(true) }
            return s.applyMergeResult(inputs: inputs, output: output)
        }
        runner.run(applied.maintenance, machine: machine)
        if !applied.result {
            await BatchBuilder.deleteParts(of: output, shard: shard, blob: blob, config: config)
        }
    }

    /// Writes consolidated `updates` as parts of about the target size. If writing stops
    /// part way (cancellation, a compression error), the parts already written are
    /// deleted again.
    func write(_ updates: [Update], desc: BatchDescription, compression: Compression) async throws -> HollowBatch {
        var parts: [HollowBatchPart] = []
        do {
            return try await writeParts(updates, desc: desc, compression: compression, into: &parts)
        } catch {
            let partial = HollowBatch(desc: desc, rowCount: parts.reduce(0) { $0 + $1.rowCount }, parts: parts)
            await BatchBuilder.deleteParts(of: partial, shard: machine.shard, blob: blob, config: config)
            throw error
        }
    }

    private func writeParts(
        _ updates: [Update], desc: BatchDescription, compression: Compression, into parts: inout [HollowBatchPart]
    ) async throws -> HollowBatch {
        var start = 0
        while start < updates.count {
            var end = start
            var bytes = 0
            while end < updates.count && (bytes < config.blobTargetSizeBytes || end == start) {
                bytes += updates[end].key.count + updates[end].value.count + 18
                end += 1
            }
            let encoded = try BatchParts.encode(Array(updates[start..<end]), compression: compression)
            let key = BatchParts.newPartKey(writerKey: Self.writerKey)
            let full = BatchParts.blobKey(shard: machine.shard, partKey: key)
            let bytesToWrite = encoded.bytes
            try await Retry.external("blob set", config: config, { () async throws(StorageError) in
                try await blob.set(full, bytesToWrite)
            })
            parts.append(encoded.hollow(key: key))
            start = end
        }
        return HollowBatch(desc: desc, rowCount: UInt64(updates.count), parts: parts)
    }
}

/// Deletes blobs no state from the seqno_since on can reach, and truncates consensus
/// below the newest rollup at or before it (spec/persist.md §6.2, the incremental form:
/// every blob a diff removed is unreachable from that diff's state on, since keys are
/// never reused).
struct GarbageCollector {
    let machine: ShardMachine
    let blob: any Blob
    let config: PersistConfig

    func collect(_ req: GCRequest) async throws {
        let state = try await machine.refresh()
        let seqnoSince = min(req.newSeqnoSince, state.seqnoSince)
        let candidates = state.rollups.keys.filter { $0 <= seqnoSince }.sorted()
        guard candidates.count >= 2, let keep = candidates.last else { return }
        let removeRollups = candidates.dropLast().compactMap { s in state.rollups[s].map { (s, $0) } }

        let key = machine.versions.consensusKey
        let consensus = machine.versions.consensus
        let diffs = try await Retry.external("consensus scan", config: config, { () async throws(StorageError) in
            try await consensus.scan(key, from: .minimum, limit: Int(Int64.max))
        })
        var unreachable = Set<String>()
        for v in diffs where v.seqno <= keep {
            let d = try machine.versions.decodeDiff(v)
            for b in d.deletedBatches { for p in b.parts { unreachable.insert(p.key) } }
            for c in d.rollups { if case .delete(_, let r) = c { unreachable.insert(r.key) } }
        }
        for (_, r) in removeRollups { unreachable.insert(r.key) }
        // Never delete anything the kept state still references (a bug guard).
        guard let kept = try await stateAt(keep, diffs: diffs) else { return }
        let live = Set(kept.trace.batches.flatMap { $0.parts.map(\.key) } + [kept.rollups[keep]?.key].compactMap { $0 })
        guard unreachable.isDisjoint(with: live) else {
            // Diffs and the kept state disagree: a bug or corruption. Delete nothing.
            throw ReadError.corrupt("GC of \(machine.shard) found blobs both removed before and referenced at \(keep)")
        }
        try await deleteAll(unreachable.sorted())
        _ = try await Retry.external("consensus truncate", config: config, { () async throws(StorageError) in
            try await consensus.truncate(key, seqno: keep)
        })
        let applied = try await machine.applyIdempotent { s in s.removeRollups(removeRollups) }
        _ = applied
    }

    /// The state at `seqno`, from its rollup.
    func stateAt(_ seqno: SeqNo, diffs: [VersionedData]) async throws -> ShardState? {
        guard let rollup = machine.current.rollups[seqno] else { return nil }
        return try await machine.versions.fetchRollup(rollup.key)
    }

    func deleteAll(_ relativeKeys: [String]) async throws {
        let shard = machine.shard
        var index = 0
        while index < relativeKeys.count {
            let chunk = relativeKeys[index..<min(index + max(1, config.gcDeleteConcurrency), relativeKeys.count)]
            try await withThrowingTaskGroup(of: Void.self) { group in
                for k in chunk {
                    let full = "\(shard)/\(k)"
                    group.addTask {
                        _ = try await Retry.external("blob delete", config: config, { () async throws(StorageError) in
                            try await blob.delete(full)
                        })
                    }
                }
                try await group.waitForAll()
            }
            index += chunk.count
        }
    }
}
