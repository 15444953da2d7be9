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

/// A server process a benchmark starts (consensus, blob-store, txn-coordinator): one
/// way to launch it on loopback TCP or a Unix socket, find where it listens, stop it
/// with SIGTERM requiring exit status 0, and have the cleanup registry stop it on an
/// interrupt or an error.
final class BenchServer: Sendable {
    let server: SpawnedServer
    /// Names the process in messages ("the consensus server").
    let name: String
    /// Where clients reach it.
    let endpoint: RPCEndpoint

    /// The exit status once reaped, by `stop` or by the cleanup action, whichever ran.
    private let reaped = Mutex<Int32?>(nil)
    private let stopToken = Mutex<CleanupRegistry.Token?>(nil)
    /// A private directory made for the socket when the scratch path is too long for one.
    private let socketDirectory: String?

    /// Unix socket paths longer than this do not fit `sockaddr_un` on every platform.
    private static let maxSocketPathBytes = 100
    /// How long a SIGTERM'd server may take to drain and exit before it is killed.
    static let stopTimeout: Duration = .seconds(120)

    var pid: pid_t { server.pid }

    private init(server: SpawnedServer, name: String, endpoint: RPCEndpoint, socketDirectory: String?) {
        self.server = server
        self.name = name
        self.endpoint = endpoint
        self.socketDirectory = socketDirectory
    }

    /// Starts `executable` with `arguments` plus its listen address (`unix` socket named
    /// `socketName`, else 127.0.0.1 with a port of the kernel's choosing), metrics off and
    /// warnings-only logs; its ready file and log go in `directory`. `listener` is the
    /// ready file's name for the served address. `environment`, when given, replaces the
    /// inherited one.
    static func start(
        name: String, executable: String, arguments: [String], directory: String, unix: Bool, socketName: String,
        listener: String, environment: [String: String]? = nil
    ) throws(BenchError) -> BenchServer {
        let socketDirectory: String? =
            unix && "\(directory)/\(socketName)".utf8.count > maxSocketPathBytes
            ? try System.makeScratchDirectory(under: "/tmp", prefix: "pbsock-") : nil
        let socketPath = "\(socketDirectory ?? directory)/\(socketName)"
        let logName = (executable as NSString).lastPathComponent
        let server: SpawnedServer
        do {
            server = try SpawnedServer.start(
                executable: executable,
                arguments: arguments + [
                    "--listen", unix ? "unix:\(socketPath)" : "127.0.0.1:0", "--metrics-listen", "off",
                    "--log-level", "warning",
                ],
                readyFile: "\(directory)/\(logName).ready", logPath: "\(directory)/\(logName).log",
                environment: environment)
        } catch {
            if let socketDirectory { System.removeTree(socketDirectory) }
            throw BenchError("cannot start \(executable): \(error)")
        }
        let endpoint: RPCEndpoint
        if unix {
            endpoint = .unix(path: socketPath)
        } else {
            guard let address = try? server.address(listener), let parsed = tcpEndpoint(address) else {
                server.kill9()
                if let socketDirectory { System.removeTree(socketDirectory) }
                throw BenchError("\(name)'s ready file has no usable \(listener) address: \(server.listeners)")
            }
            endpoint = parsed
        }
        let process = BenchServer(server: server, name: name, endpoint: endpoint, socketDirectory: socketDirectory)
        let token = cleanup.register("stop \(name) (pid \(server.pid))") { [process] in process.terminateAndWait() }
        process.stopToken.withLock { $0 = token }
        return process
    }

    /// SIGTERM and a bounded wait (SIGKILL after `stopTimeout`); does nothing once reaped.
    private func terminateAndWait() {
        if reaped.withLock({ $0 }) == nil {
            server.signal(SIGTERM)
            let status = SpawnedServer.reap(server.pid, by: ContinuousClock.now + Self.stopTimeout)
            if status == nil { server.kill9() }
            reaped.withLock { $0 = status ?? Int32.min }
        }
        if let socketDirectory { System.removeTree(socketDirectory) }
    }

    /// Stops the server and requires that it drained and exited 0.
    func stop() throws(BenchError) {
        if let token = stopToken.withLock({ $0 }) { cleanup.run(token) }
        let status = reaped.withLock { $0 } ?? Int32.min
        guard status == 0 else {
            let how =
                status == Int32.min
                ? "did not exit within \(Self.stopTimeout) of SIGTERM (killed)"
                : status < 0 ? "was ended by signal \(-status)" : "exited with status \(status)"
            throw BenchError("\(name) (pid \(server.pid)) \(how):\n\(server.logTail())")
        }
    }

    /// Stops the server on a failure path, ignoring how it ends.
    func stopQuietly() {
        _ = try? stop()
    }

    /// Parses `host:port` (or `[v6]:port`) as a ready file gives it.
    static func tcpEndpoint(_ address: String) -> RPCEndpoint? {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]), port > 0
        else { return nil }
        var host = String(address[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        return .tcp(host: host, port: port)
    }
}
