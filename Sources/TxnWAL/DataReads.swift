import PersistClient
import PersistCodec
import PersistCore

/// Reading a data shard at a time through the txns shard (spec/txn-wal.md §1.6, §2.6).
public struct DataSnapshot: Sendable {
    public let plan: DataSnapshotPlan

    public init(_ plan: DataSnapshotPlan) { self.plan = plan }

    /// Makes the data shard readable at `asOf`: waits until the latest possibly unapplied
    /// write is applied (by anyone), then fills `[upper, emptyTo)` with empty appends,
    /// which is safe because that range holds no unapplied txn writes.
    public func unblockRead(_ write: WriteHandle, pollInterval: Duration = .milliseconds(5)) async throws {
        if let w = plan.latestWrite {
            while true {
                let upper = try await write.fetchRecentUpper()
                if upper.element.map({ w < $0 }) ?? true { break }
                try await Task.sleep(for: pollInterval)
            }
        }
        var upper = write.upper
        while let u = upper.element, u < plan.emptyTo {
            if let w = plan.latestWrite { precondition(w < u, "the latest write \(w) was applied") }
            switch try await write.compareAndAppend([], expectedUpper: upper, newUpper: Antichain(plan.emptyTo)) {
            case .success: return
            case .failure(let m): upper = m.current
            }
        }
    }

    /// The data shard's consolidated contents at `asOf`.
    public func snapshotAndFetch(client: PersistClient, reader: ReadHandle) async throws -> [Update] {
        let write = try await client.openWriter(shard: plan.dataID, purpose: "txn-wal unblock read")
        _ = try await write.fetchRecentUpper()
        try await unblockRead(write)
        try await write.expire()
        return try await reader.snapshotAndFetch(asOf: plan.asOf)
    }
}

/// What a `DataSubscribe` yields: data-shard updates (at their real times, each at or
/// after the previous progress) and the data shard's *logical* progress.
public enum DataSubscribeEvent: Hashable, Sendable {
    case updates([Update])
    case progress(Timestamp)
}

/// A subscription to one data shard through the txns shard: its snapshot at `asOf`, then
/// every later update, with progress that follows the shard's logical upper (spec
/// §3.9-§3.10). Internally it keeps a remap `(physical, logical)`: once the physical
/// shard's frontier (`pass`) reaches `physical`, progress may jump to `logical`, because
/// the txns shard says `[physical, logical)` holds nothing. Progress never passes
/// `max(pass, logical of a remap whose physical <= pass)`.
public final class DataSubscribe {
    public let dataID: ShardID
    public let asOf: Timestamp
    /// Updates at or after `until` are not delivered, and progress closes (becomes
    /// `Timestamp.max`) once everything before `until` is known. Nil: never.
    public let until: Timestamp?
    let cache: TxnsCache
    let reader: ReadHandle
    var listen: Listen.Iterator
    private var pending: [DataSubscribeEvent] = []
    /// How far the physical data shard has been read (exclusive).
    private var pass: Timestamp
    private var remap: (physical: Timestamp, logical: Timestamp)
    /// The largest progress queued so far.
    private var emitted: Timestamp
    /// The progress handed out so far (exclusive).
    public private(set) var progress: Timestamp
    /// Every update handed out so far.
    public private(set) var output: [Update] = []

    private init(
        dataID: ShardID, asOf: Timestamp, until: Timestamp?, cache: TxnsCache, reader: ReadHandle, listen: Listen.Iterator,
        emptyTo: Timestamp
    ) {
        self.dataID = dataID
        self.asOf = asOf
        self.until = until
        self.cache = cache
        self.reader = reader
        self.listen = listen
        self.pass = asOf + 1
        self.remap = (emptyTo, emptyTo)
        self.emitted = asOf + 1
        self.progress = asOf
    }

