#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Crypto
import NIOCore
import NIOPosix
import PersistCore
import PersistLocation

/// An object's file, open for a GetObject or HeadObject, read piece by piece on NIO's
/// blocking-I/O pool as the answer is sent.
///
/// Everything comes from one descriptor: `info` (from `fstat`) and every byte read
/// describe the same file even while a writer renames a new version over the key, and a
/// version deleted meanwhile stays readable until the last reference goes (`FileBlob`
/// never changes a file in place, and does not recycle a file that is open for reading).
/// The descriptor is closed when the last reference is dropped, whatever path the answer
/// took.
final class BlobStoreObjectFile: Sendable {
    let info: BlobStoreFileInfo
    private let file: FileBlobOpenFile
    var path: String { file.path }
    private var fd: Int32 { file.descriptor }

    private init(_ file: FileBlobOpenFile) {
        self.file = file
        self.info = BlobStoreFileInfo(inode: file.inode, size: file.size, modifiedNanos: file.modifiedNanos)
    }

    /// Opens the file of object `key` in `bucket`; nil if there is none. Errors are
    /// determinate (`io`, or `unavailable` when the I/O pool is shut down).
    static func open(_ key: String, in bucket: FileBlob) async throws(StorageError) -> BlobStoreObjectFile? {
        try await bucket.openForReading(key).map(BlobStoreObjectFile.init)
    }

    /// The bytes at `range` (within `info.size`), in one new buffer: one copy, from the
    /// page cache into the buffer that is sent. A file shorter than `info.size` says is a
    /// determinate `io` error.
    func read(_ range: Range<Int>) async throws(StorageError) -> ByteBuffer {
        let fd = self.fd
        let path = self.path
        return try await Self.blocking(path) { () throws(StorageError) -> ByteBuffer in
            var buffer = ByteBufferAllocator().buffer(capacity: range.count)
            try Self.read(fd, path: path, range, into: &buffer)
            return buffer
        }
    }

    /// The MD5 of the whole file, read in pieces through one reused buffer.
    func md5() async throws(StorageError) -> [UInt8] {
        let fd = self.fd
        let path = self.path
        let size = info.size
        return try await Self.blocking(path) { () throws(StorageError) -> [UInt8] in
            var md5 = Insecure.MD5()
            var buffer = ByteBufferAllocator().buffer(capacity: min(size, Self.pieceBytes))
            var offset = 0
            while offset < size {
                buffer.clear()
                let end = min(offset + Self.pieceBytes, size)
                try Self.read(fd, path: path, offset..<end, into: &buffer)
                buffer.withUnsafeReadableBytes { md5.update(bufferPointer: $0) }
                offset = end
            }
            return Array(md5.finalize())
        }
    }

    /// How much `md5()` reads at a time.
    static let pieceBytes = 1 << 20

    /// Appends the bytes at `range` of `fd` to `buffer`.
    private static func read(_ fd: Int32, path: String, _ range: Range<Int>, into buffer: inout ByteBuffer) throws(StorageError) {
        var offset = range.lowerBound
        while offset < range.upperBound {
            let wanted = range.upperBound - offset
            var code: Int32 = 0
            let n = buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: wanted) { space in
                let n = pread(fd, space.baseAddress, wanted, off_t(offset))
                if n < 0 { code = errno }
                return max(n, 0)
            }
            if code == EINTR { continue }
            if code != 0 { throw failure("read", path, code) }
            if n == 0 { throw .determinate(.io, "\(path) ended at \(offset) bytes, before the \(range.upperBound) it had") }
            offset += n
        }
    }

    /// Runs `work` on NIO's blocking-I/O pool.
    private static func blocking<T: Sendable>(
        _ path: String, _ work: @escaping @Sendable () throws(StorageError) -> T
    ) async throws(StorageError) -> T {
        let result: Result<T, StorageError>
        do {
            result = try await NIOThreadPool.singleton.runIfActive { Result { () throws(StorageError) in try work() } }
        } catch {
            throw .determinate(.unavailable, "cannot read \(path): \(error)")
        }
        return try result.get()
    }

    private static func failure(_ call: String, _ path: String, _ code: Int32) -> StorageError {
        .determinate(.io, "\(call) \(path): \(String(cString: strerror(code)))")
    }
}
