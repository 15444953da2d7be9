#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import PersistConformance
import PersistRPC
import Synchronization

/// A `txn-coordinator` server process on embedded storage (FileBlob and LogConsensus in
/// a directory of its own), started for the coordinator benchmark and stopped with
/// SIGTERM when the benchmark is done with it, or by the cleanup registry on an
/// interrupt or an error.
final class CoordinatorProcess: Sendable {
    /// Where clients reach it.
    let endpoint: RPCEndpoint
    let server: SpawnedServer

    /// The exit status once the process has been reaped, by `stop` or by the cleanup
    /// action, whichever came first.
    private let reaped = Mutex<Int32?>(nil)
    private let stopToken: Mutex<CleanupRegistry.Token?> = Mutex(nil)
    /// A private directory made for the socket when the scratch path is too long for one.
    private let socketDirectory: String?

    /// Unix socket paths longer than this do not fit `sockaddr_un` everywhere.
    private static let maxSocketPathBytes = 100

    /// How long a SIGTERM'd coordinator may take to drain and exit before it is killed.
    static let stopTimeout: Duration = .seconds(120)

    private init(endpoint: RPCEndpoint, server: SpawnedServer, socketDirectory: String?) {
        self.endpoint = endpoint
        self.server = server
        self.socketDirectory = socketDirectory
    }

    /// The `txn-coordinator` executable built next to this one.
    static func executable() throws(BenchError) -> String {
        try System.siblingExecutable("txn-coordinator", neededBy: "the coordinator benchmark")
    }

    /// Starts a coordinator whose storage lives in `directory/data`, listening on a Unix
    /// socket (or on 127.0.0.1 with a port of the kernel's choosing when `tcp`), and
    /// waits until it is ready. Its log goes to `directory/coordinator.log`.
    static func start(directory: String, groupCommit: Bool, tcp: Bool) async throws(BenchError) -> CoordinatorProcess {
        let executable = try executable()
        let socketDirectory: String? =
            !tcp && "\(directory)/rpc.sock".utf8.count > maxSocketPathBytes
            ? try System.makeScratchDirectory(under: "/tmp", prefix: "pbsock-") : nil
        let socketPath = "\(socketDirectory ?? directory)/rpc.sock"
        var arguments = [
            "--data-dir", "\(directory)/data", "--listen", tcp ? "127.0.0.1:0" : "unix:\(socketPath)",
            "--metrics-listen", "off", "--log-level", "warning",
        ]
        if !groupCommit { arguments.append("--no-group-commit") }

        let server: SpawnedServer
        do {
            server = try await SpawnedServer.launch(
                executable: executable, arguments: arguments, readyFile: "\(directory)/ready",
                logPath: "\(directory)/coordinator.log")
        } catch {
            if let socketDirectory { System.removeTree(socketDirectory) }
            throw BenchError("cannot start \(executable): \(error)")
        }

        let endpoint: RPCEndpoint
        if tcp {
            guard let address = try? server.address("rpc"), let parsed = tcpEndpoint(address) else {
                server.kill9()
                throw BenchError("the coordinator's ready file has no usable rpc address: \(server.listeners)")
            }
            endpoint = parsed
        } else {
            endpoint = .unix(path: socketPath)
        }
        let process = CoordinatorProcess(endpoint: endpoint, server: server, socketDirectory: socketDirectory)
        let token = cleanup.register("stop the txn-coordinator (pid \(server.pid))") { [process] in
            process.terminateAndWait()
        }
        process.stopToken.withLock { $0 = token }
        return process
    }

    /// SIGTERM and a blocking wait, for the cleanup registry; does nothing once reaped.
    private func terminateAndWait() {
        if reaped.withLock({ $0 }) == nil {
            server.signal(SIGTERM)
            let status = server.wait()
            reaped.withLock { $0 = status }
        }
        if let socketDirectory { System.removeTree(socketDirectory) }
    }

    /// Sends SIGTERM, waits (at most `stopTimeout`, then SIGKILL) and requires exit
    /// status 0: the coordinator drains its queued commits and exits cleanly.
    func stop() async throws(BenchError) {
        if reaped.withLock({ $0 }) == nil {
            server.signal(SIGTERM)
            let status = await server.exitStatus(within: Self.stopTimeout)
            if let status {
                reaped.withLock { $0 = status }
            } else {
                await server.killed()
                reaped.withLock { $0 = Int32.min }
            }
        }
        if let token = stopToken.withLock({ $0 }) { cleanup.run(token) }
        let status = reaped.withLock { $0 } ?? Int32.min
        guard status == 0 else {
            let how =
                status == Int32.min
                ? "did not exit within \(Self.stopTimeout) of SIGTERM (killed)"
                : status < 0 ? "was ended by signal \(-status)" : "exited with status \(status)"
            throw BenchError("the txn-coordinator (pid \(server.pid)) \(how):\n\(server.logTail())")
        }
    }

    /// Stops the process on a failure path, ignoring how it ends.
    func stopQuietly() async {
        _ = try? await stop()
    }

    /// Parses `host:port` (or `[v6]:port`) as the ready file gives it.
    private static func tcpEndpoint(_ address: String) -> RPCEndpoint? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), port > 0
        else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return .tcp(host: host, port: port)
    }
}
