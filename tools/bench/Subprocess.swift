import Foundation

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
/// Output goes to a scratch file rather than a pipe: a program such as `pg_ctl start`
/// leaves a daemon behind, and a daemon that inherited the write end of a pipe would keep
/// a reader waiting for end-of-file until the daemon exits.
enum Subprocess {
    /// Runs `path` with `arguments` and returns its exit status and combined output.
    /// Throws only when the program cannot be started at all.
    static func run(_ path: String, _ arguments: [String]) throws(BenchError) -> CommandResult {
        let scratch = FileManager.default.temporaryDirectory
            .appendingPathComponent("persist-bench-\(UUID().uuidString).out")
        guard FileManager.default.createFile(atPath: scratch.path, contents: nil) else {
            throw BenchError("cannot create scratch file \(scratch.path)")
        }
        defer { try? FileManager.default.removeItem(at: scratch) }

        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardInput = FileHandle.nullDevice
        do {
            let sink = try FileHandle(forWritingTo: scratch)
            defer { try? sink.close() }
            process.standardOutput = sink
            process.standardError = sink
            try process.run()
            process.waitUntilExit()
        } catch {
            throw BenchError("cannot run \(path): \(error)")
        }
        let data = (try? Data(contentsOf: scratch)) ?? Data()
        return CommandResult(status: process.terminationStatus, output: String(decoding: data, as: UTF8.self))
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
