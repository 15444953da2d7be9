import PersistCodec
import PersistCore

/// A call that broke the shard layer's contract: a bug in the caller, never a
/// consequence of contention or failures. The operation had no effect.
public enum InvalidUsage: Error, Hashable, Sendable, CustomStringConvertible {
    /// `lower` is beyond `upper`.
    case invalidBounds(lower: Antichain, upper: Antichain)
    /// Data was offered for an empty time interval (`lower == upper`).
    case invalidEmptyTimeInterval(lower: Antichain, upper: Antichain)
    /// A batch's bounds do not cover the interval it is appended at.
    case invalidBatchBounds(batch: BatchDescription, append: BatchDescription)
    /// An update's time is before the batch's lower bound.
    case updateNotBeyondLower(time: Timestamp, lower: Antichain)
    /// An update's time is at or beyond the batch's upper bound.
    case updateBeyondUpper(time: Timestamp, upper: Antichain)
    /// The batch belongs to another shard.
    case batchNotFromThisShard(batch: ShardID, shard: ShardID)
    /// The shard was created with other key or value codecs.
    case codecMismatch(expected: String, actual: String)
    /// A timestamp rewrite broke its preconditions.
    case invalidRewrite(String)
    /// The batch was already appended, deleted or turned into a transmittable batch.
    case batchConsumed

    public var description: String {
        switch self {
        case .invalidBounds(let l, let u): return "invalid bounds: lower \(l) is beyond upper \(u)"
        case .invalidEmptyTimeInterval(let l, let u): return "data offered for the empty interval [\(l), \(u))"
        case .invalidBatchBounds(let b, let a):
            return "batch [\(b.lower), \(b.upper)) does not cover the append interval [\(a.lower), \(a.upper))"
        case .updateNotBeyondLower(let t, let l): return "update at \(t) is before the batch lower \(l)"
        case .updateBeyondUpper(let t, let u): return "update at \(t) is not before the batch upper \(u)"
        case .batchNotFromThisShard(let b, let s): return "batch of shard \(b) offered to shard \(s)"
        case .codecMismatch(let e, let a): return "codec mismatch: shard uses \(e), handle uses \(a)"
        case .invalidRewrite(let why): return "invalid timestamp rewrite: \(why)"
        case .batchConsumed: return "the batch was already consumed"
        }
    }
}

/// The upper a writer expected was not the shard's upper: nothing was written.
public struct UpperMismatch: Error, Hashable, Sendable, CustomStringConvertible {
    public var expected: Antichain
    public var current: Antichain

    public init(expected: Antichain, current: Antichain) {
        self.expected = expected
        self.current = current
    }

    public var description: String { "upper mismatch: expected \(expected), shard is at \(current)" }
}

/// Why a read could not be served.
public enum ReadError: Error, Hashable, Sendable, CustomStringConvertible {
    /// `asOf` is before the shard's since: distinctions at that time are gone.
    case sinceAdvanced(asOf: Timestamp, since: Antichain)
    /// The reader's lease expired; it holds nothing any more and must be reopened.
    case leaseExpired
    /// A part the state references is missing from blob (a GC or lease bug).
    case missingBlob(key: String)
    /// Stored bytes could not be decoded.
    case corrupt(String)

    public var description: String {
        switch self {
        case .sinceAdvanced(let t, let s): return "cannot read as of \(t): the shard's since is \(s)"
        case .leaseExpired: return "the reader's lease expired"
        case .missingBlob(let k): return "blob \(k) referenced by state is missing"
        case .corrupt(let why): return "corrupt data: \(why)"
        }
    }
}
