#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import PersistCore

/// A `Blob` stored as one file per key under a root directory.
///
/// `set` writes a temporary file, fsyncs it, renames it over the final name and fsyncs
/// the directory, so an object is either absent, the old one, or entirely the new one,
/// and is durable when `set` returns. Keys map to file names through `FileBlobPath`,
/// which is injective and never leaves the root, whatever the key holds.
///
/// One process owns a root at a time (the blob-store server, or an embedded user); on
/// open it removes temporary files left by a crashed writer.
public final class FileBlob: Blob {
    public let root: String

    /// Opens (creating if needed) the store at `root`.
    public init(root: String) throws(StorageError) {
        let trimmed = root.count > 1 && root.hasSuffix("/") ? String(root.dropLast()) : root
        self.root = trimmed
        let created = try Posix.makeDirectories(trimmed)
        if let first = created.first { try Posix.syncDirectory(Posix.parentDirectory(first)) }
        try removeStaleTemporaries(trimmed)
    }

    public func get(_ key: String) async throws(StorageError) -> [UInt8]? {
        let path = root + "/" + FileBlobPath.relativePath(for: key)
        return try await BlockingIO.run { () throws(StorageError) -> [UInt8]? in
            guard let fd = try Posix.openFile(path, O_RDONLY, missingOK: true) else { return nil }
            defer { Posix.closeFile(fd) }
            return try Posix.readAll(fd, path: path)
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
            var suffix = SystemRandomNumberGenerator()
            let temp = dir + "/" + FileBlobPath.temporaryPrefix + String(suffix.next() as UInt64, radix: 16)
            guard let fd = try Posix.openFile(temp, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644) else {
                throw .determinate(.io, "could not create \(temp)")
            }
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
        return try await BlockingIO.run { () throws(StorageError) -> Int? in
            guard let size = try Posix.sizeIfExists(path) else { return nil }
            guard try Posix.unlinkFile(path) else { return nil }
            try Posix.syncDirectory(Posix.parentDirectory(path))
            return size
        }
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
            if entry.name.hasPrefix(FileBlobPath.temporaryPrefix) { continue }
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
            } else if entry.isDirectory {
                try removeStaleTemporaries(path)
            }
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
