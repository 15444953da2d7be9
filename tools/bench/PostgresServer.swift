import Foundation

/// A throwaway PostgreSQL server from the system's binaries, for the consensus peer.
///
/// The server refuses to run as root, so when this tool is root the data directory is
/// given to the `postgres` account and `initdb`/`pg_ctl` run through `runuser`. It
/// listens on a free loopback port and on a Unix socket in a private directory, with
/// `fsync` and `synchronous_commit` on (the defaults, stated explicitly), and is stopped
/// with `pg_ctl -m fast stop` by `stop()` or, on Ctrl-C, by the cleanup registry.
final class PostgresServer {
    static let serverUser = "postgres"

    let binaries: PostgresBinaries
    /// Directory owned by the server account: `data/` and `server.log`.
    let root: String
    let socketDirectory: String
    let port: Int
    private(set) var version = "unknown"
    private var cleanupToken: CleanupRegistry.Token?

    private var dataDirectory: String { "\(root)/data" }

    private init(binaries: PostgresBinaries, root: String, socketDirectory: String, port: Int) {
        self.binaries = binaries
        self.root = root
        self.socketDirectory = socketDirectory
        self.port = port
    }

    /// Initialises a cluster under `parent` and starts it. `keepFiles` leaves the data
    /// directory behind after `stop()`.
    static func start(
        under parent: String, maxConnections: Int, keepFiles: Bool
    ) throws(BenchError) -> PostgresServer {
        let binaries = try PostgresBinaries.locate()
        let root = try System.makeScratchDirectory(under: parent, prefix: "postgres-")
        // Unix socket paths are limited to about 100 bytes, so the socket gets a short
        // directory of its own whatever `parent` is.
        let socketDirectory = try System.makeScratchDirectory(under: "/tmp", prefix: "pbsock-")
        if System.isRoot {
            try System.chown(root, to: serverUser)
            try System.chown(socketDirectory, to: serverUser)
        }
        let server = PostgresServer(
            binaries: binaries, root: root, socketDirectory: socketDirectory, port: try System.freeLoopbackPort())
        let dataDirectory = server.dataDirectory
        server.cleanupToken = cleanup.register("stop PostgreSQL in \(root)") {
            Self.stopServer(binaries: binaries, dataDirectory: dataDirectory)
            if !keepFiles { System.removeTree(root) }
            System.removeTree(socketDirectory)
        }
        do {
            try server.initialise()
            try server.launch(maxConnections: maxConnections)
            server.version = try server.psql("SHOW server_version").trimmingCharacters(in: .whitespacesAndNewlines)
        } catch {
            server.stop()
            throw error
        }
        return server
    }

    /// Stops the server and removes its files (unless kept). Safe to call twice.
    func stop() {
        if let token = cleanupToken {
            cleanupToken = nil
            cleanup.run(token)
        }
    }

    /// Runs `sql` through psql and returns its unaligned, tuples-only output.
    @discardableResult
    func psql(_ sql: String) throws(BenchError) -> String {
        try Subprocess.check(
            binaries.psql,
            ["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1"] + connectionArguments(tcp: false)
                + ["-d", "postgres", "-c", sql],
            what: "psql")
    }

    /// `-h`, `-p` and `-U` for a client on this machine: over the Unix socket, or over
    /// loopback TCP when `tcp` is set.
    func connectionArguments(tcp: Bool) -> [String] {
        ["-h", tcp ? "127.0.0.1" : socketDirectory, "-p", "\(port)", "-U", Self.serverUser]
    }

    private func initialise() throws(BenchError) {
        // --no-sync only skips flushing the freshly created catalog files; it has no
        // effect on the running server's durability settings.
        try Self.runAsServer(
            binaries.initdb,
            ["-D", dataDirectory, "-U", Self.serverUser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"],
            what: "initdb")
    }

    private func launch(maxConnections: Int) throws(BenchError) {
        let options = [
            "-c listen_addresses=127.0.0.1", "-p \(port)", "-k '\(socketDirectory)'",
            "-c fsync=on", "-c synchronous_commit=on", "-c max_connections=\(maxConnections)",
        ].joined(separator: " ")
        try Self.runAsServer(
            binaries.pgCtl,
            ["-D", dataDirectory, "-l", "\(root)/server.log", "-w", "-t", "60", "-o", options, "start"],
            what: "pg_ctl start (server log: \(root)/server.log)")
    }

    private static func stopServer(binaries: PostgresBinaries, dataDirectory: String) {
        guard FileManager.default.fileExists(atPath: "\(dataDirectory)/postmaster.pid") else { return }
        do {
            try runAsServer(binaries.pgCtl, ["-D", dataDirectory, "-m", "fast", "-w", "stop"], what: "pg_ctl stop")
        } catch {
            printError("warning: \(error)")
        }
    }

    /// Runs a server-side program as the server account (directly when not root).
    private static func runAsServer(_ program: String, _ arguments: [String], what: String) throws(BenchError) {
        if System.isRoot {
            try Subprocess.check("/usr/sbin/runuser", ["-u", serverUser, "--", program] + arguments, what: what)
        } else {
            try Subprocess.check(program, arguments, what: what)
        }
    }
}

/// Where the PostgreSQL programs are.
struct PostgresBinaries: Sendable {
    var initdb: String
    var pgCtl: String
    var psql: String
    var pgbench: String

    /// Looks in `pg_config --bindir`, then `/usr/lib/postgresql/15/bin`, then the newest
    /// other `/usr/lib/postgresql/<version>/bin`; client programs fall back to `$PATH`.
    static func locate() throws(BenchError) -> PostgresBinaries {
        var candidates: [String] = []
        if let pgConfig = Subprocess.findInPath("pg_config"),
            let result = try? Subprocess.run(pgConfig, ["--bindir"]), result.succeeded
        {
            candidates.append(result.output.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        candidates.append("/usr/lib/postgresql/15/bin")
        let versions = (try? FileManager.default.contentsOfDirectory(atPath: "/usr/lib/postgresql")) ?? []
        for version in versions.sorted(by: { (Int($0) ?? 0) > (Int($1) ?? 0) }) {
            candidates.append("/usr/lib/postgresql/\(version)/bin")
        }
        let fm = FileManager.default
        guard
            let bindir = candidates.first(where: { dir in
                ["initdb", "pg_ctl", "postgres"].allSatisfy { fm.isExecutableFile(atPath: "\(dir)/\($0)") }
            })
        else {
            throw BenchError(
                "no PostgreSQL server binaries found (looked in \(candidates.joined(separator: ", "))); "
                    + "install postgresql or pass --skip-postgres")
        }
        func client(_ name: String) throws(BenchError) -> String {
            if fm.isExecutableFile(atPath: "\(bindir)/\(name)") { return "\(bindir)/\(name)" }
            if let found = Subprocess.findInPath(name) { return found }
            throw BenchError("\(name) not found in \(bindir) or $PATH")
        }
        return PostgresBinaries(
            initdb: "\(bindir)/initdb", pgCtl: "\(bindir)/pg_ctl", psql: try client("psql"),
            pgbench: try client("pgbench"))
    }
}
