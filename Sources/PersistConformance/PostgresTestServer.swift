#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSpawn
import Foundation
import Synchronization

/// Why a throwaway PostgreSQL server could not be started, stopped or queried.
public struct PostgresServerError: Error, CustomStringConvertible, Sendable {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}

/// Where the PostgreSQL programs are on this machine.
public struct PostgresBinaries: Sendable {
    /// The server programs' directory (`initdb`, `pg_ctl`, `postgres`).
    public var directory: String
    public var initdb: String
    public var pgCtl: String
    public var psql: String
    /// pgbench, when installed (only the benchmark needs it).
    public var pgbench: String?

    /// Looks in `pg_config --bindir`, then `/usr/lib/postgresql/15/bin`, then the newest
    /// other `/usr/lib/postgresql/<version>/bin`; psql and pgbench also in `$PATH`.
    public static func locate() throws(PostgresServerError) -> PostgresBinaries {
        let fm = FileManager.default
        var candidates: [String] = []
        if let pgConfig = findInPath("pg_config"),
            let result = try? PostgresTestServer.runToCompletion(pgConfig, ["--bindir"], timeout: .seconds(30)),
            result.status == 0
        {
            candidates.append(result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        candidates.append("/usr/lib/postgresql/15/bin")
        let versions = (try? fm.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            candidates.append("/usr/lib/postgresql/\(version)/bin")
        }
        guard
            let directory = candidates.first(where: { dir in
                ["initdb", "pg_ctl", "postgres"].allSatisfy { fm.isExecutableFile(atPath: "\(dir)/\($0)") }
            })
        else {
            throw PostgresServerError(
                "PostgreSQL's server programs are not installed (looked for initdb, pg_ctl and postgres in "
                    + "\(candidates.joined(separator: ", "))); tools/setup.sh installs postgresql-15")
        }
        func client(_ name: String) -> String? {
            fm.isExecutableFile(atPath: "\(directory)/\(name)") ? "\(directory)/\(name)" : findInPath(name)
        }
        guard let psql = client("psql") else { throw PostgresServerError("psql not found in \(directory) or $PATH") }
        return PostgresBinaries(
            directory: directory, initdb: "\(directory)/initdb", pgCtl: "\(directory)/pg_ctl", psql: psql,
            pgbench: client("pgbench"))
    }

    static func findInPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        return nil
    }
}

/// A throwaway PostgreSQL server from the system's binaries, for tests and the benchmark.
///
/// `start` runs `initdb` into a fresh directory and starts the server on a free loopback
/// port and on a Unix socket in a short private directory, with `fsync` and
/// `synchronous_commit` on (the defaults, stated explicitly) and trust authentication
/// for the `postgres` role. PostgreSQL refuses to run as root, so when this process is
/// root the directories are given to the `postgres` account and the server programs run
/// through `runuser`.
///
/// `remove()` stops the server and deletes its files. In case this process dies first, a
/// small watchdog process started with the server does the same once this process is
/// gone (leaving the files when they are to be kept).
///
/// Every method blocks the calling thread until the programs it runs finish; async
/// callers use the `...Async` forms, which wait on a thread of their own.
public final class PostgresTestServer: Sendable {
    /// The account the server runs as when this process is root, and the superuser role.
    public static let serverAccount = "postgres"

    /// How `stop` shuts the server down (`pg_ctl stop -m`).
    public enum ShutdownMode: String, Sendable {
        /// Roll back open transactions, disconnect clients, checkpoint, exit.
        case fast
        /// Kill every server process at once, as a crash would; the next start recovers
        /// from the write-ahead log.
        case immediate
    }

    public let binaries: PostgresBinaries
    /// The directory owned by the server account: `data/` and `server.log`.
    public let root: String
    /// The directory of the server's Unix socket (`.s.PGSQL.<port>`).
    public let socketDirectory: String
    public let port: Int
    /// `SHOW server_version`, e.g. `15.14 (Debian 15.14-0+deb12u1)`.
    public let version: String
    private let options: String
    private let keepFiles: Bool
    private let removed = Mutex(false)

