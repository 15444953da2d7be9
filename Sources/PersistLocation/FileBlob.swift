#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import PersistCore
import Synchronization

/// A `Blob` stored as one file per key under a root directory.
///
/// `set` writes a temporary file, fsyncs it, renames it over the final name and fsyncs
/// the directory, so an object is either absent, the old one, or entirely the new one,
/// and is durable when `set` returns. Keys map to file names through `FileBlobPath`,
/// which is injective and never leaves the root, whatever the key holds.
///
/// Deleted objects' files are recycled: `delete` renames the file to a spare name in the
/// same directory (`.spare-N`; only when nobody in this process has it open), and once
/// that is durable empties it; a later `set` rewrites a spare and renames it to its
/// object's name instead of creating a new file. Spares stay in the objects' directory so
/// that the one directory fsync that makes a rename durable covers both of its names. Persist
/// writes and deletes parts at the same steady rate, so with recycling the store stops
/// allocating and freeing an inode per object. That matters on ext4 without a journal,
/// where every inode allocation walks past each inode freed in the last few seconds:
/// the cost of a create grows with the delete rate and was the blob-store's largest CPU
/// cost under load. Readers register the path they open (`openForReading`, `get`), and
/// a file that is open is unlinked rather than recycled, so no reader ever sees another
/// object's bytes.
///
/// Only objects stored directly in the root (every key up to `FileBlobPath.maxComponent`
/// escaped bytes) take part; longer keys live in chunk directories and use plain files.
///
/// One process owns a root at a time (the blob-store server, or an embedded user); on
/// open it removes temporary files and spares left by an earlier process.
public final class FileBlob: Blob {
    public let root: String
    private let spares: Mutex<FileBlobSpares>
    /// Paths open for reading in this process, with how many times each is open.
    private let readers = Mutex<[String: Int]>([:])

    /// Opens (creating if needed) the store at `root`. At most `maxSpares` deleted files
    /// are kept for reuse (0 turns recycling off).
    public init(root: String, maxSpares: Int = FileBlobSpares.defaultCapacity) throws(StorageError) {
        let trimmed = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        self.root = trimmed
        self.spares = Mutex(FileBlobSpares(capacity: maxSpares))
        let created = try Posix.makeDirectories(trimmed)
        if let first = created.first { try Posix.syncDirectory(Posix.parentDirectory(first)) }
        try removeStaleTemporaries(trimmed)
        try removeSpares()
    }

