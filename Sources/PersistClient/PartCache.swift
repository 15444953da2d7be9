import PersistCore
import PersistLocation
import Synchronization

/// Bounded memory of small batch parts, the ones this process wrote and the ones it
/// fetched, so that reading one again (a txns-shard listener fetching the part its own
/// append just linked, a coordinator reading a data shard whose older parts it read
/// before) costs no blob round trip. Pure: no I/O; `PartCacheBlob` is the shell around it.
///
/// Safe because part keys are fresh per write and a part's bytes never change: a cached
/// copy is the object itself for as long as the key exists. A fetch that overlaps a
/// delete of the same key is not remembered (its bytes may belong to an object already
/// gone).
/// Only keys that name batch parts (`<shard>/p/...`) are kept, and only up to
/// `maxPartBytes` each; the oldest go first once `capacityBytes` is exceeded.
struct PartCache: Sendable {
    let capacityBytes: Int
    let maxPartBytes: Int
    private var entries: [String: [UInt8]] = [:]
    /// Fetches under way per key, and the keys deleted while one was.
    private var fetching: [String: Int] = [:]
    private var deletedWhileFetching: Set<String> = []
    /// Deletes under way per key: a fetch begun meanwhile may still find the object.
    private var deleting: [String: Int] = [:]
    /// Keys in insertion order from `head` on; slots before `head` are spent.
    private var order: [String] = []
    private var head = 0
    private(set) var totalBytes = 0

    init(capacityBytes: Int, maxPartBytes: Int) {
        self.capacityBytes = capacityBytes
        self.maxPartBytes = maxPartBytes
    }

    /// Whether `key` names a batch part (and not a rollup or anything else).
    static func isPartKey(_ key: String) -> Bool { key.contains("/p/") }

    var count: Int { entries.count }

    /// Keys in the eviction queue, live or forgotten (bounded by about twice `count`).
    var queuedKeys: Int { order.count - head }

    func get(_ key: String) -> [UInt8]? { entries[key] }

    /// Notes that `key` is being fetched from the blob store (before the request).
    mutating func fetchBegan(_ key: String) {
        fetching[key, default: 0] += 1
        if deleting[key] != nil { deletedWhileFetching.insert(key) }
    }

    /// Notes the end of a fetch begun with `fetchBegan`, remembering what it found unless
    /// the key was deleted meanwhile.
    mutating func fetchEnded(_ key: String, found value: [UInt8]?) {
        let deleted = deletedWhileFetching.contains(key)
        if let left = fetching[key], left > 1 {
            fetching[key] = left - 1
        } else {
            fetching[key] = nil
            deletedWhileFetching.remove(key)
        }
        if let value, !deleted { stored(key, value) }
    }

    /// Fetches and deletes under way (for tests).
    var fetchesInFlight: Int { fetching.values.reduce(0, +) }
    var deletesInFlight: Int { deleting.values.reduce(0, +) }

    /// Remembers an object just stored or fetched, if it is a small part.
    mutating func stored(_ key: String, _ value: [UInt8]) {
        guard value.count <= maxPartBytes, value.count <= capacityBytes, Self.isPartKey(key) else { return }
        if let old = entries.updateValue(value, forKey: key) {
            totalBytes -= old.count
        } else {
            order.append(key)
        }
        totalBytes += value.count
        while totalBytes > capacityBytes, head < order.count {
            let victim = order[head]
            head += 1
            if let gone = entries.removeValue(forKey: victim) { totalBytes -= gone.count }
        }
        compactOrder()
    }

    /// Drops the eviction queue's dead prefix, and, when forgotten keys make up most of
    /// it, the keys no longer cached, so the queue stays proportional to the entries
    /// (a coordinator whose GC deletes parts as fast as it writes them never evicts).
    private mutating func compactOrder() {
        if head > 1024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
        if order.count - head > 2 * entries.count + 1024 {
            order = order[head...].filter { entries[$0] != nil }
            head = 0
        }
    }

    /// Notes that `key` is being deleted: it is forgotten, and no fetch that overlaps the
    /// delete (begun before it ends) remembers it.
    mutating func deleteBegan(_ key: String) {
        deleting[key, default: 0] += 1
        forget(key)
    }

    /// Notes the end of a delete begun with `deleteBegan`, whatever its outcome.
    mutating func deleteEnded(_ key: String) {
        if let left = deleting[key], left > 1 {
            deleting[key] = left - 1
        } else {
            deleting[key] = nil
        }
    }

    /// Forgets `key` (deleted, or its fate unknown after a failed write), and keeps a
    /// fetch of it that is under way from remembering it.
    mutating func forget(_ key: String) {
        if fetching[key] != nil { deletedWhileFetching.insert(key) }
        if let gone = entries.removeValue(forKey: key) { totalBytes -= gone.count }
        compactOrder()
    }
}

/// A `Blob` that remembers the small batch parts written or read through it
/// (`PartCache`) and answers reads of them from memory. Everything else goes to `inner`
/// unchanged; a written part is remembered only after `inner` stored it durably.
final class PartCacheBlob: Blob {
    let inner: any Blob
    private let cache: Mutex<PartCache>

    init(inner: any Blob, capacityBytes: Int, maxPartBytes: Int) {
        self.inner = inner
        self.cache = Mutex(PartCache(capacityBytes: capacityBytes, maxPartBytes: maxPartBytes))
    }

    /// Parts currently remembered.
    var cachedCount: Int { cache.withLock { $0.count } }

    func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        guard PartCache.isPartKey(key) else { return try await inner.get(key) }
        let hit = cache.withLock { c -> [UInt8]? in
            if let hit = c.get(key) { return hit }
            c.fetchBegan(key)
            return nil
        }
        if let hit { return hit }
        let value: [UInt8]?
        do {
            value = try await inner.get(key)
        } catch {
            cache.withLock { $0.fetchEnded(key, found: nil) }
            throw error
        }
        cache.withLock { $0.fetchEnded(key, found: value) }
        return value
    }

    func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        do {
            try await inner.set(key, value)
        } catch {
            cache.withLock { $0.forget(key) }
            throw error
        }
        cache.withLock { $0.stored(key, value) }
    }

    func delete(_ key: String) async throws(StorageError) -> Int? {
        cache.withLock { $0.deleteBegan(key) }
        defer { cache.withLock { $0.deleteEnded(key) } }
        return try await inner.delete(key)
    }

    func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        try await inner.list(prefix: prefix)
    }
}
