import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation
import Synchronization

/// Writes the updates of one batch to blob, part by part (spec/persist.md §4.2), and
/// returns the `HollowBatch` that references them. Data is in blob before any state
/// refers to it; linking the batch into a shard is the caller's business.
///
/// Usage: `add` updates (every time `t` must satisfy `lower <= t`), then either
/// `finish(upper:)` (every time must be `< upper`) or `abort()`. A batch that is finished
/// must eventually be appended or deleted (`deleteParts`); a builder dropped without
/// either leaks its uploaded parts until garbage collection finds them.
///
/// Updates are buffered until their estimated encoded size (key + value + 18 bytes per
/// row) reaches `config.blobTargetSizeBytes`; the buffer is then sorted, consolidated
/// and uploaded as one part in the background. At most
/// `config.batchBuilderMaxOutstandingParts` uploads are in flight: a call that would
/// start another first waits for the oldest one (backpressure), so memory stays bounded
/// by about `(maxOutstandingParts + 1) * blobTargetSizeBytes`.
///
/// Each part is consolidated on its own, so equal `(key, value, time)` triples that land
/// in different parts stay separate rows; readers consolidate. A part whose rows all
/// cancel out is not uploaded.
///
/// Errors: `InvalidUsage` for contract violations (the call had no effect);
/// `CancellationError` if the calling task is cancelled while the builder waits for an
/// upload; `CompressionError` if the compressor refuses a part. Storage errors never
/// surface: uploads are retried until they succeed. After a `CancellationError` or
/// `CompressionError` the builder is failed: every later `add` or `finish` throws the
/// same error, and only `abort()` is useful.
///
/// The builder is safe to share between tasks, but it is meant to be driven by one task
/// at a time; concurrent `add`s are safe, and their parts are in the order the uploads
/// started.
public final class BatchBuilder: Sendable {
    /// The shard the parts belong to.
    public let shard: ShardID
    /// The batch's lower bound: no update may be before it.
    public let lower: Antichain
    /// The name of the writer in part keys (`<shard>/p/<writerKey>/<uuid>`).
    public let writerKey: String
    /// Where parts go, and the retry and part settings used for them.
    private let blob: any Blob
    private let config: PersistConfig
    /// `config`'s part size and upload bound, clamped to at least 1.
    private let targetBytes: Int
    private let maxOutstanding: Int
    private let state = Mutex(State())

    /// One part upload: its shard-relative key (known before it is written, so that
    /// `abort` can delete it whatever happened) and the task doing the work. The task
    /// returns nil when the part's rows all consolidated away.
    private struct Upload: Sendable {
        var key: String
        var task: Task<HollowBatchPart?, any Error>
    }

    /// Where the builder is in its life: open for `add`, then finished, aborted or
    /// failed for good.
    private enum Phase {
        case open
        /// `finish` is waiting for the last uploads.
        case finishing
        case finished
        case aborted
        case failed(any Error)
    }

    /// Everything that changes, guarded by `state`'s lock (never held across an await).
    private struct State: ~Copyable {
        var phase = Phase.open
        /// Rows not yet handed to an upload, and their estimated encoded size.
        var buffer: [Update] = []
        var bufferedBytes = 0
        /// The greatest time added so far, checked against the upper at `finish`.
        var maxTime: Timestamp?
        /// Every upload ever started, oldest first.
        var uploads: [Upload] = []
        /// The uploads before this index are known to have completed successfully.
        var retired = 0

        /// Uploads that count against the bound: started and not yet seen to complete.
        var inFlight: Int { uploads.count - retired }
    }

    /// A builder for a batch of `shard` whose lower bound is `lower`. `writerKey` becomes
    /// the second component of every part key and must not contain `/`. Nothing is
    /// written until a part fills up or the batch is finished.
    public init(shard: ShardID, lower: Antichain, blob: any Blob, writerKey: String, config: PersistConfig) {
        self.shard = shard
        self.lower = lower
        self.blob = blob
        self.writerKey = writerKey
        self.config = config
        self.targetBytes = max(1, config.blobTargetSizeBytes)
        self.maxOutstanding = max(1, config.batchBuilderMaxOutstandingParts)
    }

    /// Adds one update. Throws `InvalidUsage.updateNotBeyondLower` if its time is before
    /// `lower`, or `InvalidUsage.batchConsumed` once the builder is finished or aborted;
    /// in both cases nothing was added. May wait for an upload to complete when the
    /// buffer is full and the maximum number of uploads is in flight.
    public func add(_ update: Update) async throws {
        try await add(contentsOf: CollectionOfOne(update))
    }