    /// Opens the subscription: a single-shard cache of the txns shard, an unblocked read of
    /// the data shard at `asOf`, and a listen from there. With `until`, the subscription
    /// delivers only updates before `until` and then closes (spec §2.9: the reference's
    /// `DataSubscribe::new(..., as_of, until)`).
    public static func open(
        client: PersistClient, txnsID: ShardID, dataID: ShardID, asOf: Timestamp, until: Timestamp? = nil
    ) async throws -> DataSubscribe {
        let cache = try await TxnsCache.open(client: client, txnsID: txnsID, onlyDataID: dataID)
        try await cache.updateGt(asOf)
        let plan = cache.state.dataSnapshot(dataID, asOf: asOf)
        let write = try await client.openWriter(shard: dataID, purpose: "txn-wal subscribe unblock")
        _ = try await write.fetchRecentUpper()
        try await DataSnapshot(plan).unblockRead(write)
        try await write.expire()
        let reader = try await client.openLeasedReader(shard: dataID, purpose: "txn-wal subscribe")
        let (snapshot, listen) = try await reader.subscribe(asOf: asOf)
        let sub = DataSubscribe(
            dataID: dataID, asOf: asOf, until: until, cache: cache, reader: reader, listen: listen.makeAsyncIterator(),
            emptyTo: plan.emptyTo)
        let visible = sub.beforeUntil(snapshot)
        if !visible.isEmpty { sub.pending.append(.updates(visible)) }
        sub.pending.append(.progress(sub.closingAtUntil(asOf + 1)))
        return sub
    }

    /// The next event.
    public func next() async throws -> DataSubscribeEvent {
        while pending.isEmpty { try await advance() }
        let e = pending.removeFirst()
        switch e {
        case .updates(let u): output += u
        case .progress(let p): progress = Swift.max(progress, p)
        }
        return e
    }

    /// Steps until progress passes `ts`; returns the progress.
    @discardableResult
    public func stepPast(_ ts: Timestamp) async throws -> Timestamp {
        while progress <= ts { _ = try await next() }
        return progress
    }

    private func advance() async throws {
        if pass < remap.physical {
            guard let event = try await listen.next() else {
                throw TxnsInvariantViolation(description: "data shard \(dataID) listen ended")
            }
            switch event {
            case .updates(let u):
                let visible = beforeUntil(u)
                if !visible.isEmpty { pending.append(.updates(visible)) }
            case .progress(let f):
                pass = f.element ?? .max
                queueProgress()
            }
            return
        }
        try await cache.updateGe(remap.logical)
        switch cache.state.dataListenNext(dataID, remap.logical) {
        case .readDataTo(let n):
            remap = (n, n)
            queueProgress()
        case .emitLogicalProgress(let p):
            remap.logical = Swift.max(remap.logical, p)
            queueProgress()
        case .waitForTxnsProgress:
            try await cache.updateGt(remap.logical)
        }
    }

    private func queueProgress() {
        let frontier = closingAtUntil(pass >= remap.physical ? Swift.max(pass, remap.logical) : pass)
        if frontier > emitted {
            emitted = frontier
            pending.append(.progress(frontier))
        }
    }

    /// The updates a subscription with `until` delivers.
    private func beforeUntil(_ updates: [Update]) -> [Update] {
        guard let until else { return updates }
        return updates.filter { $0.time < until }
    }

    /// Progress `frontier`, closed once it reaches `until`: nothing more will be delivered.
    private func closingAtUntil(_ frontier: Timestamp) -> Timestamp {
        guard let until, frontier >= until else { return frontier }
        return .max
    }

    /// Releases the readers.
    public func expire() async throws {
        try await reader.expire()
        try await cache.expire()
    }
}

extension DataSubscribe: AsyncSequence {
    public typealias Element = DataSubscribeEvent

    /// Iterates the subscription's events; ends after progress closes (with `until`).
    public struct AsyncIterator: AsyncIteratorProtocol {
        let subscribe: DataSubscribe
        var finished = false

        public mutating func next() async throws -> DataSubscribeEvent? {
            guard !finished else { return nil }
            let event = try await subscribe.next()
            if case .progress(let p) = event, p == .max { finished = true }
            return event
        }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(subscribe: self) }
}
