import PersistCore

/// The semantics of `Consensus` over an in-memory table, with no I/O and no locking.
/// `MemoryConsensus` wraps one in a mutex; `LogConsensus` keeps one for what is durable,
/// recording for each version the log segment that holds it.
struct ConsensusTable: Sendable {
    /// A version and where it is stored (always 0 for in-memory use).
    struct Stored: Hashable, Sendable {
        var version: VersionedData
        var segment: UInt64
    }

    /// Versions per key, ascending by seqno. A key present here has at least one version.
    private(set) var versions: [ByteKey: [Stored]] = [:]

    init() {}

    func head(_ key: ByteKey) -> VersionedData? { versions[key]?.last?.version }

    /// Appends a version whose seqno is above the key's head.
    mutating func append(_ key: ByteKey, _ v: VersionedData, segment: UInt64 = 0) {
        versions[key, default: []].append(Stored(version: v, segment: segment))
    }

    /// Replaces the whole (ascending) version list of a key; used by recovery.
    mutating func load(_ key: ByteKey, _ list: [Stored]) {
        versions[key] = list.isEmpty ? nil : list
    }

    func scan(_ key: ByteKey, from: SeqNo, limit: Int) -> [VersionedData] {
        guard let list = versions[key] else { return [] }
        let start = Self.firstIndex(in: list, atOrAfter: from)
        let end = limit >= list.count - start ? list.count : start + limit
        return list[start..<end].map(\.version)
    }

    /// How many versions `truncate` would delete, or the contract error it would raise.
    func checkTruncate(_ key: ByteKey, seqno: SeqNo) -> Result<Int, StorageError> {
        let head = versions[key]?.last?.version.seqno
        guard let head, seqno <= head else {
            return .failure(ConsensusPreconditions.truncateError(key.string, seqno: seqno, head: head))
        }
        return .success(Self.firstIndex(in: versions[key] ?? [], atOrAfter: seqno))
    }

    /// Deletes versions below `seqno`, never the head, and returns the deleted ones.
    @discardableResult
    mutating func truncate(_ key: ByteKey, below seqno: SeqNo) -> ArraySlice<Stored> {
        guard var list = versions[key] else { return [] }
        let n = min(Self.firstIndex(in: list, atOrAfter: seqno), list.count - 1)
        guard n > 0 else { return [] }
        let removed = list[0..<n]
        list.removeFirst(n)
        versions[key] = list
        return removed
    }

    /// The segment holding `key`@`seqno`, if that version is live.
    func segment(of key: ByteKey, _ seqno: SeqNo) -> UInt64? {
        guard let list = versions[key] else { return nil }
        let i = Self.firstIndex(in: list, atOrAfter: seqno)
        guard i < list.count, list[i].version.seqno == seqno else { return nil }
        return list[i].segment
    }

    /// Moves a live version's location from `from` to `to`. False if it is no longer live
    /// there (truncated meanwhile).
    mutating func relocate(_ key: ByteKey, _ seqno: SeqNo, from: UInt64, to: UInt64) -> Bool {
        guard var list = versions[key] else { return false }
        let i = Self.firstIndex(in: list, atOrAfter: seqno)
        guard i < list.count, list[i].version.seqno == seqno, list[i].segment == from else { return false }
        list[i].segment = to
        versions[key] = list
        return true
    }

    func listKeys() -> [String] { versions.keys.sorted().map(\.string) }

    var keyCount: Int { versions.count }

    static func firstIndex(in list: [Stored], atOrAfter s: SeqNo) -> Int {
        var lo = 0
        var hi = list.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if list[mid].version.seqno < s { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
