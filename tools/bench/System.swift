#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Small operating-system helpers: scratch directories, file ownership, loopback ports.
enum System {
    /// Creates a fresh, uniquely named directory `<parent>/<prefix>XXXXXX` and returns its
    /// path. The directory is readable and traversable by everyone (0755) so a peer
    /// running as another user (the PostgreSQL server) can reach directories below it.
    static func makeScratchDirectory(under parent: String, prefix: String) throws(BenchError) -> String {
        var template = Array("\(parent)/\(prefix)XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let base = buffer.baseAddress else { return false }
            return mkdtemp(base) != nil
        }
        guard made else { throw BenchError("cannot create a directory under \(parent): \(errnoText())") }
        let path = template.withUnsafeBufferPointer { buffer in
            buffer.baseAddress.map { String(cString: $0) } ?? ""
        }
        guard chmod(path, 0o755) == 0 else { throw BenchError("chmod \(path): \(errnoText())") }
        return path
    }

    /// Creates `path` (and its parents) if needed.
    static func makeDirectory(_ path: String) throws(BenchError) {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw BenchError("cannot create directory \(path): \(error)")
        }
    }

    /// Removes `path` and everything below it; a missing path is not an error.
    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Whether this process runs as the superuser.
    static var isRoot: Bool { geteuid() == 0 }

    /// Gives `path` to the account `user` (its primary group too).
    static func chown(_ path: String, to user: String) throws(BenchError) {
        guard let entry = getpwnam(user) else { throw BenchError("no user named \(user) on this machine") }
        let uid = entry.pointee.pw_uid
        let gid = entry.pointee.pw_gid
        guard platformChown(path, uid, gid) == 0 else {
            throw BenchError("chown \(path) to \(user): \(errnoText())")
        }
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago: the kernel picks it for a
    /// socket bound to port 0, which is then closed. Another process could take it in
    /// between, which a server start would report as an error.
    static func freeLoopbackPort() throws(BenchError) -> Int {
        #if canImport(Glibc) || canImport(Musl)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw BenchError("socket: \(errnoText())") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw BenchError("bind 127.0.0.1:0: \(errnoText())") }
        var actual = sockaddr_in()
        var actualLength = length
        let named = withUnsafeMutablePointer(to: &actual) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &actualLength) }
        }
        guard named == 0 else { throw BenchError("getsockname: \(errnoText())") }
        return Int(UInt16(bigEndian: actual.sin_port))
    }

    /// The executable `name` built in the same directory as this one (a server product
    /// of this package). `neededBy` names what wants it, for the error when it is missing.
    static func siblingExecutable(_ name: String, neededBy: String) throws(BenchError) -> String {
        let ownPath =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? Bundle.main.executablePath ?? CommandLine.arguments.first ?? "."
        let path = (ownPath as NSString).deletingLastPathComponent + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw BenchError(
                "\(neededBy) need the \(name) server at \(path), which is not built; "
                    + "build it with swift build -c release --product \(name) (or without -c release for "
                    + "a debug persist-bench)")
        }
        return path
    }

    /// Creates `path` holding `text`, readable by this account only (0600).
    static func writePrivateFile(_ path: String, _ text: String) throws(BenchError) {
        let created = FileManager.default.createFile(
            atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: 0o600])
        guard created else { throw BenchError("cannot write \(path)") }
    }

    /// `bytes` random bytes as hex, for generated credentials and tokens.
    static func randomHex(_ bytes: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<bytes).map { _ in
            let byte = UInt8.random(in: 0...255, using: &generator)
            return (byte < 16 ? "0" : "") + String(byte, radix: 16)
        }.joined()
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

private func platformChown(_ path: String, _ uid: uid_t, _ gid: gid_t) -> Int32 {
    chown(path, uid, gid)
}
