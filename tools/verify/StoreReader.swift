import PersistClient
import PersistCodec
import PersistCore
import PersistLocation

// Library-ready: depends on PersistCore, PersistCodec, PersistLocation and PersistClient.

/// The verifier's reads of a store: shard states, blob listings and batch contents, all
/// without writing. Storage errors are thrown as `StorageError` (the run then reports the
/// store unreachable); what the stored bytes say is returned, and bytes that do not decode
/// are thrown as `ReadError`, for the caller to report as a violation.
struct StoreReader: Sendable {
    let blob: any Blob
    let consensus: any Consensus
    let inspector: ShardStateInspector
    /// Blob reads in flight at once while fetching a batch's parts.
    let fetchConcurrency: Int

    init(blob: any Blob, consensus: any Consensus, fetchConcurrency: Int = 8) {
        self.blob = blob
        self.consensus = consensus
        self.inspector = ShardStateInspector(blob: blob, consensus: consensus)
        self.fetchConcurrency = max(1, fetchConcurrency)
    }

    /// The shard's current state; nil when it has none.
    func state(_ shard: ShardID) async throws -> ShardState? {
        try await inspector.currentState(of: shard)
    }

    /// Every blob key under the shard's prefix.
    func blobKeys(of shard: ShardID) async throws -> Set<String> {
        Set(try await blob.list(prefix: "\(shard)/").map(\.key))
    }

    /// The outcome of reading the parts of some batches.
    enum PartsRead: Sendable {
        /// Every part's updates, after the read rules of its batch, times kept.
        case rows([Update])
        /// These parts (full blob keys) do not exist.
        case missing([String])
    }

    /// The updates of each of `batches` of `shard` (one result per batch, in order), read
    /// by the rules readers apply (timestamp rewrites, truncation to the registered
    /// description) but with every update's own time kept. Parts are fetched
    /// `fetchConcurrency` at a time across all batches; with `listed` (the keys a listing
    /// found), a part not listed counts as missing without a read. Throws
    /// `ReadError.corrupt` for a part that does not decode or holds another number of rows
    /// than recorded.
    func rowsOfEach(_ batches: [HollowBatch], shard: ShardID, listed: Set<String>? = nil) async throws -> [PartsRead] {
        var work: [(batch: Int, part: HollowBatchPart, desc: BatchDescription)] = []
        var missing: [Int: String] = [:]
        for (n, b) in batches.enumerated() {
            for p in b.parts {
                let key = BatchParts.blobKey(shard: shard, partKey: p.key)
                if let listed, !listed.contains(key) { missing[work.count] = key }
                work.append((n, p, b.desc))
            }
        }
        let toFetch = work.indices.filter { missing[$0] == nil }
        var fetched: [Int: [Update]] = [:]
        var next = 0
        try await withThrowingTaskGroup(of: (Int, [Update]?, String).self) { group in
            func start(_ i: Int) {
                let item = work[i]
                let blob = self.blob
                group.addTask {
                    let key = BatchParts.blobKey(shard: shard, partKey: item.part.key)
                    guard let bytes = try await blob.get(key) else { return (i, nil, key) }
                    let stored = try BatchParts.decode(bytes, key: key)
                    guard UInt64(stored.count) == item.part.rowCount else {
                        throw ReadError.corrupt("batch part \(key): holds \(stored.count) rows, state records \(item.part.rowCount)")
                    }
                    return (i, BatchParts.applyReadRules(stored, part: item.part, batch: item.desc, filter: .none), key)
                }
            }
            while next < min(fetchConcurrency, toFetch.count) {
                start(toFetch[next])
                next += 1
            }
            for try await (i, rows, key) in group {
                if let rows { fetched[i] = rows } else { missing[i] = key }
                if next < toFetch.count {
                    start(toFetch[next])
                    next += 1
                }
            }
        }
        var results: [PartsRead] = Array(repeating: .rows([]), count: batches.count)
        for (i, item) in work.enumerated() {
            switch (results[item.batch], fetched[i], missing[i]) {
            case (.rows(let sofar), let rows?, _): results[item.batch] = .rows(sofar + rows)
            case (.rows, _, let key?): results[item.batch] = .missing([key])
            case (.missing(let keys), _, let key?): results[item.batch] = .missing(keys + [key])
            default: break
            }
        }
        return results
    }

    /// The updates of `batches` together (see `rowsOfEach`); `.missing` lists every
    /// missing part of any of them.
    func rows(of batches: [HollowBatch], shard: ShardID) async throws -> PartsRead {
        var all: [Update] = []
        var missing: [String] = []
        for r in try await rowsOfEach(batches, shard: shard) {
            switch r {
            case .rows(let rows): all += rows
            case .missing(let keys): missing += keys
            }
        }
        return missing.isEmpty ? .rows(all) : .missing(missing.sorted())
    }

    /// The updates of `shard`'s whole trace, times kept.
    func contents(of state: ShardState) async throws -> PartsRead {
        try await rows(of: state.trace.batches, shard: state.shardID)
    }

    /// The consensus head of `key`, or nil.
    func head(_ key: String) async throws -> VersionedData? {
        try await consensus.head(key)
    }
}
