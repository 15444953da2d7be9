#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import NIOPosix
import PersistCore

/// Thin wrappers over the POSIX file calls the disk backends need. Each failure becomes
/// a `StorageError` naming the call, the path and the errno text. Retries EINTR.
enum Posix {
    static func error(_ call: String, _ path: String, _ err: Int32 = errno, determinacy: StorageError.Determinacy)
        -> StorageError
    {
        let text = String(cString: strerror(err))
        return StorageError(.io, determinacy, "\(call)(\(path)): \(text) (errno \(err))")
    }

    /// Opens `path`; returns nil for ENOENT when `missingOK`.
    static func openFile(_ path: String, _ flags: Int32, mode: mode_t = 0o644, missingOK: Bool = false)
        throws(StorageError) -> Int32?
    {
        while true {
            let fd = open(path, flags | O_CLOEXEC, mode)
            if fd >= 0 { return fd }
            let e = errno
            if e == EINTR { continue }
            if e == ENOENT && missingOK { return nil }
            throw error("open", path, e, determinacy: .determinate)
        }
    }

    static func closeFile(_ fd: Int32) { _ = close(fd) }

    /// Writes all of `bytes` at `offset` (or at the current position when nil).
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, offset: Int64? = nil, path: String)
        throws(StorageError)
    {
        var done = 0
        while done < bytes.count {
            guard let base = bytes.baseAddress else { return }
            let n: Int
            if let offset {
                n = pwrite(fd, base + done, bytes.count - done, off_t(offset) + off_t(done))
            } else {
                n = write(fd, base + done, bytes.count - done)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw error("write", path, determinacy: .indeterminate)
            }
            done += n
        }
    }

    /// Writes all of `bytes` at `offset` (or at the current position when nil).
    static func writeAll(_ fd: Int32, _ bytes: [UInt8], offset: Int64? = nil, path: String) throws(StorageError) {
        let result: Result<Void, StorageError> = bytes.withUnsafeBytes { buf in
            Result { () throws(StorageError) in try writeAll(fd, buf, offset: offset, path: path) }
        }
        try result.get()
    }

    /// Reads the whole of an open file.
    static func readAll(_ fd: Int32, path: String) throws(StorageError) -> [UInt8] {
        let size = try fileSize(fd, path: path)
        var out = [UInt8](repeating: 0, count: size)
        var done = 0
        var failure: StorageError?
        out.withUnsafeMutableBytes { buf in
            while done < size, let base = buf.baseAddress {
                let n = pread(fd, base + done, size - done, off_t(done))
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = error("read", path, determinacy: .determinate)
                    return
                }
                if n == 0 { break }  // shrank underneath us
                done += n
            }
        }
        if let failure { throw failure }
        if done < size { out.removeSubrange(done...) }
        return out
    }

    static func fileSize(_ fd: Int32, path: String) throws(StorageError) -> Int {
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw error("fstat", path, determinacy: .determinate) }
        return Int(st.st_size)
    }

    /// `fsync`, or `fdatasync` when `dataOnly`. A failed sync leaves the file's durable
    /// contents unknown, so the error is indeterminate.
    static func sync(_ fd: Int32, dataOnly: Bool = false, path: String) throws(StorageError) {
        while true {
            #if canImport(Darwin)
            let rc = fsync(fd)
            #else
            let rc = dataOnly ? fdatasync(fd) : fsync(fd)
            #endif
            if rc == 0 { return }
            if errno == EINTR { continue }
            throw error(dataOnly ? "fdatasync" : "fsync", path, determinacy: .indeterminate)
        }
    }

    /// Makes the entries of a directory (creations, renames, removals) durable.
    static func syncDirectory(_ path: String) throws(StorageError) {
        guard let fd = try openFile(path, O_RDONLY | O_DIRECTORY) else { return }
        defer { closeFile(fd) }
        try sync(fd, path: path)
    }

    static func renameFile(_ from: String, _ to: String) throws(StorageError) {
        guard rename(from, to) == 0 else {
            throw error("rename", "\(from) -> \(to)", determinacy: .indeterminate)
        }
    }

    /// Renames a file; false if `from` did not exist.
    static func renameIfExists(_ from: String, _ to: String) throws(StorageError) -> Bool {
        if rename(from, to) == 0 { return true }
        if errno == ENOENT { return false }
        throw error("rename", "\(from) -> \(to)", determinacy: .indeterminate)
    }

    /// Cuts the file at `path` to zero bytes, freeing its blocks.
    static func truncatePath(_ path: String) throws(StorageError) {
        guard truncate(path, 0) == 0 else { throw error("truncate", path, determinacy: .indeterminate) }
    }

    /// Removes a file; false if it did not exist.
    @discardableResult
    static func unlinkFile(_ path: String) throws(StorageError) -> Bool {
        if unlink(path) == 0 { return true }
        if errno == ENOENT { return false }
        throw error("unlink", path, determinacy: .indeterminate)
    }

    /// Size of the file at `path`, or nil if there is none.
    static func sizeIfExists(_ path: String) throws(StorageError) -> Int? {
        var st = stat()
        if stat(path, &st) == 0 { return Int(st.st_size) }
        if errno == ENOENT || errno == ENOTDIR { return nil }
        throw error("stat", path, determinacy: .determinate)
    }

    static func isDirectory(_ path: String) -> Bool {
        var st = stat()
        return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
    }

    /// Creates `path` and any missing parents. Returns the directories it created,
    /// outermost first, so callers can make the new entries durable.
    @discardableResult
    static func makeDirectories(_ path: String) throws(StorageError) -> [String] {
        if isDirectory(path) { return [] }
        var created: [String] = []
        let parent = parentDirectory(path)
        if parent != path { created += try makeDirectories(parent) }
        if mkdir(path, 0o755) != 0 && errno != EEXIST {
            throw error("mkdir", path, determinacy: .determinate)
        }
        created.append(path)
        return created
    }

    static func parentDirectory(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        if slash == path.startIndex { return "/" }
        return String(path[..<slash])
    }

    /// The names in a directory (without `.` and `..`), or nil if it does not exist.
    static func listDirectory(_ path: String) throws(StorageError) -> [(name: String, isDirectory: Bool, inode: UInt64)]? {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return nil }
            throw error("opendir", path, determinacy: .determinate)
        }
        defer { closedir(dir) }
        var out: [(String, Bool, UInt64)] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name == "." || name == ".." { continue }
            let type = entry.pointee.d_type
            let isDir: Bool
            if type == UInt8(DT_DIR) {
                isDir = true
            } else if type == UInt8(DT_UNKNOWN) {
                isDir = isDirectory(path + "/" + name)
            } else {
                isDir = false
            }
            out.append((name, isDir, UInt64(entry.pointee.d_ino)))
        }
        return out
    }

    /// Takes an exclusive advisory lock on `path` (created if missing) until the
    /// descriptor is closed. Fails if someone else holds it for longer than `patience`.
    ///
    /// The short wait matters: a lock belongs to an open file description, and a child
    /// process spawned by another thread holds a copy of every descriptor between its
    /// fork and exec, so a lock just released by `close` can linger for a moment.
    static func lockFile(_ path: String, patience: Duration = .seconds(2)) throws(StorageError) -> Int32 {
        guard let fd = try openFile(path, O_RDWR | O_CREAT, mode: 0o600) else {
            throw error("open", path, ENOENT, determinacy: .determinate)
        }
        let deadline = ContinuousClock.now + patience
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            let e = errno
            if e == EINTR { continue }
            if e == EWOULDBLOCK && ContinuousClock.now < deadline {
                usleep(5_000)
                continue
            }
            closeFile(fd)
            if e == EWOULDBLOCK {
                throw .determinate(.rejected, "\(path) is locked: another process has this directory open")
            }
            throw error("flock", path, e, determinacy: .determinate)
        }
        return fd
    }

    static func truncateFile(_ fd: Int32, to length: Int, path: String) throws(StorageError) {
        guard ftruncate(fd, off_t(length)) == 0 else {
            throw error("ftruncate", path, determinacy: .indeterminate)
        }
    }
}

/// Runs blocking file-system work on threads outside Swift's cooperative pool, so a slow
/// disk never starves the async tasks of a server.
///
/// The pool has its own threads, more than there are cores: each `FileBlob.set` spends
/// most of its time waiting in `fsync`, and a pool the size of the core count (what a
/// concurrent Dispatch queue gives on Linux) let two slow flushes hold up every other
/// request, including reads served from the page cache.
enum BlockingIO {
    /// Threads in the pool; enough for the flushes a busy blob-store has in flight.
    static let threadCount = 16

    private static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: threadCount)
        pool.start()
        return pool
    }()

    static func run<T: Sendable>(_ work: @escaping @Sendable () throws(StorageError) -> T)
        async throws(StorageError) -> T
    {
        let result: Result<T, StorageError>
        do {
            result = try await pool.runIfActive { Result { () throws(StorageError) in try work() } }
        } catch {
            // The pool is never shut down, so this means the process is going away.
            throw .determinate(.unavailable, "the file I/O thread pool is not running: \(error)")
        }
        return try result.get()
    }
}
