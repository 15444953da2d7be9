#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Foundation
import PersistConformance

/// A failure of the benchmark tool itself (a peer that would not start, a figure that
/// could not be parsed, a check that found the run wrong). Printed as its message.
struct BenchError: Error, CustomStringConvertible {
    var message: String

    init(_ message: String) { self.message = message }

    var description: String { message }
}

/// What a finished child process left behind.
struct CommandResult {
    var status: Int32
    /// Standard output and standard error, interleaved as written.
    var output: String

    var succeeded: Bool { status == 0 }
}

/// Runs external programs to completion, blocking the calling thread.
///
/// Built on `posix_spawn` and `waitpid` rather than Foundation's `Process`: a program
/// such as `pg_ctl start` leaves a daemon behind that inherits what its parent had open,
/// and `Process` could then wait for the daemon instead of the program. Output goes to
/// an unlinked scratch file for the same reason (a daemon holding a pipe's write end
/// would keep a reader waiting for end-of-file).
enum Subprocess {
    /// Runs `path` with `arguments` and returns its exit status (128 + signal number if
    /// it was killed) and its combined output. Throws only when it cannot be started.
    static func run(_ path: String, _ arguments: [String]) throws(BenchError) -> CommandResult {
        let tmp = NSTemporaryDirectory()
        var template = Array("\(tmp.hasSuffix("/") ? tmp : tmp + "/")persist-bench-out-XXXXXX".utf8CString)
        let outputFD = template.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return -1 }
            // Close-on-exec: the child gets the file only as its stdout and stderr.
            let fd = mkstemp(base)
            if fd >= 0 {
                unlink(base)
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            }
            return fd
        }
        guard outputFD >= 0 else { throw BenchError("cannot create a scratch file: \(System.errnoText())") }
        defer { close(outputFD) }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 1)
        posix_spawn_file_actions_adddup2(&actions, outputFD, 2)

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let environment = ProcessInfo.processInfo.environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in environment { free(pointer) }
        }
        var pid: pid_t = 0
        // Default signal dispositions and an empty mask in the child (pgbench's -T timer is
        // SIGALRM, which the calling dispatch worker blocks).
        let spawned = SpawnedServer.withDefaultSignals { attributes in
            posix_spawn(&pid, path, &actions, attributes, argv, environment)
        }
        guard spawned == 0 else {
            throw BenchError("cannot run \(path): \(String(cString: strerror(spawned)))")
        }

        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw BenchError("waitpid for \(path): \(System.errnoText())") }
        }
        // The wait status macros are not imported: the low 7 bits are the terminating
        // signal (0 for a normal exit), and the exit code sits in the next byte.
        let signalNumber = status & 0x7f
        let exitStatus = signalNumber == 0 ? (status >> 8) & 0xff : 128 + signalNumber
        return CommandResult(status: exitStatus, output: readAll(outputFD))
    }

    private static func readAll(_ fd: Int32) -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var offset: off_t = 0
        while true {
            let n = chunk.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[0..<n]
            offset += off_t(n)
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Like `run`, but a non-zero exit status is an error that quotes the output's tail.
    @discardableResult
    static func check(_ path: String, _ arguments: [String], what: String) throws(BenchError) -> String {
        let result = try run(path, arguments)
        guard result.succeeded else {
            let tail = result.output.split(separator: "\n").suffix(15).joined(separator: "\n")
            throw BenchError("\(what) failed (exit status \(result.status)):\n\(tail)")
        }
        return result.output
    }

    /// The first executable named `name` in the directories of `$PATH`, if any.
    static func findInPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
