import Foundation
import PersistConformance
import PersistCore
import PersistLocation
import PersistPostgres
import Testing

/// The Consensus conformance suite over PostgresConsensus and a real PostgreSQL: each
/// check gets a fresh database on the shared test server, over loopback TCP and over the
/// server's Unix socket. Reopening closes the client and opens a new one on the same
/// database (the data must all be there). One check at a time: each makes a database,
/// and the machine has two cores for the server and everything else.
@Suite(.serialized) struct PostgresConsensusConformanceTests {
    @Test(arguments: ConsensusConformance.checks)
    func overTCP(_ check: ConsensusConformance.Check) async throws {
        try await run(check, unixSocket: false)
    }

    @Test(arguments: ConsensusConformance.checks)
    func overUnixSocket(_ check: ConsensusConformance.Check) async throws {
        try await run(check, unixSocket: true)
    }

    func run(_ check: ConsensusConformance.Check, unixSocket: Bool) async throws {
        let clients = OpenClients()
        do {
            try await check.run(
                ConformanceHarness(
                    open: {
                        let (_, url) = try await PostgresTestSupport.freshDatabase("conformance", unixSocket: unixSocket)
                        return clients.add(try await PostgresTestSupport.open(url))
                    },
                    reopen: { old in
                        let client = try #require(old as? PostgresConsensus)
                        await client.close()
                        return clients.add(try await PostgresConsensus.open(client.configuration))
                    }))
        } catch {
            await clients.closeAll()
            throw error
        }
        await clients.closeAll()
    }
}