    public func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        let path = root + "/" + FileBlobPath.relativePath(for: key)
        return try await BlockingIO.run { () throws(StorageError) -> [UInt8]? in
            try self.whileRegistered(path) { () throws(StorageError) -> [UInt8]? in
                guard let fd = try Posix.openFile(path, O_RDONLY, missingOK: true) else { return nil }
                defer { Posix.closeFile(fd) }
                return try Posix.readAll(fd, path: path)
            }
        }
    }

    /// Opens object `key` for reading; nil if there is none. While the returned file is
    /// alive its bytes stay those of the object as it was when opened, whatever happens
    /// to the key meanwhile (a delete or overwrite leaves it to its reader).
    public func openForReading(_ key: String) async throws(StorageError) -> FileBlobOpenFile? {
        let path = root + "/" + FileBlobPath.relativePath(for: key)
        return try await BlockingIO.run { () throws(StorageError) -> FileBlobOpenFile? in
            self.register(path)
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            if fd < 0 {
                let code = errno
                self.unregister(path)
                // A missing directory on a long key's path is as absent as a missing file.
                if code == ENOENT || code == ENOTDIR { return nil }
                throw Posix.error("open", path, code, determinacy: .determinate)
            }
            var st = stat()
            guard fstat(fd, &st) == 0 else {
                let code = errno
                Posix.closeFile(fd)
                self.unregister(path)
                throw Posix.error("fstat", path, code, determinacy: .determinate)
            }
            guard (st.st_mode & S_IFMT) == S_IFREG else {
                Posix.closeFile(fd)
                self.unregister(path)
                return nil
            }
            return FileBlobOpenFile(path: path, fd: fd, status: st) { self.unregister(path) }
        }
    }

    public func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        let relative = FileBlobPath.relativePath(for: key)
        let path = root + "/" + relative
        let root = self.root
        try await BlockingIO.run { () throws(StorageError) in
            let dir = Posix.parentDirectory(path)
            if dir != root {
                let created = try Posix.makeDirectories(dir)
                // New directories are entries in their parents: make those durable too.
                for d in created.reversed() { try Posix.syncDirectory(Posix.parentDirectory(d)) }
            }
            let (temp, fd) = try self.openTemporary(in: dir)
            do throws(StorageError) {
                try Posix.writeAll(fd, value, path: temp)
                Failpoints.hit(.blobBeforeFsync)
                try Posix.sync(fd, path: temp)
                Posix.closeFile(fd)
            } catch {
                Posix.closeFile(fd)
                _ = try? Posix.unlinkFile(temp)
                throw StorageError(error.code, .determinate, error.message)
            }
            do throws(StorageError) {
                try Posix.renameFile(temp, path)
            } catch {
                _ = try? Posix.unlinkFile(temp)
                throw error
            }
            try Posix.syncDirectory(dir)
        }
    }

    public func delete(_ key: String) async throws(StorageError) -> Int? {
        let path = root + "/" + FileBlobPath.relativePath(for: key)
        let dir = Posix.parentDirectory(path)
        let root = self.root
        return try await BlockingIO.run { () throws(StorageError) -> Int? in
            guard let size = try Posix.sizeIfExists(path) else { return nil }
            let spare = dir == root ? self.spares.withLock { $0.nameForNext() } : nil
            // Recycle only a file nobody has open, deciding under the readers' lock so
            // that no one can open it between the check and the rename.
            let recycled = try self.readers.withLock { (open) throws(StorageError) -> Bool? in
                if let spare, open[path] == nil {
                    guard try Posix.renameIfExists(path, root + "/" + spare) else { return nil }
                    return true
                }
                guard try Posix.unlinkFile(path) else { return nil }
                return false
            }
            guard let recycled else { return nil }
            try Posix.syncDirectory(dir)
            if recycled, let spare {
                // Only now, with the removal durable, may the inode hold another object.
                let sparePath = root + "/" + spare
                if (try? Posix.truncatePath(sparePath)) != nil {
                    self.spares.withLock { $0.add(spare) }
                } else {
                    _ = try? Posix.unlinkFile(sparePath)
                }
            }
            return size
        }
    }

    /// A new file to write an object into, open for writing and empty: a recycled spare
    /// when the object lives in the root (renamed to the object's name once written, in
    /// the same directory), or else a newly created temporary file in `dir`.
    private func openTemporary(in dir: String) throws(StorageError) -> (String, Int32) {
        if dir == root, let spare = spares.withLock({ $0.take() }) {
            let sparePath = root + "/" + spare
            if let fd = try? Posix.openFile(sparePath, O_WRONLY | O_TRUNC) { return (sparePath, fd) }
            _ = try? Posix.unlinkFile(sparePath)
        }
        var suffix = SystemRandomNumberGenerator()
        let temp = dir + "/" + FileBlobPath.temporaryPrefix + String(suffix.next() as UInt64, radix: 16)
        guard let fd = try Posix.openFile(temp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644) else {
            throw .determinate(.io, "could not create \(temp)")
        }
        return (temp, fd)
    }

    /// Deleted files waiting to be reused.
    public var spareCount: Int { spares.withLock { $0.count } }

    private func register(_ path: String) {
        readers.withLock { $0[path, default: 0] += 1 }
    }

    private func unregister(_ path: String) {
        readers.withLock { open in
            guard let n = open[path] else { return }
            open[path] = n > 1 ? n - 1 : nil
        }
    }

    private func whileRegistered<T>(_ path: String, _ body: () throws(StorageError) -> T) throws(StorageError) -> T {
        register(path)
        defer { unregister(path) }
        return try body()
    }

    public func list(prefix: String) async throws(StorageError) -> [BlobMetadata] {
        let root = self.root
        let wanted = Array(prefix.utf8)
        return try await BlockingIO.run { () throws(StorageError) -> [BlobMetadata] in
            var out: [(ByteKey, Int)] = []
            try Self.walk(root, escapedSoFar: "") { (escaped, path) throws(StorageError) in
                guard let key = FileBlobPath.key(fromEscaped: escaped) else { return }
                guard key.starts(with: wanted) else { return }
                guard let size = try Posix.sizeIfExists(path) else { return }  // deleted meanwhile
                out.append((ByteKey(utf8: key), size))
            }
            out.sort { $0.0 < $1.0 }
            return out.map { BlobMetadata(key: $0.0.string, sizeBytes: $0.1) }
        }
    }

    /// Visits every object file below `dir`, passing its full escaped name.
    private static func walk(
        _ dir: String, escapedSoFar: String, _ visit: (String, String) throws(StorageError) -> Void
    ) throws(StorageError) {
        guard let entries = try Posix.listDirectory(dir) else { return }
        for entry in entries {
            // Temporary files and spares: never objects.
            if entry.name.hasPrefix(".") { continue }
            if entry.isDirectory {
                guard entry.name.hasSuffix(FileBlobPath.continuationSuffix) else { continue }
                let chunk = String(entry.name.dropLast(FileBlobPath.continuationSuffix.count))
                try walk(dir + "/" + entry.name, escapedSoFar: escapedSoFar + chunk, visit)
            } else {
                try visit(escapedSoFar + entry.name, dir + "/" + entry.name)
            }
        }
    }

    private func removeStaleTemporaries(_ dir: String) throws(StorageError) {
        guard let entries = try Posix.listDirectory(dir) else { return }
        for entry in entries {
            let path = dir + "/" + entry.name
            if entry.name.hasPrefix(FileBlobPath.temporaryPrefix) {
                try Posix.unlinkFile(path)
            } else if entry.isDirectory, entry.name.hasSuffix(FileBlobPath.continuationSuffix) {
                try removeStaleTemporaries(path)
            }
        }
    }

    /// Removes the spares of an earlier process (they are never reused: after a crash a
    /// spare's rename may not have been durable). A spare that shares its inode with an
    /// object's name is left alone: that happens only when a crash caught a rename half
    /// written to disk, and unlinking either name could then free the object's inode.
    private func removeSpares() throws(StorageError) {
        guard let entries = try Posix.listDirectory(root) else { return }
        let objectInodes = Set(entries.filter { !$0.isDirectory && !$0.name.hasPrefix(".") }.map(\.inode))
        for entry in entries where !entry.isDirectory && entry.name.hasPrefix(FileBlobPath.sparePrefix) {
            if objectInodes.contains(entry.inode) { continue }
            try Posix.unlinkFile(root + "/" + entry.name)
        }
    }
}

