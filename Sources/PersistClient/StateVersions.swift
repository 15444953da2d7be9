import PersistCodec
import PersistCore
import PersistLocation

/// Where a shard's state lives and how it is read: a sequence of diffs in consensus
/// (one per seqno) plus full rollups in blob (spec/persist.md §3.3). Opening reads the
/// head's latest rollup and the diffs after it, never the whole history.
struct StateVersions: Sendable {
    let shard: ShardID
    let blob: any Blob
    let consensus: any Consensus
    let config: PersistConfig

    var consensusKey: String { shard.description }

    func blobKey(_ relative: String) -> String { "\(shard)/\(relative)" }

    static func rollupKey(seqno: SeqNo) -> String {
        var g = SystemRandomNumberGenerator()
        return "r/\(seqno.rawValue)/\(UUIDText.format(UUIDText.randomBytes(using: &g)))"
    }

    /// The seqno a rollup key names (`r/<seqno>/<uuid>`).
    static func rollupSeqno(_ key: String) -> SeqNo? {
        let parts = key.split(separator: "/")
        guard parts.count == 3, parts[0] == "r", let n = UInt64(parts[1]) else { return nil }
        return SeqNo(n)
    }

    /// The current state, or nil if the shard was never initialized.
    func fetchCurrent() async throws -> ShardState? {
        while true {
            let key = consensusKey
            guard let head = try await Retry.external("consensus head", config: config, { () async throws(StorageError) in
                try await consensus.head(key)
            }) else { return nil }
            let headDiff = try decodeDiff(head)
            guard let rollupSeqno = Self.rollupSeqno(headDiff.latestRollupKey) else {
                throw ReadError.corrupt("state \(head.seqno) of \(shard) names no valid rollup (\(headDiff.latestRollupKey))")
            }
            guard var state = try await fetchRollup(headDiff.latestRollupKey) else {
                continue  // GC deleted it after we read the head: the head has moved on.
            }
            guard state.seqno == rollupSeqno else {
                throw ReadError.corrupt("rollup \(headDiff.latestRollupKey) holds state \(state.seqno)")
            }
            if try await applyDiffs(to: &state, from: rollupSeqno, through: head.seqno) {
                return state
            }
            // Diffs after the rollup were truncated underneath us: start over.
        }
    }

    /// `state`, brought up to date with consensus.
    func update(_ state: ShardState) async throws -> ShardState {
        var s = state
        let key = consensusKey
        let from = s.seqno
        let diffs = try await Retry.external("consensus scan", config: config, { () async throws(StorageError) in
            try await consensus.scan(key, from: SeqNo(from.rawValue + 1) ?? .maximum, limit: config.recentLiveDiffsLimit)
        })
        guard let first = diffs.first else { return s }
        let decodedFirst = try decodeDiff(first)
        guard decodedFirst.seqnoFrom == s.seqno else { return try await fetchCurrent() ?? s }
        for v in diffs {
            let d = try decodeDiff(v)
            do {
                try d.apply(to: &s)
            } catch {
                return try await fetchCurrent() ?? s
            }
        }
        if diffs.count == config.recentLiveDiffsLimit { return try await update(s) }
        return s
    }

    /// Applies the diffs `(from, through]` to `state`; false if they are no longer all
    /// there.
    private func applyDiffs(to state: inout ShardState, from: SeqNo, through: SeqNo) async throws -> Bool {
        let key = consensusKey
        var next = from.rawValue + 1
        while next <= through.rawValue {
            let start = SeqNo(next) ?? .maximum
            let page = try await Retry.external("consensus scan", config: config, { () async throws(StorageError) in
                try await consensus.scan(key, from: start, limit: config.recentLiveDiffsLimit)
            })
            guard !page.isEmpty else { return false }
            for v in page where v.seqno <= through {
                let d = try decodeDiff(v)
                do {
                    try d.apply(to: &state)
                } catch {
                    return false
                }
            }
            guard let last = page.last else { return false }
            next = last.seqno.rawValue + 1
            if page.count < config.recentLiveDiffsLimit { break }
        }
        return state.seqno >= through
    }