    /// Adds `updates`, in order. Every update is checked before any is added: if one is
    /// before `lower` the call throws `InvalidUsage.updateNotBeyondLower` and adds none.
    /// Otherwise behaves like calling `add` for each (if the builder fails or is aborted
    /// midway, some of the updates may have been buffered; it is unusable then anyway).
    public func add(contentsOf updates: some Collection<Update>) async throws {
        for u in updates where !lower.lessEqual(u.time) {
            throw InvalidUsage.updateNotBeyondLower(time: u.time, lower: lower)
        }
        var pending = updates[...]
        while true {
            let step: Step = try state.withLock { s throws in
                try Self.checkWritable(s.phase)
                while let u = pending.first, s.bufferedBytes < targetBytes {
                    s.buffer.append(u)
                    s.bufferedBytes += Self.estimatedSize(u)
                    s.maxTime = max(s.maxTime ?? u.time, u.time)
                    pending = pending.dropFirst()
                }
                return startUploadIfFull(&s)
            }
            if case .none = step, pending.isEmpty { return }
            // Either an upload started and more rows remain, or the buffer is full and
            // the oldest upload must complete first.
            try await perform(step)
        }
    }

    /// Completes the batch at `[lower, upper)`: uploads the remaining buffer, waits for
    /// every upload, and returns the batch with since `{0}`, its parts in the order their
    /// uploads started, and its row count (rows after per-part consolidation). An empty
    /// batch has no parts and writes nothing.
    ///
    /// Throws `InvalidUsage.invalidBounds` if `upper` is before `lower`, and
    /// `InvalidUsage.updateBeyondUpper` if some added time is not before `upper`; the
    /// builder is then unchanged and may be finished with another upper or aborted. Throws
    /// `InvalidUsage.batchConsumed` if already finished or aborted.
    public func finish(upper: Antichain) async throws -> HollowBatch {
        try state.withLock { s throws in
            try Self.checkWritable(s.phase)
            guard lower.lessEqual(upper) else { throw InvalidUsage.invalidBounds(lower: lower, upper: upper) }
            if let t = s.maxTime, upper.lessEqual(t) { throw InvalidUsage.updateBeyondUpper(time: t, upper: upper) }
            s.phase = .finishing
        }
        // Flush the remainder, respecting the bound on uploads in flight.
        while true {
            let step: Step = state.withLock { s in
                if s.buffer.isEmpty { return .none }
                if s.inFlight < maxOutstanding { return startUpload(&s) }
                return .wait(index: s.retired, s.uploads[s.retired].task)
            }
            if case .none = step { break }
            try await perform(step)
        }
        // Wait for everything, oldest first.
        while true {
            let step: Step = state.withLock { s in
                s.retired < s.uploads.count ? .wait(index: s.retired, s.uploads[s.retired].task) : .none
            }
            if case .none = step { break }
            try await perform(step)
        }
        let tasks = try state.withLock { s throws in
            // An `abort` from another task meanwhile wins: its deletions may be under way.
            guard case .finishing = s.phase else { throw InvalidUsage.batchConsumed }
            s.phase = .finished
            return s.uploads.map(\.task)
        }
        var parts: [HollowBatchPart] = []
        var rows: UInt64 = 0
        for task in tasks {
            // Every task completed successfully above: this does not wait or throw.
            if let part = try await task.value {
                parts.append(part)
                rows += part.rowCount
            }
        }
        return HollowBatch(desc: BatchDescription(lower: lower, upper: upper, since: .minimum), rowCount: rows, parts: parts)
    }

    /// Abandons the batch: drops buffered rows, cancels and waits for the uploads in
    /// flight, and deletes every part this builder ever started to upload (deleting a
    /// part that was never written is harmless). Best effort: if the calling task is
    /// cancelled, the remaining deletions are skipped and those parts leak until garbage
    /// collection. Afterwards `add` and `finish` throw `InvalidUsage.batchConsumed`.
    /// Does nothing once `finish` has returned the batch: its parts are the caller's, to
    /// append or to delete with `deleteParts`.
    public func abort() async {
        let uploads: [Upload]? = state.withLock { s in
            if case .finished = s.phase { return nil }
            s.phase = .aborted
            s.buffer = []
            s.bufferedBytes = 0
            return s.uploads
        }
        // A finished batch belongs to the caller now (see `deleteParts`).
        guard let uploads else { return }
        for u in uploads { u.task.cancel() }
        for u in uploads { _ = await u.task.result }
        let keys = uploads.map(\.key)
        _ = await Self.delete(keys: keys, shard: shard, blob: blob, config: config)
    }

    // MARK: Conveniences

