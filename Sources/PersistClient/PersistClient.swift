import Logging
import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// The entry point of the shard layer: opens write, read and since handles on shards kept
/// in a `Blob` and a `Consensus`.
///
/// Every handle for the same shard opened through one client shares that shard's cached
/// state (one `ShardMachine` per shard). Any number of clients, in any number of
/// processes, may use the same shards: compare-and-set keeps them correct.
public final class PersistClient: Sendable {
    /// The blob store, behind a memory of the small parts this client wrote or read
    /// (`PersistConfig.partCacheBytes`).
    public let blob: any Blob
    public let consensus: any Consensus
    public let config: PersistConfig
    let clock: any PersistClock
    let hostname: String
    let logger: Logger
    let maintenance: MaintenanceRunner
    private let machines = Mutex<[ShardID: ShardMachine]>([:])
    /// Unreferenced part keys and when this process first saw them unreferenced.
    let leakCandidates = Mutex<[String: UInt64]>([:])

    public init(
        blob: any Blob, consensus: any Consensus, config: PersistConfig = PersistConfig(),
        clock: any PersistClock = SystemPersistClock(), hostname: String = "localhost",
        logger: Logger = Logger(label: "swift-txn-wal.persist")
    ) {
        let kept: any Blob =
            config.partCacheBytes > 0
            ? PartCacheBlob(inner: blob, capacityBytes: config.partCacheBytes, maxPartBytes: config.partCacheMaxPartBytes)
            : blob
        self.blob = kept
        self.consensus = consensus
        self.config = config
        self.clock = clock
        self.hostname = hostname
        self.logger = logger
        self.maintenance = MaintenanceRunner(blob: kept, config: config, logger: logger)
    }

    /// The shared machine of `shard`, initializing the shard if it has no state yet, and
    /// checking that it was created with the same codecs.
    func machine(for shard: ShardID, keyCodec: String, valueCodec: String) async throws -> ShardMachine {
        let existing = machines.withLock { $0[shard] }
        let m: ShardMachine
        if let existing {
            m = existing
        } else {
            let versions = StateVersions(shard: shard, blob: blob, consensus: consensus, config: config)
            let state = try await versions.initialize(
                keyCodec: keyCodec, valueCodec: valueCodec, hostname: hostname, nowMs: clock.nowMilliseconds())
            let fresh = ShardMachine(versions: versions, initial: state, clock: clock, config: config, hostname: hostname, logger: logger)
            m = machines.withLock { map in
                if let raced = map[shard] { return raced }
                map[shard] = fresh
                return fresh
            }
        }
        let s = m.current
        guard s.keyCodec == keyCodec else { throw InvalidUsage.codecMismatch(expected: s.keyCodec, actual: keyCodec) }
        guard s.valueCodec == valueCodec else { throw InvalidUsage.codecMismatch(expected: s.valueCodec, actual: valueCodec) }
        return m
    }

    /// Opens a writer. Registering it costs no CaS: its first append registers it.
    public func openWriter(
        shard: ShardID, purpose: String, keyCodec: String = "bytes", valueCodec: String = "bytes"
    ) async throws -> WriteHandle {
        let m = try await machine(for: shard, keyCodec: keyCodec, valueCodec: valueCodec)
        return WriteHandle(client: self, machine: m, purpose: purpose)
    }

    /// Opens a leased reader holding the shard's since (or, with `useCriticalSince`, the
    /// critical readers' since) and a seqno hold, kept alive by a background heartbeat.
    public func openLeasedReader(
        shard: ShardID, purpose: String, useCriticalSince: Bool = false, keyCodec: String = "bytes",
        valueCodec: String = "bytes"
    ) async throws -> ReadHandle {
        let m = try await machine(for: shard, keyCodec: keyCodec, valueCodec: valueCodec)
        let id = LeasedReaderID.random()
        let now = clock.nowMilliseconds()
        let lease = config.readerLeaseMilliseconds
        let applied = try await m.applyIdempotent { s in
            s.registerLeasedReader(id, nowMs: now, leaseMs: lease, purpose: purpose, useCriticalSince: useCriticalSince)
        }
        maintenance.run(applied.maintenance, machine: m)
        return ReadHandle(client: self, machine: m, id: id, state: applied.result)
    }

    /// Opens (or re-attaches to) the critical reader `id`. Record `id` durably before
    /// calling: a lost critical reader holds the shard's since back forever.
    public func openCriticalSince(
        shard: ShardID, id: CriticalReaderID, purpose: String, initialOpaque: UInt64 = 0, opaqueCodec: String = "u64",
        keyCodec: String = "bytes", valueCodec: String = "bytes"
    ) async throws -> SinceHandle {
        let m = try await machine(for: shard, keyCodec: keyCodec, valueCodec: valueCodec)
        let applied = try await m.applyIdempotent { s in
            s.registerCriticalReader(id, initialOpaque: initialOpaque, opaqueCodec: opaqueCodec, purpose: purpose)
        }
        maintenance.run(applied.maintenance, machine: m)
        return SinceHandle(machine: m, id: id, maintenance: maintenance)
    }

    /// The shard's since and upper as of the newest state this process knows.
    public func frontiers(of shard: ShardID) async throws -> (since: Antichain, upper: Antichain)? {
        guard let m = machines.withLock({ $0[shard] }) else { return nil }
        let s = try await m.refresh()
        return (s.since, s.upper)
    }

    /// Waits until every maintenance task started so far (rollups, GC, compaction) has
    /// finished. For tests and orderly shutdown.
    public func waitForMaintenance() async {
        await maintenance.waitForIdle()
    }
}