    func fetchRollup(_ relativeKey: String) async throws -> ShardState? {
        let key = blobKey(relativeKey)
        guard let bytes = try await Retry.external("blob get", config: config, { () async throws(StorageError) in
            try await blob.get(key)
        }) else { return nil }
        do {
            let state = try ShardState.decode(bytes)
            try checkVersion(state.applierVersion)
            return state
        } catch let e as CodecError {
            throw ReadError.corrupt("rollup \(key): \(e)")
        }
    }

    func decodeDiff(_ v: VersionedData) throws -> StateDiff {
        do {
            let d = try StateDiff.decode(v.data)
            guard d.seqnoTo == v.seqno else {
                throw ReadError.corrupt("consensus version \(v.seqno) of \(shard) holds the diff to \(d.seqnoTo)")
            }
            try checkVersion(d.applierVersion)
            return d
        } catch let e as CodecError {
            throw ReadError.corrupt("state diff \(v.seqno) of \(shard): \(e)")
        }
    }

    func checkVersion(_ text: String) throws {
        guard let v = SemanticVersion(text) else { throw ReadError.corrupt("state written by unknown version \"\(text)\"") }
        guard config.applierVersion.canRead(writtenBy: v) else {
            throw ReadError.corrupt("state written by version \(v) is too new for this code (\(config.applierVersion))")
        }
    }

    /// Writes `state` as a rollup blob and returns its record (not yet linked).
    func writeRollup(of state: ShardState) async throws -> HollowRollup {
        let relative = Self.rollupKey(seqno: state.seqno)
        let bytes = state.encode()
        let key = blobKey(relative)
        try await Retry.external("blob set", config: config, { () async throws(StorageError) in
            try await blob.set(key, bytes)
        })
        return HollowRollup(key: relative, encodedSizeBytes: UInt64(bytes.count))
    }

    /// Creates the shard if it has no state yet, and returns the current state.
    ///
    /// The first version (seqno 1) references its own rollup: the rollup blob is written
    /// first, then the 0 -> 1 diff is CaS'd with no expected version. If someone else won
    /// that race, their state is returned and our rollup is deleted (unless an earlier,
    /// indeterminate attempt of ours was in fact the winner).
    func initialize(keyCodec: String, valueCodec: String, hostname: String, nowMs: UInt64) async throws -> ShardState {
        if let s = try await fetchCurrent() { return s }
        let empty = ShardState(
            shardID: shard, seqno: .minimum, walltimeMs: nowMs, hostname: hostname,
            applierVersion: config.applierVersion.description, keyCodec: keyCodec, valueCodec: valueCodec)
        var first = empty
        first.seqno = SeqNo(1)
        // State 1 records its own rollup; its size is unknowable before encoding, so this
        // one rollup records 0 (sizes are only hints).
        let rollupKey = Self.rollupKey(seqno: first.seqno)
        first.rollups[first.seqno] = HollowRollup(key: rollupKey, encodedSizeBytes: 0)
        let bytes = first.encode()
        let rollupBlobKey = blobKey(rollupKey)
        try await Retry.external("blob set", config: config, { () async throws(StorageError) in
            try await blob.set(rollupBlobKey, bytes)
        })
        let diff = StateDiff.between(empty, first, applierVersion: config.applierVersion.description)
        let key = consensusKey
        while true {
            let attempt: Result<CaSResult, StorageError> = await attemptOnce { () async throws(StorageError) in
                try await consensus.compareAndSet(key, expected: nil, new: VersionedData(seqno: first.seqno, data: diff.encode()))
            }
            switch attempt {
            case .success(.committed):
                return first
            case .success(.expectationMismatch):
                guard let theirs = try await fetchCurrent() else { continue }
                if theirs.rollups[SeqNo(1)]?.key != rollupKey {
                    _ = try? await Retry.external("blob delete", config: config, { () async throws(StorageError) in
                        try await blob.delete(rollupBlobKey)
                    })
                }
                return theirs
            case .failure(let error) where error.isDeterminate:
                try await Task.sleep(for: config.initialBackoff)
            case .failure:
                // Indeterminate: read to find out whether it happened.
                if let s = try await fetchCurrent() { return s }
            }
        }
    }
}