/// The mapping from blob keys to relative file paths used by `FileBlob`.
///
/// Each UTF-8 byte of the key that is an ASCII lowercase letter, digit, `-` or `_` stays
/// as it is; every other byte (including `/`, `.`, NUL, uppercase letters, `%`) becomes
/// `%` and two uppercase hex digits, and the result is prefixed with `@` (which escaping
/// never produces), so the empty key has a name too. The name therefore never contains
/// `/`, never is `.` or `..`, never starts with the temporary-file prefix, and is the same
/// on case-insensitive file systems; distinct keys give distinct names. Names longer than
/// `maxComponent` are cut into pieces: every piece but the last becomes a directory named
/// piece + `+` (a character escaped names never contain), the last the file name.
public enum FileBlobPath {
    public static let maxComponent = 200
    static let temporaryPrefix = ".tmp-"
    /// The name prefix of deleted files waiting to be reused (escaped names never start
    /// with `.`).
    static let sparePrefix = ".spare-"
    static let continuationSuffix = "+"
    static let namePrefix = UInt8(ascii: "@")

    /// The path of `key`'s file relative to the root.
    public static func relativePath(for key: String) -> String {
        let escaped = escape(key)
        guard escaped.count > maxComponent else { return escaped }
        var parts: [String] = []
        var rest = Substring(escaped)
        while rest.count > maxComponent {
            parts.append(String(rest.prefix(maxComponent)) + continuationSuffix)
            rest = rest.dropFirst(maxComponent)
        }
        parts.append(String(rest))
        return parts.joined(separator: "/")
    }

