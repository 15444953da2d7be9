import PersistCore
import Synchronization

/// An in-memory `Blob`, for tests and the in-memory embedded mode.
public final class MemoryBlob: Blob {
    private let objects = Mutex([ByteKey: [UInt8]]())

    public init() {}

    public func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        objects.withLock { $0[ByteKey(key)] }
    }

    public func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        objects.withLock { $0[ByteKey(key)] = value }
    }

    public func delete(_ key: String) async throws(StorageError) -> Int? {
        objects.withLock { $0.removeValue(forKey: ByteKey(key))?.count }
    }

    public func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        let p = ByteKey(prefix)
        return objects.withLock { objs in
            objs.filter { $0.key.hasPrefix(p) }
                .sorted { $0.key < $1.key }
                .map { BlobMetadata(key: $0.key.string, sizeBytes: $0.value.count) }
        }
    }
}