    public var dataDirectory: String { "\(root)/data" }
    public var logPath: String { "\(root)/server.log" }

    private init(
        binaries: PostgresBinaries, root: String, socketDirectory: String, port: Int, version: String, options: String,
        keepFiles: Bool
    ) {
        self.binaries = binaries
        self.root = root
        self.socketDirectory = socketDirectory
        self.port = port
        self.version = version
        self.options = options
        self.keepFiles = keepFiles
    }

    /// Initialises a cluster in a fresh directory under `parent` and starts it.
    ///
    /// - Parameters:
    ///   - maxConnections: the server's `max_connections`.
    ///   - settings: further `-c name=value` server settings.
    ///   - keepFiles: leave the data directory behind on `remove()` (the server is still
    ///     stopped).
    ///   - passwordsOverTCP: TCP clients must give a password (SCRAM); the Unix socket
    ///     stays trusted (set passwords through `psql`). Otherwise every client is trusted.
    public static func start(
        under parent: String = NSTemporaryDirectory(), maxConnections: Int = 100, settings: [String: String] = [:],
        keepFiles: Bool = false, passwordsOverTCP: Bool = false
    ) throws(PostgresServerError) -> PostgresTestServer {
        let binaries = try PostgresBinaries.locate()
        let root = try makeScratchDirectory(under: parent, prefix: "postgres-")
        // Unix socket paths are limited to about 100 bytes, so the socket gets a short
        // directory of its own whatever `parent` is.
        let socketDirectory: String
        do throws(PostgresServerError) {
            socketDirectory = try makeScratchDirectory(under: "/tmp", prefix: "pgsock-")
        } catch {
            removeTree(root)
            throw error
        }
        do throws(PostgresServerError) {
            if isRoot {
                try chown(root, to: serverAccount)
                try chown(socketDirectory, to: serverAccount)
            }
            try runAsServer(
                binaries.initdb,
                // --no-sync only skips flushing the fresh catalog files; the running
                // server's durability settings are untouched.
                ["-D", "\(root)/data", "-U", serverAccount, "--auth-local=trust",
                 "--auth-host=\(passwordsOverTCP ? "scram-sha-256" : "trust")", "-E", "UTF8", "--locale=C", "--no-sync"],
                what: "initdb")
        } catch {
            removeTree(root)
            removeTree(socketDirectory)
            throw error
        }
        var failures: [String] = []
        // The free port can be taken by someone else before the server binds it: try a
        // few times, each with a port that was free a moment ago.
        for _ in 0..<4 {
            let port: Int
            do {
                port = try freeLoopbackPort()
            } catch {
                failures.append("\(error)")
                break
            }
            var arguments = [
                "-c listen_addresses=127.0.0.1", "-p \(port)", "-k '\(socketDirectory)'", "-c fsync=on",
                "-c synchronous_commit=on", "-c max_connections=\(maxConnections)",
            ]
            for (name, value) in settings.sorted(by: { $0.key < $1.key }) { arguments.append("-c \(name)=\(value)") }
            let options = arguments.joined(separator: " ")
            do {
                try pgCtlStart(binaries: binaries, root: root, options: options)
            } catch {
                failures.append("\(error)")
                continue
            }
            startWatchdog(binaries: binaries, root: root, socketDirectory: socketDirectory, keepFiles: keepFiles)
            let version: String
            do throws(PostgresServerError) {
                version = try psql(binaries: binaries, socketDirectory: socketDirectory, port: port, "SHOW server_version")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            } catch {
                let server = PostgresTestServer(
                    binaries: binaries, root: root, socketDirectory: socketDirectory, port: port, version: "", options: options,
                    keepFiles: keepFiles)
                server.remove()
                throw error
            }
            return PostgresTestServer(
                binaries: binaries, root: root, socketDirectory: socketDirectory, port: port, version: version, options: options,
                keepFiles: keepFiles)
        }
        if !keepFiles { removeTree(root) }
        removeTree(socketDirectory)
        throw PostgresServerError("PostgreSQL did not start:\n\(failures.joined(separator: "\n"))")
    }

