import Logging
import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// Runs the background work committed transitions hand out: rollups, garbage collection
/// and compaction (spec/persist.md §6). All of it is best effort: correctness never
/// depends on it, and later transitions hand it out again.
final class MaintenanceRunner: Sendable {
    let blob: any Blob
    let config: PersistConfig
    let logger: Logger
    private struct Tracking {
        var running = 0
        var idleWaiters: [CheckedContinuation<Void, Never>] = []
        /// Compactions in flight per shard, by the time range they merge: a request that
        /// overlaps one of them is skipped (later appends hand out a fresh one), so this
        /// process never merges the same batches twice at once.
        var compacting: [ShardID: [BatchDescription]] = [:]
        /// GC in flight per shard: requests arriving meanwhile are dropped (the next
        /// transition hands GC out again).
        var collecting: Set<ShardID> = []
        /// Rollup writes in flight per shard.
        var rollingUp: Set<ShardID> = []
    }
    private let tracking = Mutex(Tracking())

    init(blob: any Blob, config: PersistConfig, logger: Logger) {
        self.blob = blob
        self.config = config
        self.logger = logger
    }

    func run(_ m: RoutineMaintenance, machine: ShardMachine) {
        if let state = m.rollupOf {
            // One rollup at a time per shard: while one is being written, later
            // transitions that find a rollup due leave it to the next hand-out.
            let start = tracking.withLock { $0.rollingUp.insert(machine.shard).inserted }
            if start {
                spawn {
                    defer { self.tracking.withLock { _ = $0.rollingUp.remove(machine.shard) } }
                    try await self.writeRollup(of: state, machine: machine)
                }
            }
        }
        if let gc = m.gc {
            let start = tracking.withLock { $0.collecting.insert(machine.shard).inserted }
            if start {
                spawn {
                    defer { self.tracking.withLock { _ = $0.collecting.remove(machine.shard) } }
                    try await GarbageCollector(machine: machine, blob: self.blob, config: self.config).collect(gc)
                }
            }
        }
    }

    func compact(_ requests: [MergeRequest], machine: ShardMachine) {
        guard config.compactionEnabled else { return }
        let shard = machine.shard
        for req in requests where Compactor.worthIt(req, config: config) {
            let start = tracking.withLock { t -> Bool in
                let busy = t.compacting[shard, default: []]
                guard !busy.contains(where: { Self.overlap($0, req.desc) }) else { return false }
                t.compacting[shard, default: []].append(req.desc)
                return true
            }
            guard start else { continue }
            spawn {
                defer {
                    self.tracking.withLock { t in
                        t.compacting[shard]?.removeAll { $0 == req.desc }
                        if t.compacting[shard]?.isEmpty == true { t.compacting[shard] = nil }
                    }
                }
                do {
                    try await Compactor(machine: machine, blob: self.blob, config: self.config, runner: self).compact(req)
                } catch ReadError.missingBlob(let key) {
                    // The request was computed from a state whose batches have since been
                    // merged (and their parts collected): it is stale.
                    self.logger.debug("compaction inputs already collected", metadata: ["key": "\(key)"])
                    _ = try? await machine.refresh()
                }
                // Whatever became of this request, requests skipped while it ran (they
                // overlapped it) must not be lost: hand out what the current state needs.
                self.compactFollowUp(machine: machine, after: req.desc)
            }
        }
    }

    /// Hands out the merge requests of the shard's current trace, once `finished` is no
    /// longer counted as in flight.
    private func compactFollowUp(machine: ShardMachine, after finished: BatchDescription) {
        tracking.withLock { t in
            t.compacting[machine.shard]?.removeAll { $0 == finished }
            if t.compacting[machine.shard]?.isEmpty == true { t.compacting[machine.shard] = nil }
        }
        compact(machine.current.trace.mergeRequests(fanout: config.compactionMinInputs), machine: machine)
    }

    /// Whether two half-open time ranges intersect (an empty upper is unbounded).
    static func overlap(_ a: BatchDescription, _ b: BatchDescription) -> Bool {
        func before(_ x: Antichain, _ y: Antichain) -> Bool { !y.lessEqual(x) }  // x < y as frontiers
        return before(a.lower, b.upper) && before(b.lower, a.upper)
    }

    private func spawn(_ work: @escaping @Sendable () async throws -> Void) {
        tracking.withLock { $0.running += 1 }
        Task {
            do {
                try await work()
            } catch is CancellationError {
            } catch {
                logger.warning("maintenance failed; it will be handed out again", metadata: ["error": "\(error)"])
            }
            let waiters = tracking.withLock { t -> [CheckedContinuation<Void, Never>] in
                t.running -= 1
                guard t.running == 0 else { return [] }
                defer { t.idleWaiters.removeAll() }
                return t.idleWaiters
            }
            for w in waiters { w.resume() }
        }
    }

    func waitForIdle() async {
        while true {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let done = tracking.withLock { t -> Bool in
                    if t.running == 0 { return true }
                    t.idleWaiters.append(c)
                    return false
                }
                if done { c.resume() }
            }
            // Work finished may have started more work (a compaction's commit can hand
            // out a rollup); wait until nothing runs at all.
            if tracking.withLock({ $0.running == 0 }) { return }
        }
    }

    /// Writes a rollup of `state` and links it; deletes the blob if another rollup for
    /// the same seqno won. If the shard moved a whole threshold on meanwhile, rolls up
    /// again, so that when maintenance goes idle no more than a threshold of diffs
    /// follows the latest rollup.
    func writeRollup(of state: ShardState, machine: ShardMachine) async throws {
        var target = state
        while true {
            try await writeOneRollup(of: target, machine: machine)
            let now = machine.current
            guard now.rollupDue(threshold: config.rollupThreshold) != nil, now.seqno > target.seqno else { return }
            target = now
        }
    }

    private func writeOneRollup(of state: ShardState, machine: ShardMachine) async throws {
        let rollup = try await machine.versions.writeRollup(of: state)
        let seqno = state.seqno
        let applied = try await machine.applyIdempotent { s in s.addRollup(at: seqno, rollup) }
        if !applied.result {
            let key = machine.versions.blobKey(rollup.key)
            _ = try? await Retry.external("blob delete", config: config, { () async throws(StorageError) in
                try await blob.delete(key)
            })
        }
        run(applied.maintenance, machine: machine)
    }
}
