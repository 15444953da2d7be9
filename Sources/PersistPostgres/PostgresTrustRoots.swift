#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import NIOSSL
import PersistCore

/// The extra CA certificates of a `verify-full` location (`sslrootcert=`): read once when
/// the location is opened and trusted besides the system's roots.
///
/// Only the path and what is wrong with the file ever appear in messages, never its
/// contents.
enum PostgresTrustRoots {
    /// 1 MiB: far more than any CA bundle, so a wrong path (a disk image, a device) fails
    /// plainly instead of filling memory.
    static let sizeLimit = 1 << 20

    /// Why the file's bytes could not be had.
    enum ReadFailure: Error, Hashable {
        /// Nothing at the path (or a path component is not a directory).
        case missing
        /// Something other than a regular file: a directory, a device, a pipe.
        case notARegularFile
        /// It exists but cannot be opened or read; `reason` is the system's.
        case unreadable(reason: String)
        /// It holds more than `limit` bytes.
        case tooLarge(limit: Int)
    }

    /// The certificates of the PEM file at `path`.
    ///
    /// - Throws: a determinate `invalidArgument` naming the file and the problem: it is
    ///   missing, unreadable, too large, not PEM, or holds no certificate.
    static func load(_ path: String, limit: Int = sizeLimit) throws(StorageError) -> [NIOSSLCertificate] {
        let bytes: [UInt8]
        do {
            bytes = try read(path, limit: limit)
        } catch {
            throw refusal(path, reading: error)
        }
        return try certificates(fromPEM: bytes, path: path)
    }

    /// The certificates in `bytes`, a PEM file read from `path` (named in errors only).
    static func certificates(fromPEM bytes: [UInt8], path: String) throws(StorageError) -> [NIOSSLCertificate] {
        // The parser fails (naming no content) when it finds no certificate at all.
        let certificates = (try? NIOSSLCertificate.fromPEMBytes(bytes)) ?? []
        guard !certificates.isEmpty else {
            throw refusal(path, "holds no PEM certificate that can be read (-----BEGIN CERTIFICATE----- blocks)")
        }
        return certificates
    }

    /// The error for a file that cannot be used.
    static func refusal(_ path: String, reading failure: ReadFailure) -> StorageError {
        switch failure {
        case .missing: return refusal(path, "does not exist")
        case .notARegularFile: return refusal(path, "is not a regular file")
        case .unreadable(let reason): return refusal(path, "cannot be read: \(reason)")
        case .tooLarge(let limit): return refusal(path, "is larger than \(limit) bytes, too large for a PEM file of CA certificates")
        }
    }

    static func refusal(_ path: String, _ problem: String) -> StorageError {
        .determinate(.invalidArgument, "the PostgreSQL CA file \(path) (sslrootcert=) \(problem)")
    }

    /// The whole contents of the regular file at `path`, at most `limit` bytes.
    static func read(_ path: String, limit: Int) throws(ReadFailure) -> [UInt8] {
        // Non-blocking so that a FIFO at the path fails below instead of waiting for a writer.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else {
            let code = errno
            if code == ENOENT || code == ENOTDIR { throw .missing }
            throw .unreadable(reason: String(cString: strerror(code)))
        }
        defer { close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { throw .unreadable(reason: String(cString: strerror(errno))) }
        guard (status.st_mode & S_IFMT) == S_IFREG else { throw .notARegularFile }
        // One byte more than allowed tells a file of exactly `limit` bytes from a longer one.
        var bytes = [UInt8](repeating: 0, count: limit + 1)
        var filled = 0
        while filled < bytes.count {
            let n = bytes.withUnsafeMutableBytes { buffer in
                systemRead(fd, buffer.baseAddress.map { $0 + filled }, buffer.count - filled)
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw .unreadable(reason: String(cString: strerror(errno)))
            }
            if n == 0 { break }
            filled += n
        }
        guard filled <= limit else { throw .tooLarge(limit: limit) }
        return Array(bytes[..<filled])
    }
}

/// `read(2)`, out of reach of `PostgresTrustRoots.read`'s own name.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}