    /// Stops the server (`pg_ctl stop -m <mode>`). The files stay; `startAgain` restarts
    /// it on the same directory and port.
    public func stop(mode: ShutdownMode = .fast) throws(PostgresServerError) {
        try Self.runAsServer(
            binaries.pgCtl, ["-D", dataDirectory, "-m", mode.rawValue, "-w", "-t", "60", "stop"],
            what: "pg_ctl stop -m \(mode.rawValue)")
    }

    /// Starts the stopped server again with the same settings (after an immediate stop,
    /// it first recovers from its write-ahead log).
    public func startAgain() throws(PostgresServerError) {
        try Self.pgCtlStart(binaries: binaries, root: root, options: options)
    }

    /// Stops the server if it runs and removes its files (unless kept). Safe to call
    /// more than once; errors are ignored (there is nothing left to do about them).
    public func remove() {
        guard removed.withLock({ done in defer { done = true }; return !done }) else { return }
        if FileManager.default.fileExists(atPath: "\(dataDirectory)/postmaster.pid") {
            _ = try? Self.runAsServer(
                binaries.pgCtl, ["-D", dataDirectory, "-m", "fast", "-w", "-t", "60", "stop"], what: "pg_ctl stop")
        }
        if !keepFiles { Self.removeTree(root) }
        Self.removeTree(socketDirectory)
    }

    /// Runs `sql` with psql over the Unix socket as the superuser and returns its
    /// unaligned, tuples-only output.
    @discardableResult
    public func psql(_ sql: String, database: String = "postgres") throws(PostgresServerError) -> String {
        try Self.psql(binaries: binaries, socketDirectory: socketDirectory, port: port, sql, database: database)
    }

    /// `-h`, `-p` and `-U` for a client program on this machine: over the Unix socket, or
    /// over loopback TCP when `tcp` is set.
    public func connectionArguments(tcp: Bool) -> [String] {
        ["-h", tcp ? "127.0.0.1" : socketDirectory, "-p", "\(port)", "-U", Self.serverAccount]
    }

    /// A location URL for `database` on this server as the superuser: over loopback TCP,
    /// or over the Unix socket when `unixSocket` is set.
    public func url(database: String, unixSocket: Bool = false, parameters: String = "") -> String {
        let extra = parameters.isEmpty ? "" : "&" + parameters
        if unixSocket {
            return "postgres://\(Self.serverAccount)@:\(port)/\(database)?host=\(socketDirectory)\(extra)"
        }
        return "postgres://\(Self.serverAccount)@127.0.0.1:\(port)/\(database)"
            + (parameters.isEmpty ? "" : "?" + parameters)
    }

    // MARK: async forms

    /// `start` on a thread of its own.
    public static func startAsync(
        under parent: String = NSTemporaryDirectory(), maxConnections: Int = 100, settings: [String: String] = [:],
        passwordsOverTCP: Bool = false
    ) async throws -> PostgresTestServer {
        try await SpawnedServer.offThread {
            try start(under: parent, maxConnections: maxConnections, settings: settings, passwordsOverTCP: passwordsOverTCP)
        }
    }

    /// `stop` on a thread of its own.
    public func stopAsync(mode: ShutdownMode = .fast) async throws {
        try await SpawnedServer.offThread { try self.stop(mode: mode) }
    }

    /// `startAgain` on a thread of its own.
    public func startAgainAsync() async throws {
        try await SpawnedServer.offThread { try self.startAgain() }
    }

    /// `remove` on a thread of its own.
    public func removeAsync() async {
        _ = try? await SpawnedServer.offThread { self.remove() }
    }

    /// `psql` on a thread of its own.
    @discardableResult
    public func psqlAsync(_ sql: String, database: String = "postgres") async throws -> String {
        try await SpawnedServer.offThread { try self.psql(sql, database: database) }
    }

    /// Creates a fresh database named `name` (letters, digits and underscores) and returns
    /// its location URL (see `url`).
    public func createDatabase(_ name: String, unixSocket: Bool = false) async throws -> String {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw PostgresServerError("not a plain database name: \(name)")
        }
        try await psqlAsync("CREATE DATABASE \(name)")
        return url(database: name, unixSocket: unixSocket)
    }

