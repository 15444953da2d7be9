#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// Small operating-system helpers: scratch directories, sibling executables, private files.
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
