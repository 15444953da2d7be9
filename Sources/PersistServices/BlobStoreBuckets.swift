#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PersistCore
import PersistLocation
import Synchronization

/// The buckets of a blob-store data directory: bucket `name` is the `FileBlob` rooted at
/// `<data-dir>/buckets/<name>`. Bucket names are validated before they reach here, so a
/// bucket directory is always a direct child of `buckets/`.
final class BlobStoreBuckets: Sendable {
    let directory: String
    private let open: Mutex<[String: FileBlob]>
    /// Serialises bucket creation: opening a `FileBlob` sweeps its temporary files, which
    /// must never happen to a bucket that is already serving writes.
    private let creating = Mutex<Void>(())

    /// Opens every bucket already in the data directory and creates `names`.
    init(dataDirectory: String, creating names: [String]) throws(StorageError) {
        let directory = dataDirectory + "/buckets"
        self.directory = directory
        var buckets: [String: FileBlob] = [:]
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let directories = existing.filter { name in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        for name in Set(directories + names) where BlobStoreRouter.isValidBucketName(name) {
            buckets[name] = try FileBlob(root: directory + "/" + name)
        }
        for name in names where buckets[name] == nil {
            throw .determinate(.invalidArgument, "\"\(name)\" is not a valid S3 bucket name")
        }
        open = Mutex(buckets)
    }

    /// The bucket called `name`, if it exists.
    func bucket(_ name: String) -> FileBlob? {
        open.withLock { $0[name] }
    }

    /// The bucket called `name`, created (durably) if it does not exist.
    func create(_ name: String) throws(StorageError) -> FileBlob {
        try creating.withLock { _ throws(StorageError) -> FileBlob in
            if let existing = bucket(name) { return existing }
            let blob = try FileBlob(root: directory + "/" + name)
            open.withLock { $0[name] = blob }
            return blob
        }
    }

    /// Every bucket name, sorted.
    var names: [String] { open.withLock { $0.keys.sorted() } }
}

/// What `stat` says about an object's file: enough to date it and to tell whether a
/// cached ETag still describes it (a `FileBlob` replaces an object by renaming a new
/// file over it, so the inode changes with every write).
struct BlobStoreFileInfo: Hashable, Sendable {
    var inode: UInt64
    var size: Int
    var modifiedNanos: Int64

    var modified: Date { Date(timeIntervalSince1970: Double(modifiedNanos) / 1e9) }

    init(inode: UInt64, size: Int, modifiedNanos: Int64) {
        self.inode = inode
        self.size = size
        self.modifiedNanos = modifiedNanos
    }

    init(_ st: stat) {
        self.init(
            inode: UInt64(st.st_ino), size: Int(st.st_size),
            modifiedNanos: Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec))
    }

    /// The path of the file holding `key` in `bucket`.
    static func path(of key: String, in bucket: FileBlob) -> String {
        bucket.root + "/" + FileBlobPath.relativePath(for: key)
    }

    /// Stats the file holding `key` in `bucket`; nil if there is none.
    static func of(_ key: String, in bucket: FileBlob) -> BlobStoreFileInfo? {
        var st = stat()
        guard stat(path(of: key, in: bucket), &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { return nil }
        return BlobStoreFileInfo(st)
    }
}

/// ETags (quoted hex MD5s) of objects this process wrote or read, so that HeadObject
/// need not read a whole object to answer. An entry is used only while the file is the
/// one it was computed for. Bounded: when full it is emptied and refills on demand.
final class BlobStoreETagCache: Sendable {
    private struct Entry {
        var file: BlobStoreFileInfo
        var etag: String
    }

    private let entries = Mutex<[String: Entry]>([:])
    let capacity: Int

    init(capacity: Int = 100_000) { self.capacity = capacity }

    func etag(bucket: String, key: String, file: BlobStoreFileInfo) -> String? {
        entries.withLock { e in
            guard let entry = e[bucket + "/" + key], entry.file == file else { return nil }
            return entry.etag
        }
    }

    func remember(bucket: String, key: String, file: BlobStoreFileInfo, etag: String) {
        entries.withLock { e in
            if e.count >= capacity { e.removeAll(keepingCapacity: true) }
            e[bucket + "/" + key] = Entry(file: file, etag: etag)
        }
    }

    func forget(bucket: String, key: String) {
        _ = entries.withLock { $0.removeValue(forKey: bucket + "/" + key) }
    }

    /// The quoted lower-case hex of an MD5 digest, as S3 writes ETags.
    static func etag(md5 digest: [UInt8]) -> String {
        let hex = Array("0123456789abcdef".utf8)
        var out: [UInt8] = [UInt8(ascii: "\"")]
        for b in digest {
            out.append(hex[Int(b >> 4)])
            out.append(hex[Int(b & 0xF)])
        }
        out.append(UInt8(ascii: "\""))
        return String(decoding: out, as: UTF8.self)
    }
}
