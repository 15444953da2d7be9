#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A program a test runs to completion for its exit status and output: a Python script,
/// the aws CLI, a server's `--help`, a `txnctl` command. Started the way `SpawnedServer`
/// starts servers (posix_spawn; by default stdin from /dev/null and stdout and stderr
/// together), and waited for on a thread of its own, so Swift's cooperative threads are
/// never blocked.
public enum ChildProgram {
    /// What a finished program left behind.
    public struct Outcome: Sendable {
        /// The exit status, or minus the signal that ended the program.
        public var status: Int32
        /// Everything it wrote to stdout and stderr, interleaved as written; only stdout
        /// when the run separated stderr.
        public var output: String
        /// What it wrote to stderr when the run separated it; empty otherwise.
        public var errorOutput: String = ""
    }

    /// Runs `executable` (an absolute path; use `/usr/bin/env` to search `PATH`) with
    /// `arguments` until it exits. `environment` replaces this process's environment when
    /// given.
    ///
    /// - Parameters:
    ///   - standardInput: a file the program reads as stdin (default: /dev/null).
    ///   - separateStandardError: capture stderr apart from stdout, in
    ///     `Outcome.errorOutput`, so stdout can be parsed on its own.
    ///   - timeout: a hang guard only: a program still running then is killed and the run
    ///     fails with its output so far.
    /// - Throws: `ConformanceFailure` if the program cannot be started or hangs.
    public static func run(
        executable: String, arguments: [String], environment: [String: String]? = nil,
        standardInput: String? = nil, separateStandardError: Bool = false, timeout: Duration = .seconds(600)
    ) async throws -> Outcome {
        let base = NSTemporaryDirectory() + "child-program-\(UUID().uuidString)"
        let outputPath = base + ".out"
        let errorPath = separateStandardError ? base + ".err" : nil
        defer {
            unlink(outputPath)
            if let errorPath { unlink(errorPath) }
        }
        let pid = try SpawnedServer.spawn(
            executable, arguments, standardInput: standardInput ?? "/dev/null", outputPath: outputPath,
            errorPath: errorPath, environment: environment)
        let status = try await SpawnedServer.offThread { () throws -> Int32 in
            if let status = SpawnedServer.reap(pid, by: ContinuousClock.now + timeout) { return status }
            kill(pid, SIGKILL)
            _ = SpawnedServer.reap(pid, by: ContinuousClock.now + .seconds(60))
            let errors = errorPath.map { "\n(stderr)\n" + SpawnedServer.tail($0) } ?? ""
            throw ConformanceFailure(
                "\(executable) \(arguments) did not finish within \(timeout):\n\(SpawnedServer.tail(outputPath))\(errors)")
        }
        return Outcome(
            status: status, output: (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "",
            errorOutput: errorPath.flatMap { try? String(contentsOfFile: $0, encoding: .utf8) } ?? "")
    }
}
