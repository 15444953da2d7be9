import PersistCodec
import PersistCore
import PersistLocation

/// Read-only access to shard states as they are stored, for tools that check a store from
/// the outside (`txn-verify`).
///
/// It reads a shard's state the way a handle does when it opens the shard (the head's
/// latest rollup, then the diffs after it), with two differences: it never writes (no
/// initialization, no reader or writer registration, so the shard's seqno does not move),
/// and it never retries a storage error. A caller that wants retries wraps the backends.
public struct ShardStateInspector: Sendable {
    public let blob: any Blob
    public let consensus: any Consensus
    /// Used for the applier-version check of the states read, as handles do.
    public let config: PersistConfig

    public init(blob: any Blob, consensus: any Consensus, config: PersistConfig = PersistConfig()) {
        self.blob = blob
        self.consensus = consensus
        self.config = config
    }

    /// The state of `shard` at its consensus head, or nil when the shard's key has no
    /// versions (the shard was never initialized).
    ///
    /// If the store changes under the read in a way that makes what was read useless (GC
    /// deleted the rollup or truncated the diffs after the head moved on), the read starts
    /// over, at most `maxAttempts` times in all.
    ///
    /// - Throws: `StorageError` as the backends threw it. `ReadError.missingBlob` when the
    ///   rollup the head names does not exist and the head has not moved.
    ///   `ReadError.corrupt` when a stored diff or rollup does not decode, the diffs do not
    ///   fit the rollup, the state was written by a version this code cannot read, or the
    ///   state kept moving for `maxAttempts` reads.
    public func currentState(of shard: ShardID, maxAttempts: Int = 16) async throws -> ShardState? {
        let versions = StateVersions(shard: shard, blob: blob, consensus: consensus, config: config)
        let key = versions.consensusKey
        for _ in 0..<max(1, maxAttempts) {
            guard let head = try await consensus.head(key) else { return nil }
            switch try await stateAt(head, versions: versions) {
            case .state(let s):
                return s
            case .unusable(let problem):
                // Only a head that moved on explains a missing rollup or missing diffs.
                guard try await consensus.head(key)?.seqno == head.seqno else { continue }
                throw problem
            }
        }
        throw ReadError.corrupt("the state of \(shard) changed during each of \(max(1, maxAttempts)) reads")
    }

    /// The outcome of one attempt at the state of a head.
    private enum Attempt {
        case state(ShardState)
        /// What was read does not make up the head's state; `problem` is the error to
        /// report if the head did not move meanwhile.
        case unusable(problem: ReadError)
    }

    private func stateAt(_ head: VersionedData, versions: StateVersions) async throws -> Attempt {
        let headDiff = try versions.decodeDiff(head)
        guard let rollupSeqno = StateVersions.rollupSeqno(headDiff.latestRollupKey) else {
            throw ReadError.corrupt("state \(head.seqno) of \(versions.shard) names no valid rollup (\(headDiff.latestRollupKey))")
        }
        let rollupKey = versions.blobKey(headDiff.latestRollupKey)
        guard let bytes = try await blob.get(rollupKey) else { return .unusable(problem: .missingBlob(key: rollupKey)) }
        var state: ShardState
        do {
            state = try ShardState.decode(bytes)
        } catch {
            throw ReadError.corrupt("rollup \(rollupKey): \(error)")
        }
        try versions.checkVersion(state.applierVersion)
        guard state.seqno == rollupSeqno, state.shardID == versions.shard else {
            throw ReadError.corrupt("rollup \(rollupKey) holds state \(state.seqno) of \(state.shardID)")
        }
        guard state.seqno < head.seqno else {
            return state.seqno == head.seqno
                ? .state(state) : .unusable(problem: .corrupt("rollup \(rollupKey) is newer than the head \(head.seqno)"))
        }
        guard let from = state.seqno.next else { return .state(state) }
        let wanted = Int(head.seqno.rawValue - state.seqno.rawValue)
        let diffs = try await consensus.scan(versions.consensusKey, from: from, limit: wanted)
        for v in diffs where v.seqno <= head.seqno {
            let d = try versions.decodeDiff(v)
            do {
                try d.apply(to: &state)
            } catch {
                return .unusable(problem: .corrupt("diff \(v.seqno) of \(versions.shard) does not apply: \(error)"))
            }
        }
        guard state.seqno == head.seqno else {
            return .unusable(problem: .corrupt("the diffs of \(versions.shard) after \(rollupSeqno) end at \(state.seqno), the head is \(head.seqno)"))
        }
        return .state(state)
    }
}
