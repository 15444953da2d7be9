import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// One part of a snapshot or listen step: a blob to fetch and the rules to read it by.
public struct LeasedPart: Hashable, Sendable {
    public var part: HollowBatchPart
    /// The description of the batch the part belongs to, as registered in the trace.
    public var batch: BatchDescription
    public var filter: FetchFilter
    /// The state seqno the part was handed out at; GC keeps it readable while the reader
    /// holds that seqno.
    public var seqno: SeqNo
}

/// What a listen yields: updates (unordered, unconsolidated, each at a time `t` with
/// previous progress <= t < next progress), then the new progress frontier.
public enum ListenEvent: Hashable, Sendable {
    case updates([Update])
    case progress(Antichain)
}

/// A leased reader of one shard (spec/persist.md §5.1): a since capability and a seqno
/// hold, kept alive by a background heartbeat every half lease, lost if heartbeats stop
/// for a whole lease.
public final class ReadHandle: Sendable {
    public let readerID: LeasedReaderID
    let client: PersistClient
    let machine: ShardMachine
    private struct Local {
        var since: Antichain
        /// Seqnos of parts handed out and not yet released, with counts.
        var leases: [SeqNo: Int] = [:]
        var expired = false
        var lastDowngradeMs: UInt64?
    }
    private let local: Mutex<Local>
    private let heartbeat: Mutex<Task<Void, Never>?> = Mutex(nil)

    init(client: PersistClient, machine: ShardMachine, id: LeasedReaderID, state: LeasedReaderState) {
        self.readerID = id
        self.client = client
        self.machine = machine
        self.local = Mutex(Local(since: state.since))
        startHeartbeat()
    }

    public var shard: ShardID { machine.shard }

    /// This reader's since.
    public var since: Antichain { local.withLock { $0.since } }

    private func startHeartbeat() {
        let interval = Duration.milliseconds(Int64(client.config.readerLeaseMilliseconds / 2))
        let task = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                guard (try? await self.heartbeatNow()) == true else { return }
            }
        }
        heartbeat.withLock { $0 = task }
    }

    /// Extends the lease now. Returns false if the reader had already expired.
    @discardableResult
    public func heartbeatNow() async throws -> Bool {
        let id = readerID
        let now = machine.clock.nowMilliseconds()
        let applied = try await machine.applyIdempotent { s in s.heartbeatLeasedReader(id, nowMs: now) }
        client.maintenance.run(applied.maintenance, machine: machine)
        if !applied.result { local.withLock { $0.expired = true } }
        return applied.result
    }

    /// Moves this reader's since to `newSince` (never back), releasing what it held
    /// before; the shard's since follows the meet of all readers.
    public func downgradeSince(_ newSince: Antichain) async throws {
        let id = readerID
        let now = machine.clock.nowMilliseconds()
        let held = local.withLock { $0.leases.keys.min() } ?? machine.current.seqno
        let applied = try await machine.applyIdempotent { s in
            s.downgradeSince(id, to: newSince, outstandingSeqno: held, nowMs: now)
        }
        client.maintenance.run(applied.maintenance, machine: machine)
        guard let since = applied.result else {
            local.withLock { $0.expired = true }
            throw ReadError.leaseExpired
        }
        local.withLock { $0.since = since }
    }

    /// `downgradeSince`, at most once per `readerDowngradeIntervalMilliseconds` (by the
    /// client's clock); calls in between are skipped.
    public func maybeDowngradeSince(_ newSince: Antichain) async throws {
        let now = machine.clock.nowMilliseconds()
        let interval = client.config.readerDowngradeIntervalMilliseconds
        let due = local.withLock { l -> Bool in
            guard l.lastDowngradeMs.map({ now >= $0 &+ interval }) ?? true else { return false }
            l.lastDowngradeMs = now
            return true
        }
        if due { try await downgradeSince(newSince) }
    }

    /// Waits until the shard's upper is beyond `t`, polling consensus.
    func waitForUpper(beyond t: Timestamp) async throws -> ShardState {
        var s = machine.current
        while !Self.isBeyond(s.upper, t) {
            try await Task.sleep(for: client.config.pollInterval)
            s = try await machine.refresh()
        }
        return s
    }

    static func isBeyond(_ upper: Antichain, _ t: Timestamp) -> Bool {
        upper.element.map { t < $0 } ?? true
    }

    func checkReadable(asOf: Timestamp, state s: ShardState) throws {
        if local.withLock({ $0.expired }) { throw ReadError.leaseExpired }
        guard s.since.lessEqual(asOf) else { throw ReadError.sinceAdvanced(asOf: asOf, since: s.since) }
        let mine = since
        guard mine.lessEqual(asOf) else { throw ReadError.sinceAdvanced(asOf: asOf, since: mine) }
    }

    /// The parts that make up the shard's contents as of `asOf`. Requires
    /// `since <= asOf` (else `ReadError.sinceAdvanced`) and waits while `asOf >= upper`.
    /// Each part holds a seqno lease until `release` is called for it. With
    /// `forwardTimes` false, fetched updates keep their own times (see
    /// `FetchFilter.history`) instead of all reading as `asOf`.
    public func snapshot(asOf: Timestamp, forwardTimes: Bool = true) async throws -> [LeasedPart] {
        try checkReadable(asOf: asOf, state: machine.current)
        let s = try await waitForUpper(beyond: asOf)
        try checkReadable(asOf: asOf, state: s)
        lease(s.seqno)
        return s.trace.batches.filter { $0.desc.lower.lessEqual(asOf) }.flatMap { b in
            b.parts.map {
                LeasedPart(
                    part: $0, batch: b.desc, filter: forwardTimes ? .snapshot(asOf: asOf) : .history(asOf: asOf),
                    seqno: s.seqno)
            }
        }
    }

    /// The shard's consolidated contents as of `asOf`, every time advanced to `asOf`; or,
    /// with `forwardTimes` false, every update at or before `asOf` with its own time
    /// (consolidated per key, value and time).
    public func snapshotAndFetch(asOf: Timestamp, forwardTimes: Bool = true) async throws -> [Update] {
        let parts = try await snapshot(asOf: asOf, forwardTimes: forwardTimes)
        let seqno = parts.first?.seqno
        defer { if let seqno { release(seqno) } }
        var out: [Update] = []
        for p in parts { out += try await fetch(p) }
        Consolidation.consolidate(&out)
        return out
    }

    /// Fetches one leased part's updates.
    public func fetch(_ part: LeasedPart) async throws -> [Update] {
        try await BatchParts.fetch(
            blob: client.blob, shard: shard, part: part.part, batch: part.batch, filter: part.filter, config: client.config)
    }

    func lease(_ seqno: SeqNo) { local.withLock { $0.leases[seqno, default: 0] += 1 } }

    /// Releases the seqno lease taken by `snapshot` (or a listen step).
    public func release(_ seqno: SeqNo) {
        local.withLock { l in
            guard let n = l.leases[seqno] else { return }
            l.leases[seqno] = n > 1 ? n - 1 : nil
        }
    }

    /// Streams every update with a time beyond `asOf`, in steps of whole batches, with
    /// progress after each step. Requires `since <= asOf`; downgrades this reader's since
    /// to `asOf` first.
    public func listen(asOf: Timestamp) async throws -> Listen {
        try checkReadable(asOf: asOf, state: machine.current)
        try await downgradeSince(Antichain(asOf))
        return Listen(reader: self, asOf: asOf)
    }

    /// `snapshotAndFetch(asOf)` followed by `listen(asOf)`: the whole history from `asOf`.
    public func subscribe(asOf: Timestamp) async throws -> (snapshot: [Update], listen: Listen) {
        let snap = try await snapshotAndFetch(asOf: asOf)
        return (snap, try await listen(asOf: asOf))
    }

    /// Removes this reader from the shard and stops its heartbeat.
    public func expire() async throws {
        heartbeat.withLock { $0?.cancel() }
        let id = readerID
        let applied = try await machine.applyIdempotent { s in s.expireLeasedReader(id) }
        client.maintenance.run(applied.maintenance, machine: machine)
        local.withLock { $0.expired = true }
    }

    deinit {
        heartbeat.withLock { $0?.cancel() }
    }
}

