import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// Appends to one shard (spec/persist.md §4). Results come in three levels: a thrown
/// `InvalidUsage` is a caller bug; `.failure(UpperMismatch)` is ordinary contention and
/// nothing was written; `.success` means the data is durably part of the shard.
/// Storage failures are retried inside; cancellation ends a call with `CancellationError`.
public final class WriteHandle: Sendable {
    public let writerID: WriterID
    let client: PersistClient
    let machine: ShardMachine
    let purpose: String
    private let cachedUpper: Mutex<Antichain>

    init(client: PersistClient, machine: ShardMachine, purpose: String) {
        self.writerID = WriterID.random()
        self.client = client
        self.machine = machine
        self.purpose = purpose
        self.cachedUpper = Mutex(machine.current.upper)
    }

    public var shard: ShardID { machine.shard }

    /// The upper as of this handle's last write or fetch.
    public var upper: Antichain { cachedUpper.withLock { $0 } }

    /// The upper as of the newest state any handle in this process has seen.
    public func sharedUpper() -> Antichain { machine.current.upper }

    /// The shard's upper, read from consensus (linearized with every write).
    public func fetchRecentUpper() async throws -> Antichain {
        let s = try await machine.refresh()
        cachedUpper.withLock { $0 = s.upper }
        return s.upper
    }

    /// A builder for a batch starting at `lower`. Parts are uploaded as they fill.
    public func builder(lower: Antichain) -> BatchBuilder {
        BatchBuilder(shard: shard, lower: lower, blob: client.blob, writerKey: writerID.description, config: client.config)
    }

    /// Writes `updates` to blob as a batch for `[lower, upper)`, not yet linked.
    public func batch(_ updates: [Update], lower: Antichain, upper: Antichain) async throws -> Batch {
        let hollow = try await BatchBuilder.build(
            updates: updates, shard: shard, lower: lower, upper: upper, blob: client.blob,
            writerKey: writerID.description, config: client.config)
        return Batch(shard: shard, batch: hollow, blob: client.blob, config: client.config)
    }

    /// Reconstitutes a batch from `intoTransmittable` bytes (possibly from another process).
    public func batchFromTransmittable(_ bytes: [UInt8]) throws -> Batch {
        let handle = try TransmittableBatch.decode(bytes)
        guard handle.shard == shard else { throw InvalidUsage.batchNotFromThisShard(batch: handle.shard, shard: shard) }
        return Batch(shard: shard, batch: handle.batch, blob: client.blob, config: client.config)
    }

    /// Appends `updates` at `[expectedUpper, newUpper)` iff the shard's upper is
    /// `expectedUpper`. With no updates it only moves the upper (no blob writes); with
    /// `newUpper == .empty` it closes the shard for writing.
    public func compareAndAppend(_ updates: [Update], expectedUpper: Antichain, newUpper: Antichain) async throws
        -> Result<Void, UpperMismatch>
    {
        let b = try await batch(updates, lower: expectedUpper, upper: newUpper)
        do {
            let r = try await compareAndAppendBatch([b], expectedUpper: expectedUpper, newUpper: newUpper)
            if case .failure = r { await b.delete() }
            return r
        } catch {
            await b.delete()
            throw error
        }
    }

    /// Links `batches` at `[expectedUpper, newUpper)` iff the shard's upper is
    /// `expectedUpper`. Each batch must cover that interval (updates outside it are
    /// ignored by readers). On mismatch the batches stay the caller's.
    public func compareAndAppendBatch(_ batches: [Batch], expectedUpper: Antichain, newUpper: Antichain) async throws
        -> Result<Void, UpperMismatch>
    {
        let append = BatchDescription(lower: expectedUpper, upper: newUpper, since: .minimum)
        guard expectedUpper.lessEqual(newUpper) else { throw InvalidUsage.invalidBounds(lower: expectedUpper, upper: newUpper) }
        var taken: [HollowBatch] = []
        func giveBack() { for (b, h) in zip(batches, taken) { b.restore(h) } }
        do {
            for b in batches {
                guard b.shard == shard else { throw InvalidUsage.batchNotFromThisShard(batch: b.shard, shard: shard) }
                let h = try b.consume()
                taken.append(h)
                try Self.validateCovers(h, append)
            }
        } catch {
            giveBack()
            throw error
        }
        var parts: [HollowBatchPart] = []
        var rows: UInt64 = 0
        for h in taken {
            parts += h.parts
            rows += h.rowCount
        }
        let combined = HollowBatch(desc: append, rowCount: rows, parts: parts)
        while true {
            let (outcome, maintenance) = try await machine.compareAndAppend(combined, writer: writerID, purpose: purpose)
            client.maintenance.run(maintenance, machine: machine)
            switch outcome {
            case .appended(let requests):
                cachedUpper.withLock { $0 = newUpper }
                client.maintenance.compact(requests, machine: machine)
                return .success(())
            case .alreadyCommitted:
                cachedUpper.withLock { $0 = newUpper }
                return .success(())
            case .invalid(let usage):
                giveBack()
                throw usage
            case .upperMismatch:
                // Our cached state may have been stale: refresh and decide on fresh state.
                let fresh = try await machine.refresh()
                if fresh.upper == expectedUpper { continue }
                cachedUpper.withLock { $0 = fresh.upper }
                giveBack()
                return .failure(UpperMismatch(expected: expectedUpper, current: fresh.upper))
            }
        }
    }

    /// The truncation rule: a batch may be appended at any interval it covers.
    static func validateCovers(_ b: HollowBatch, _ append: BatchDescription) throws(InvalidUsage) {
        let rewritten = b.parts.contains { $0.tsRewrite != nil }
        if rewritten {
            let frontiers = b.parts.map { $0.tsRewrite.map(Antichain.init) ?? b.desc.lower }
            guard append.upper == b.desc.upper, frontiers.allSatisfy({ append.lower.lessEqual($0) }) else {
                throw .invalidBatchBounds(batch: b.desc, append: append)
            }
            return
        }
        guard b.desc.lower.lessEqual(append.lower), append.upper.lessEqual(b.desc.upper) else {
            throw .invalidBatchBounds(batch: b.desc, append: append)
        }
    }

    /// Appends `updates` at `[lower, upper)` for writers that may race to write identical
    /// data: if someone already wrote a prefix, only the rest is appended; if someone
    /// already wrote all of it, this succeeds without writing.
    public func append(_ updates: [Update], lower: Antichain, upper: Antichain) async throws -> Result<Void, UpperMismatch> {
        let b = try await batch(updates, lower: lower, upper: upper)
        var lower = lower
        while true {
            let r: Result<Void, UpperMismatch>
            do {
                r = try await compareAndAppendBatch([b], expectedUpper: lower, newUpper: upper)
            } catch {
                await b.delete()
                throw error
            }
            switch r {
            case .success:
                return .success(())
            case .failure(let m):
                if !lower.lessEqual(m.current) {
                    await b.delete()
                    return .failure(m)  // not contiguous with what is there
                }
                if upper.lessEqual(m.current) {
                    await b.delete()
                    return .success(())  // already all written
                }
                lower = m.current
            }
        }
    }

    /// Removes this writer from the shard's state.
    public func expire() async throws {
        let id = writerID
        let applied = try await machine.applyIdempotent { s in s.expireWriter(id) }
        client.maintenance.run(applied.maintenance, machine: machine)
    }
}