    public static func escape(_ key: String) -> String {
        var out: [UInt8] = [namePrefix]
        out.reserveCapacity(key.utf8.count + 1)
        let hex = Array("0123456789ABCDEF".utf8)
        for b in key.utf8 {
            if isVerbatim(b) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(b >> 4)])
                out.append(hex[Int(b & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The key bytes for an escaped name, or nil if the name is not one `escape` makes.
    static func key(fromEscaped name: String) -> [UInt8]? {
        guard name.utf8.first == namePrefix else { return nil }
        var out: [UInt8] = []
        var it = name.utf8.dropFirst().makeIterator()
        while let c = it.next() {
            if isVerbatim(c) {
                out.append(c)
                continue
            }
            guard c == UInt8(ascii: "%"), let h = it.next(), let l = it.next(),
                let hv = hexValue(h), let lv = hexValue(l)
            else { return nil }
            let b = hv << 4 | lv
            guard !isVerbatim(b) else { return nil }  // not canonical
            out.append(b)
        }
        guard String(validating: out, as: UTF8.self) != nil else { return nil }
        return out
    }

    static func isVerbatim(_ b: UInt8) -> Bool {
        (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z")) || (b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9"))
            || b == UInt8(ascii: "-") || b == UInt8(ascii: "_")
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}

/// The pool of recycled files of a `FileBlob`: spare names in its root, reused most
/// recently deleted first (its blocks were freed last, so that is all the same to the
/// disk). Pure bookkeeping; `FileBlob` does the renames.
public struct FileBlobSpares: Sendable {
    /// How many spares a store keeps by default: enough to cover the parts a busy shard
    /// set deletes between writes, few enough that empty inodes do not pile up.
    public static let defaultCapacity = 1024

    public let capacity: Int
    private var names: [String] = []
    private var next: UInt64 = 0

    public init(capacity: Int) { self.capacity = max(0, capacity) }

    public var count: Int { names.count }

    /// A fresh name for a file about to become a spare, or nil when the pool is full (the
    /// file should be unlinked instead).
    public mutating func nameForNext() -> String? {
        guard names.count < capacity else { return nil }
        next += 1
        return FileBlobPath.sparePrefix + String(next, radix: 16)
    }

    /// Records that the file `name` (from `nameForNext`) is now a spare.
    public mutating func add(_ name: String) {
        names.append(name)
    }

    /// Takes a spare to rewrite, if there is one.
    public mutating func take() -> String? {
        names.popLast()
    }
}

/// An object's file opened by `FileBlob.openForReading`: one descriptor, its `stat` at
/// open, and the path it was opened under. The store does not recycle the file while
/// this is alive; the descriptor is closed when the last reference goes.
public final class FileBlobOpenFile: Sendable {
    public let path: String
    public let descriptor: Int32
    public let inode: UInt64
    public let size: Int
    public let modifiedNanos: Int64
    private let release: @Sendable () -> Void

    init(path: String, fd: Int32, status st: stat, release: @escaping @Sendable () -> Void) {
        self.path = path
        self.descriptor = fd
        self.inode = UInt64(st.st_ino)
        self.size = Int(st.st_size)
        self.modifiedNanos = Int64(st.st_mtim.tv_sec) * 1_000_000_000 + Int64(st.st_mtim.tv_nsec)
        self.release = release
    }

    deinit {
        Posix.closeFile(descriptor)
        release()
    }
}
