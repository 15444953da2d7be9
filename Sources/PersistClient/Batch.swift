import PersistCodec
import PersistCore
import PersistLocation
import Synchronization

/// Data written to blob but not yet linked into its shard. Exactly one of these ends a
/// batch's life: it is appended (`compareAndAppendBatch`), deleted (`delete`), or handed
/// on as bytes (`intoTransmittable`) for someone else to append or delete. A batch that
/// is simply dropped leaks its blobs until leak collection finds them.
public final class Batch: Sendable {
    public let shard: ShardID
    private let blob: any Blob
    private let config: PersistConfig
    private let state: Mutex<HollowBatch?>

    init(shard: ShardID, batch: HollowBatch, blob: any Blob, config: PersistConfig) {
        self.shard = shard
        self.blob = blob
        self.config = config
        self.state = Mutex(batch)
    }

    /// The batch's description and parts; nil once consumed.
    public var hollow: HollowBatch? { state.withLock { $0 } }

    /// Marks the batch consumed and returns what it held.
    func consume() throws(InvalidUsage) -> HollowBatch {
        let taken: HollowBatch? = state.withLock { s in
            defer { s = nil }
            return s
        }
        guard let taken else { throw .batchConsumed }
        return taken
    }

    /// Puts a batch back after a failed append, so the caller may retry or delete it.
    func restore(_ batch: HollowBatch) {
        state.withLock { $0 = batch }
    }

    /// Encodes the batch as a transmittable batch handle (with a fresh unique id) and
    /// consumes this object: the bytes now own the blobs.
    public func intoTransmittable() throws(InvalidUsage) -> [UInt8] {
        let b = try consume()
        var g = SystemRandomNumberGenerator()
        return TransmittableBatch(shard: shard, batch: b, using: &g).encode()
    }

    /// Retimes the (uncommitted) batch without touching its data: every update reads as
    /// if at `max(t, frontier)`, and the batch's upper becomes `newUpper` (spec §4.8).
    /// May be repeated with larger values.
    public func rewriteTimestamps(frontier: Timestamp, newUpper: Antichain) throws(InvalidUsage) {
        let result: InvalidUsage? = state.withLock { s in
            guard var b = s else { return .batchConsumed }
            if let reason = Self.rewriteViolation(b, frontier: frontier, newUpper: newUpper) {
                return .invalidRewrite(reason)
            }
            for i in b.parts.indices { b.parts[i].tsRewrite = frontier }
            b.desc.upper = newUpper
            s = b
            return nil
        }
        if let result { throw result }
    }

    static func rewriteViolation(_ b: HollowBatch, frontier: Timestamp, newUpper: Antichain) -> String? {
        guard newUpper.element.map({ frontier < $0 }) ?? true else {
            return "frontier \(frontier) is not before the new upper \(newUpper)"
        }
        guard b.desc.upper.lessEqual(newUpper) else { return "new upper \(newUpper) is before the batch upper \(b.desc.upper)" }
        guard b.desc.lower.lessEqual(frontier) else { return "frontier \(frontier) is before the batch lower \(b.desc.lower)" }
        guard b.desc.since == .minimum else { return "the batch was compacted (since \(b.desc.since))" }
        if let prior = b.parts.compactMap(\.tsRewrite).max(), prior > frontier {
            return "a part was already rewritten to \(prior), beyond \(frontier)"
        }
        return nil
    }

    /// Deletes the batch's blobs and consumes it.
    public func delete() async {
        guard let b = try? consume() else { return }
        await BatchBuilder.deleteParts(of: b, shard: shard, blob: blob, config: config)
    }
}