    // MARK: the shared server

    /// One server for the whole test process, started on first use and removed when the
    /// process exits (tests that stop or restart a server start their own instead).
    /// Fails, with the reason, when PostgreSQL is not installed or does not start.
    public static func shared() async throws -> PostgresTestServer {
        let task = sharedServer.withLock { state -> Task<PostgresTestServer, any Error> in
            if let task = state { return task }
            let task = Task {
                let server = try await startAsync(maxConnections: 200)
                sharedForExit.withLock { $0 = server }
                atexit { sharedForExit.withLock { $0 }?.remove() }
                return server
            }
            state = task
            return task
        }
        return try await task.value
    }

    // MARK: processes

    static var isRoot: Bool { geteuid() == 0 }

    private static func pgCtlStart(binaries: PostgresBinaries, root: String, options: String) throws(PostgresServerError) {
        try runAsServer(
            binaries.pgCtl, ["-D", "\(root)/data", "-l", "\(root)/server.log", "-w", "-t", "60", "-o", options, "start"],
            what: "pg_ctl start (server log: \(root)/server.log)")
    }

    private static func psql(
        binaries: PostgresBinaries, socketDirectory: String, port: Int, _ sql: String, database: String = "postgres"
    ) throws(PostgresServerError) -> String {
        try check(
            binaries.psql,
            ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", socketDirectory, "-p", "\(port)", "-U", serverAccount, "-d",
             database, "-c", sql],
            what: "psql")
    }

    /// Runs a server program as the server account (directly when this process is not root).
    private static func runAsServer(_ program: String, _ arguments: [String], what: String) throws(PostgresServerError) {
        if isRoot {
            let runuser = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"].first {
                FileManager.default.isExecutableFile(atPath: $0)
            }
            guard let runuser else {
                throw PostgresServerError("running as root, but runuser (util-linux) is missing to start PostgreSQL as postgres")
            }
            try check(runuser, ["-u", serverAccount, "--", program] + arguments, what: what)
        } else {
            try check(program, arguments, what: what)
        }
    }

    @discardableResult
    private static func check(_ program: String, _ arguments: [String], what: String) throws(PostgresServerError) -> String {
        let result = try runToCompletion(program, arguments, timeout: .seconds(180))
        guard result.status == 0 else {
            let tail = result.output.split(separator: "\n").suffix(15).joined(separator: "\n")
            throw PostgresServerError("\(what) failed (exit status \(result.status)):\n\(tail)")
        }
        return result.output
    }

    /// Runs `program` until it exits (killing it after `timeout`, a hang guard) and
    /// returns its status and its stdout and stderr together.
    ///
    /// The child is started by `SpawnedServer.spawn`: default signal dispositions and an
    /// empty mask (a server started by `pg_ctl` inherits both), stdin from /dev/null and
    /// none of this process's other descriptors (a daemon holding one of our sockets would
    /// keep its peer waiting). Output goes to a file, not a pipe, for the same reason: the
    /// server `pg_ctl` leaves behind would hold the pipe open.
    static func runToCompletion(
        _ program: String, _ arguments: [String], timeout: Duration
    ) throws(PostgresServerError) -> (status: Int32, output: String) {
        let outputPath = NSTemporaryDirectory() + "/pg-test-server-\(UUID().uuidString).out"
        // Made private before the child appends to it (psql's output may show settings).
        let created = open(outputPath, O_WRONLY | O_CREAT | O_EXCL, 0o600)
        guard created >= 0 else {
            throw PostgresServerError("cannot create \(outputPath): \(String(cString: strerror(errno)))")
        }
        close(created)
        defer { unlink(outputPath) }
        let pid: pid_t
        do {
            pid = try SpawnedServer.spawn(
                program, arguments, standardInput: "/dev/null", outputPath: outputPath, errorPath: nil, environment: nil)
        } catch {
            throw PostgresServerError("cannot run \(program): \(error)")
        }
        let status: Int32
        if let s = SpawnedServer.reap(pid, by: ContinuousClock.now + timeout) {
            status = s
        } else {
            kill(pid, SIGKILL)
            _ = SpawnedServer.reap(pid, by: ContinuousClock.now + .seconds(30))
            let output = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
            throw PostgresServerError("\(program) \(arguments) did not finish within \(timeout):\n\(output)")
        }
        return (status, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
    }

    /// Starts a shell that waits for this process to end, then stops the server and
    /// removes its files (unless kept). It never outlives that work.
    private static func startWatchdog(binaries: PostgresBinaries, root: String, socketDirectory: String, keepFiles: Bool) {
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        let stopCommand = [binaries.pgCtl, "-D", "\(root)/data", "-m", "immediate", "stop"].map(quoted).joined(separator: " ")
        let asServer = isRoot ? "runuser -u \(serverAccount) -- \(stopCommand)" : stopCommand
        let removal = keepFiles ? quoted(socketDirectory) : "\(quoted(root)) \(quoted(socketDirectory))"
        let script = """
            while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done
            if [ -f \(quoted(root + "/data/postmaster.pid")) ]; then \(asServer) >/dev/null 2>&1; fi
            rm -rf \(removal)
            """
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        _ = cspawn_add_close_from(&actions, 3)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group: a Ctrl-C meant for this process does not end it early.
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP))
        let words: [String] = ["/bin/sh", "-c", script]
        let argv = words.map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        _ = posix_spawn(&pid, "/bin/sh", &actions, &attributes, argv, environ)
    }

    // MARK: files and ports

    /// Creates `<parent>/<prefix>XXXXXX`, readable and traversable by everyone (0755) so
    /// the server account can reach what is below it.
    static func makeScratchDirectory(under parent: String, prefix: String) throws(PostgresServerError) -> String {
        let base = parent.hasSuffix("/") ? String(parent.dropLast()) : parent
        var template = Array("\(base)/\(prefix)XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { buffer -> Bool in
            guard let p = buffer.baseAddress else { return false }
            return mkdtemp(p) != nil
        }
        guard made else { throw PostgresServerError("cannot create a directory under \(parent): \(errnoText())") }
        let path = template.withUnsafeBufferPointer { buffer in buffer.baseAddress.map { String(cString: $0) } ?? "" }
        guard chmod(path, 0o755) == 0 else { throw PostgresServerError("chmod \(path): \(errnoText())") }
        return path
    }

    static func removeTree(_ path: String) {
        try? FileManager.default.removeItem(atPath: path)
    }

    /// Gives `path` to the account `user` (and its primary group).
    static func chown(_ path: String, to user: String) throws(PostgresServerError) {
        guard let entry = getpwnam(user) else {
            throw PostgresServerError("no account named \(user) on this machine (the postgresql package creates it)")
        }
        guard systemChown(path, entry.pointee.pw_uid, entry.pointee.pw_gid) == 0 else {
            throw PostgresServerError("chown \(path) to \(user): \(errnoText())")
        }
    }

    /// A TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for a socket
    /// bound to port 0, which is then closed).
    public static func freeLoopbackPort() throws(PostgresServerError) -> Int {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw PostgresServerError("socket: \(errnoText())") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw PostgresServerError("bind 127.0.0.1:0: \(errnoText())") }
        var actual = sockaddr_in()
        var actualLength = length
        let named = withUnsafeMutablePointer(to: &actual) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &actualLength) }
        }
        guard named == 0 else { throw PostgresServerError("getsockname: \(errnoText())") }
        return Int(UInt16(bigEndian: actual.sin_port))
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }
}

private func systemChown(_ path: String, _ uid: uid_t, _ gid: gid_t) -> Int32 {
    chown(path, uid, gid)
}

/// The shared server's start, awaited by every caller of `shared()`.
private let sharedServer = Mutex<Task<PostgresTestServer, any Error>?>(nil)
/// The shared server once started, for the exit handler.
private let sharedForExit = Mutex<PostgresTestServer?>(nil)
