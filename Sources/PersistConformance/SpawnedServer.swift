#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSpawn
import Foundation

/// A server executable started by a test (the `consensus` or `blob-store` process), so
/// suites can run through real processes, signal them and restart them.
///
/// The server is started with `--ready-file`; `start` returns once that file appears
/// (or fails with the server's log if it exits first or the deadline passes). Its stdout
/// and stderr go to a log file, which failure messages quote.
public struct SpawnedServer: Sendable {
    public let pid: pid_t
    public let executable: String
    public let arguments: [String]
    public let logPath: String
    /// The ready file's entries: listener name -> addresses, in the order written.
    public let listeners: [String: [String]]

    /// The path of an executable built next to the running test bundle.
    public static func builtExecutable(_ name: String) throws -> String {
        let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let path = (exe as NSString).deletingLastPathComponent + "/" + name
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw ConformanceFailure("\(name) is not built at \(path) (swift build --build-tests builds it)")
        }
        return path
    }

    /// Starts `executable` with `arguments` plus `--ready-file <readyFile>` and waits
    /// until it is listening. `environment` replaces the inherited one when given.
    public static func start(
        executable: String, arguments: [String], readyFile: String, logPath: String,
        timeout: Duration = .seconds(30), environment: [String: String]? = nil
    ) throws -> SpawnedServer {
        unlink(readyFile)
        let pid = try spawn(executable, arguments + ["--ready-file", readyFile], logPath: logPath, environment: environment)
        let deadline = ContinuousClock.now + timeout
        while true {
            if let text = try? String(contentsOfFile: readyFile, encoding: .utf8) {
                var listeners: [String: [String]] = [:]
                for line in text.split(separator: "\n") {
                    let parts = line.split(separator: " ", maxSplits: 1)
                    if parts.count == 2 { listeners[String(parts[0]), default: []].append(String(parts[1])) }
                }
                return SpawnedServer(
                    pid: pid, executable: executable, arguments: arguments, logPath: logPath, listeners: listeners)
            }
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                throw ConformanceFailure("\(executable) exited (status \(status)) before listening:\n\(tail(logPath))")
            }
            if ContinuousClock.now > deadline {
                kill(pid, SIGKILL)
                _ = waitpid(pid, &status, 0)
                throw ConformanceFailure("\(executable) did not listen within \(timeout):\n\(tail(logPath))")
            }
            usleep(5_000)
        }
    }

    /// `start` for async callers: the polling and waiting happen on a Dispatch thread, so
    /// Swift's cooperative threads (which in-process servers and other tests need) are
    /// never blocked.
    public static func launch(
        executable: String, arguments: [String], readyFile: String, logPath: String,
        timeout: Duration = .seconds(30), environment: [String: String]? = nil
    ) async throws -> SpawnedServer {
        try await offThread {
            try start(
                executable: executable, arguments: arguments, readyFile: readyFile, logPath: logPath, timeout: timeout,
                environment: environment)
        }
    }

    /// `wait` for async callers (see `launch`).
    public func exitStatus() async -> Int32 {
        (try? await Self.offThread { wait() }) ?? Int32.min
    }

    /// `kill9` for async callers (see `launch`).
    public func killed() async {
        _ = try? await Self.offThread { kill9() }
    }

    /// Runs blocking work on a thread of its own: neither Swift's cooperative pool nor
    /// Dispatch's shared queues (which libraries use for short jobs such as name
    /// resolution) are held while it waits.
    public static func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread { continuation.resume(with: Result { try body() }) }
            thread.start()
        }
    }

    /// The first address of a listener, e.g. `rpc` -> `127.0.0.1:41234`.
    public func address(_ name: String, matching predicate: (String) -> Bool = { _ in true }) throws -> String {
        guard let a = listeners[name]?.first(where: predicate) else {
            throw ConformanceFailure("no \(name) listener in the ready file: \(listeners)")
        }
        return a
    }

    public func signal(_ sig: Int32) {
        kill(pid, sig)
    }

    /// Waits for the process to end. Returns its exit status, or minus the signal that
    /// ended it.
    @discardableResult
    public func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            if errno != EINTR { return Int32.min }
        }
        return Self.decode(status)
    }

    /// `wait` for async callers, bounded as a hang guard: nil if the process is still
    /// running after `limit` (it is left running; `killed` ends it).
    public func exitStatus(within limit: Duration) async -> Int32? {
        let pid = pid
        return (try? await Self.offThread { Self.reap(pid, by: ContinuousClock.now + limit) }) ?? nil
    }

    /// A `waitpid` status as `wait` returns it: the exit status, or minus the signal.
    static func decode(_ status: Int32) -> Int32 {
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : -signal
    }

    /// Reaps `pid` once it ends, polling (blocking the calling thread) until `deadline`:
    /// its status as `wait` returns it, or nil if it is still running then.
    public static func reap(_ pid: pid_t, by deadline: ContinuousClock.Instant) -> Int32? {
        var status: Int32 = 0
        var pause: UInt32 = 1_000
        while true {
            let reaped = waitpid(pid, &status, WNOHANG)
            if reaped == pid { return decode(status) }
            if reaped < 0, errno != EINTR { return Int32.min }
            if ContinuousClock.now >= deadline { return nil }
            usleep(pause)
            pause = min(pause * 2, 20_000)
        }
    }

    /// Sends SIGKILL and reaps the process.
    public func kill9() {
        signal(SIGKILL)
        wait()
    }

    /// The last lines of the server's log, for failure messages.
    public func logTail(_ lines: Int = 40) -> String { Self.tail(logPath, lines) }

    static func tail(_ path: String, _ lines: Int = 40) -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return "(no log at \(path))" }
        return text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
    }

    /// Calls `body` with spawn attributes under which a child starts with every signal at
    /// its default disposition and none blocked, whatever the calling thread has. Signal
    /// state survives exec: this process may ignore SIGINT and SIGTERM (handled through
    /// dispatch sources) and its worker threads block most signals, and a server (or a
    /// daemon it starts, like PostgreSQL under pg_ctl) that inherited an ignored or
    /// blocked SIGTERM would not stop when told, nor pgbench see its SIGALRM.
    public static func withDefaultSignals<R>(_ body: (UnsafePointer<posix_spawnattr_t>) throws -> R) rethrows -> R {
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigfillset(&defaults)
        sigdelset(&defaults, SIGKILL)
        sigdelset(&defaults, SIGSTOP)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        return try body(&attributes)
    }

    /// Starts `executable` (an absolute path) with stdin from /dev/null and stdout and
    /// stderr appended to `logPath`. `environment` replaces the inherited one when given.
    static func spawn(
        _ executable: String, _ arguments: [String], logPath: String, environment: [String: String]? = nil
    ) throws -> pid_t {
        try spawn(
            executable, arguments, standardInput: "/dev/null", outputPath: logPath, errorPath: nil,
            environment: environment)
    }

    /// Starts `executable` with stdin from `standardInput`, stdout appended to
    /// `outputPath` and stderr to `errorPath` (or with stdout when nil).
    static func spawn(
        _ executable: String, _ arguments: [String], standardInput: String, outputPath: String, errorPath: String?,
        environment: [String: String]?
    ) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, standardInput, O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, outputPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if let errorPath {
            posix_spawn_file_actions_addopen(&actions, 2, errorPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        } else {
            posix_spawn_file_actions_adddup2(&actions, 1, 2)
        }
        // Without this the child would inherit every socket this process has open (NIO
        // does not open them close-on-exec): a connection a test server closes would stay
        // open in the child, and its peer would never see the end.
        let closing = cspawn_add_close_from(&actions, 3)
        guard closing == 0 else {
            throw ConformanceFailure("cannot ask posix_spawn to close inherited descriptors: errno \(closing)")
        }
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { for p in envp ?? [] { free(p) } }
        var pid: pid_t = 0
        let rc = withDefaultSignals { attributes in
            if let envp { return posix_spawn(&pid, executable, &actions, attributes, argv, envp) }
            return posix_spawn(&pid, executable, &actions, attributes, argv, environ)
        }
        guard rc == 0 else {
            throw ConformanceFailure("cannot start \(executable): \(String(cString: strerror(rc))) (errno \(rc))")
        }
        return pid
    }
}