    /// Builds and finishes a batch of `updates` at `[lower, upper)` in one call. On any
    /// error the parts already uploaded are deleted (best effort) and the error is
    /// rethrown.
    public static func build(
        updates: [Update], shard: ShardID, lower: Antichain, upper: Antichain, blob: any Blob, writerKey: String,
        config: PersistConfig
    ) async throws -> HollowBatch {
        // Check the bounds first, so a contract violation uploads nothing.
        guard lower.lessEqual(upper) else { throw InvalidUsage.invalidBounds(lower: lower, upper: upper) }
        for u in updates where upper.lessEqual(u.time) {
            throw InvalidUsage.updateBeyondUpper(time: u.time, upper: upper)
        }
        let builder = BatchBuilder(shard: shard, lower: lower, blob: blob, writerKey: writerKey, config: config)
        do {
            try await builder.add(contentsOf: updates)
            return try await builder.finish(upper: upper)
        } catch {
            await builder.abort()
            throw error
        }
    }

    /// Deletes the blobs of every part of `batch` (of `shard`), retrying storage errors.
    /// For a batch that will never be linked into its shard: a compare-and-append that
    /// failed for good, or a compaction result that was not applied. Returns false if the
    /// task was cancelled before every part was deleted (the rest leak until garbage
    /// collection), true otherwise. Deleting parts that are already gone is harmless.
    @discardableResult
    public static func deleteParts(of batch: HollowBatch, shard: ShardID, blob: any Blob, config: PersistConfig) async
        -> Bool
    {
        await delete(keys: batch.parts.map(\.key), shard: shard, blob: blob, config: config)
    }

    // MARK: Internals

    /// What to do outside the lock.
    private enum Step {
        /// Nothing to wait for.
        case none
        /// Wait for upload number `index`, the oldest one not known to have completed.
        case wait(index: Int, Task<HollowBatchPart?, any Error>)
    }

    /// The encoded-size estimate of a row (two short length prefixes, time, diff).
    private static func estimatedSize(_ u: Update) -> Int { u.key.count + u.value.count + 18 }

    /// Throws unless `add` and `finish` may still be called in `phase`.
    private static func checkWritable(_ phase: Phase) throws {
        switch phase {
        case .open: return
        case .finishing, .finished, .aborted: throw InvalidUsage.batchConsumed
        case .failed(let error): throw error
        }
    }

    /// If the buffer is full, starts its upload when a slot is free, or asks the caller
    /// to wait for the oldest upload first.
    private func startUploadIfFull(_ s: inout State) -> Step {
        guard s.bufferedBytes >= targetBytes else { return .none }
        if s.inFlight < maxOutstanding { return startUpload(&s) }
        return .wait(index: s.retired, s.uploads[s.retired].task)
    }

    /// Moves the buffer into a new upload task. Called with a free slot.
    private func startUpload(_ s: inout State) -> Step {
        let rows = s.buffer
        s.buffer = []
        s.bufferedBytes = 0
        let key = BatchParts.newPartKey(writerKey: writerKey)
        let blobKey = BatchParts.blobKey(shard: shard, partKey: key)
        let (blob, config) = (self.blob, self.config)
        let task = Task<HollowBatchPart?, any Error> {
            var rows = rows
            Consolidation.consolidate(&rows)
            guard !rows.isEmpty else { return nil }
            let encoded = try BatchParts.encode(rows, compression: config.compression)
            try await Retry.external("upload batch part", config: config) { () async throws(StorageError) in
                try await blob.set(blobKey, encoded.bytes)
            }
            return encoded.hollow(key: key)
        }
        s.uploads.append(Upload(key: key, task: task))
        return .none
    }

    /// Waits for an upload if asked to. If the caller is cancelled meanwhile, the upload
    /// is cancelled too (it would otherwise retry forever against an unavailable blob).
    /// A failed upload fails the builder.
    private func perform(_ step: Step) async throws {
        guard case .wait(let index, let task) = step else { return }
        let result = await withTaskCancellationHandler {
            await task.result
        } onCancel: {
            task.cancel()
        }
        try state.withLock { s throws in
            switch result {
            case .success:
                s.retired = max(s.retired, index + 1)
            case .failure(let error):
                if case .aborted = s.phase { throw InvalidUsage.batchConsumed }
                s.phase = .failed(error)
                throw error
            }
        }
    }

    /// Deletes `keys` (shard-relative) one by one with retries; false if cancelled first.
    private static func delete(keys: [String], shard: ShardID, blob: any Blob, config: PersistConfig) async -> Bool {
        for key in keys {
            let full = BatchParts.blobKey(shard: shard, partKey: key)
            do {
                _ = try await Retry.external("delete batch part", config: config) {
                    () async throws(StorageError) -> Int? in
                    try await blob.delete(full)
                }
            } catch {
                return false
            }
        }
        return true
    }
}
