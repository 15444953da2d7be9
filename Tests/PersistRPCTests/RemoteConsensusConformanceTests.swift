#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistRPC
import Synchronization
import Testing

/// The Consensus conformance suite through RemoteConsensus and a real `consensus`
/// process: over TCP without a token, and over a Unix socket with one. Reopening stops
/// the server with SIGTERM (it must exit 0) and starts a new one on the same log.
@Suite struct RemoteConsensusConformanceTests {
    @Test(arguments: ConsensusConformance.checks)
    func overTCP(_ check: ConsensusConformance.Check) async throws {
        try await run(check, unix: false)
    }

    @Test(arguments: ConsensusConformance.checks)
    func overUnixSocketWithToken(_ check: ConsensusConformance.Check) async throws {
        try await run(check, unix: true)
    }

    func run(_ check: ConsensusConformance.Check, unix: Bool) async throws {
        let scratch = ScratchDirectory("remote-conformance")
        let pool = ServerPool()
        let clients = ClientPool()
        defer {
            pool.killAll()
            scratch.remove()
        }
        let token: [UInt8] = Array("conformance-token".utf8)
        let counter = Counter()
        let executable = try SpawnedServer.builtExecutable("consensus")

        @Sendable func start(dataDir: String) async throws -> RemoteConsensus {
            let n = counter.next()
            var arguments = ["--data-dir", dataDir, "--metrics-listen", "off", "--log-level", "warning"]
            if unix {
                let tokenPath = scratch.path + "/token"
                try Data("conformance-token\n".utf8).write(to: URL(fileURLWithPath: tokenPath))
                arguments += ["--listen", "unix:\(dataDir).sock", "--token-file", tokenPath]
            } else {
                arguments += ["--listen", "127.0.0.1:0"]
            }
            let server = try await SpawnedServer.launch(
                executable: executable, arguments: arguments, readyFile: scratch.path + "/ready-\(n)",
                logPath: scratch.path + "/server-\(n).log")
            pool.add(server)
            let endpoint: RemoteConsensus.Endpoint
            if unix {
                endpoint = .unix(path: dataDir + ".sock")
            } else {
                let address = try server.address("rpc")
                let parts = address.split(separator: ":")
                endpoint = .tcp(host: String(parts[0]), port: try #require(Int(parts[1])))
            }
            let client = patientClient(endpoint, token: unix ? token : nil)
            clients.add(client, server: server)
            return client
        }

        try await check.run(
            ConformanceHarness(
                open: { try await start(dataDir: scratch.path + "/log-\(counter.next())") },
                reopen: { old in
                    let client = try #require(old as? RemoteConsensus)
                    let (server, dataDir) = try #require(clients.server(of: client))
                    await client.shutdown()
                    server.signal(SIGTERM)
                    let status = await server.exitStatus()
                    try #require(status == 0, "SIGTERM must drain and exit 0, got \(status):\n\(server.logTail())")
                    return try await start(dataDir: dataDir)
                }))
        for client in clients.all() { await client.shutdown() }
    }
}

/// Which server each client talks to, for reopening.
final class ClientPool: Sendable {
    private let entries = Mutex<[(RemoteConsensus, SpawnedServer)]>([])

    func add(_ client: RemoteConsensus, server: SpawnedServer) {
        entries.withLock { $0.append((client, server)) }
    }

    func server(of client: RemoteConsensus) -> (SpawnedServer, String)? {
        entries.withLock { all in
            guard let (_, server) = all.first(where: { $0.0 === client }),
                let i = server.arguments.firstIndex(of: "--data-dir")
            else { return nil }
            return (server, server.arguments[i + 1])
        }
    }

    func all() -> [RemoteConsensus] { entries.withLock { $0.map(\.0) } }
}

final class Counter: Sendable {
    private let value = Mutex(0)
    func next() -> Int { value.withLock { $0 += 1; return $0 } }
}
