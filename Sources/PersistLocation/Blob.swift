import PersistCore

/// A key of a blob object and its size, as listed.
public struct BlobMetadata: Hashable, Sendable {
    public var key: String
    public var sizeBytes: Int

    public init(key: String, sizeBytes: Int) {
        self.key = key
        self.sizeBytes = sizeBytes
    }
}

/// A durable, linearizable key-value store of immutable objects (batch parts, rollups).
///
/// Keys are compared as their exact UTF-8 bytes: two strings that Swift considers equal
/// under Unicode canonical equivalence but that differ in bytes are different keys, as
/// they are in S3. Every error is a `StorageError` saying whether the operation may have
/// happened.
public protocol Blob: Sendable {
    /// The object at `key`, or nil if there is none.
    func get(_ key: String) async throws(StorageError) -> [UInt8]?

    /// Stores `value` at `key`, durably, before returning. Atomic: a reader sees either
    /// the previous object (or none) or all of `value`, never a part of it. Writing the
    /// same bytes again is harmless (retries do); persist never overwrites a live key
    /// with different bytes.
    func set(_ key: String, _ value: [UInt8]) async throws(StorageError)

    /// Removes `key`. Returns the size of the object removed, or nil if there was none.
    /// Idempotent: deleting a missing key succeeds.
    func delete(_ key: String) async throws(StorageError) -> Int?

    /// Every key starting with `prefix` (byte-wise), with its size, in ascending byte
    /// order of the keys. For GC, tools and tests; not on any hot path.
    func list(prefix: String) async throws(StorageError) -> [BlobMetadata]
}