/// The updates of a shard after some time, batch by batch (spec/persist.md §5.4).
public struct Listen: AsyncSequence, Sendable {
    public typealias Element = ListenEvent
    let reader: ReadHandle
    let asOf: Timestamp

    public func makeAsyncIterator() -> Iterator { Iterator(reader: reader, asOf: asOf, frontier: Antichain(asOf)) }

    public struct Iterator: AsyncIteratorProtocol {
        let reader: ReadHandle
        let asOf: Timestamp
        /// Everything before this has been emitted.
        public private(set) var frontier: Antichain
        var pendingProgress: Antichain?

        /// The next event; nil once the shard is closed and everything was emitted.
        public mutating func next() async throws -> ListenEvent? {
            if let p = pendingProgress {
                pendingProgress = nil
                return .progress(p)
            }
            guard let f = frontier.element else { return nil }
            // A batch that contains the frontier.
            var s = reader.machine.current
            while true {
                if let b = s.trace.batches.first(where: { $0.desc.lower.lessEqual(f) && ReadHandle.isBeyond($0.desc.upper, f) }) {
                    reader.lease(s.seqno)
                    defer { reader.release(s.seqno) }
                    var updates: [Update] = []
                    for part in b.parts {
                        updates += try await reader.fetch(
                            LeasedPart(part: part, batch: b.desc, filter: .listen(asOf: asOf, lower: frontier), seqno: s.seqno))
                    }
                    // Times before the old frontier are no longer needed apart. The
                    // downgrade is a state transition, so it is rate-limited: a busy
                    // listener must not add a CaS to every step of the shard.
                    let previous = frontier
                    frontier = b.desc.upper
                    try await reader.maybeDowngradeSince(previous)
                    pendingProgress = frontier
                    return .updates(updates)
                }
                try await Task.sleep(for: reader.client.config.pollInterval)
                s = try await reader.machine.refresh()
            }
        }
    }
}
