#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A program a test runs to completion for its exit status and output: a Python script,
/// the aws CLI, a server's `--help`. Started the way `SpawnedServer` starts servers
/// (posix_spawn, stdin from /dev/null, stdout and stderr together), and waited for on a
/// thread of its own, so Swift's cooperative threads are never blocked.
public enum ChildProgram {
    /// What a finished program left behind.
    public struct Outcome: Sendable {
        /// The exit status, or minus the signal that ended the program.
        public var status: Int32
        /// Everything it wrote to stdout and stderr, interleaved as written.
        public var output: String
    }

    /// Runs `executable` (an absolute path; use `/usr/bin/env` to search `PATH`) with
    /// `arguments` until it exits. `environment` replaces this process's environment when
    /// given.
    ///
    /// - Parameter timeout: a hang guard only: a program still running then is killed and
    ///   the run fails with its output so far.
    /// - Throws: `ConformanceFailure` if the program cannot be started or hangs.
    public static func run(
        executable: String, arguments: [String], environment: [String: String]? = nil, timeout: Duration = .seconds(600)
    ) async throws -> Outcome {
        let outputPath = NSTemporaryDirectory() + "child-program-\(UUID().uuidString).out"
        defer { unlink(outputPath) }
        let pid = try SpawnedServer.spawn(executable, arguments, logPath: outputPath, environment: environment)
        let status = try await SpawnedServer.offThread { () throws -> Int32 in
            if let status = SpawnedServer.reap(pid, by: ContinuousClock.now + timeout) { return status }
            kill(pid, SIGKILL)
            _ = SpawnedServer.reap(pid, by: ContinuousClock.now + .seconds(60))
            throw ConformanceFailure(
                "\(executable) \(arguments) did not finish within \(timeout):\n\(SpawnedServer.tail(outputPath))")
        }
        return Outcome(status: status, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }
}
