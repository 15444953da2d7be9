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

/// The `consensus` process with failpoints and the deliberate bug `ack-before-fsync`:
/// it dies by SIGKILL exactly where told, what it made durable survives the restart, and
/// the bug really loses an acknowledged compare-and-set (so the crash test can catch it).
@Suite struct ConsensusFailpointProcessTests {
    static let key = "failpoint-key"

    static func version(_ n: Int) -> VersionedData {
        VersionedData(seqno: SeqNo(n), data: Array("version \(n) of \(key)".utf8))
    }

    /// Starts `consensus` on `scratch`'s log with the given switches (absent when nil)
    /// in an otherwise inherited environment.
    static func start(
        _ scratch: ScratchDirectory, _ n: Int, failpoints: String? = nil, bugs: String? = nil
    ) async throws -> SpawnedServer {
        var environment = ProcessInfo.processInfo.environment
        environment[Failpoints.variable] = failpoints
        environment[TestBugs.variable] = bugs
        return try await SpawnedServer.launch(
            executable: try SpawnedServer.builtExecutable("consensus"),
            arguments: [
                "--data-dir", scratch.path + "/log", "--listen", "unix:\(scratch.path)/rpc.sock", "--metrics-listen", "off",
                "--log-level", "notice",
            ],
            readyFile: scratch.path + "/ready-\(n)", logPath: scratch.path + "/server-\(n).log", timeout: .seconds(120),
            environment: environment)
    }

    /// One connection, deadlines only as hang guards: a request to a server that dies
    /// fails as soon as its connection closes.
    static func client(_ scratch: ScratchDirectory) -> RemoteConsensus {
        patientClient(.unix(path: scratch.path + "/rpc.sock"), connections: 1)
    }

    /// Extends the key's chain from nothing through `count` versions, each acknowledged.
    static func commitChain(_ client: RemoteConsensus, count: Int) async throws {
        for n in 0..<count {
            let result = try await client.compareAndSet(key, expected: n == 0 ? nil : SeqNo(n - 1), new: version(n))
            #expect(result == .committed, "version \(n)")
        }
    }

    /// The exit status of a server expected to die, or a failure with its log.
    static func death(of server: SpawnedServer) async throws -> Int32 {
        let status = try #require(await server.exitStatus(within: .seconds(120)), "still running:\n\(server.logTail())")
        return status
    }

    /// The key's head as a freshly started server (no switches) recovers it.
    static func headAfterRestart(_ scratch: ScratchDirectory, _ pool: FailpointTestProcesses) async throws -> VersionedData? {
        let again = try await start(scratch, 99)
        pool.add(again)
        let checker = client(scratch)
        let head = try await checker.head(key)
        await checker.shutdown()
        again.signal(SIGTERM)
        #expect(await again.exitStatus(within: .seconds(120)) == 0, "\(again.logTail())")
        return head
    }

    @Test func crashAfterFsyncBeforeReplyKeepsTheUnansweredCaS() async throws {
        try await FailpointTestProcesses.with("fp-after-fsync") { scratch, pool in
            let server = try await Self.start(scratch, 0, failpoints: "consensus.after-fsync-before-reply=crash#3")
            pool.add(server)
            let client = Self.client(scratch)
            try await Self.commitChain(client, count: 2)
            // The third batch is synced, then the process dies before answering it.
            await #expect(throws: StorageError.self) {
                try await client.compareAndSet(Self.key, expected: SeqNo(1), new: Self.version(2))
            }
            await client.shutdown()
            #expect(try await Self.death(of: server) == -SIGKILL)
            let log = try String(contentsOfFile: server.logPath, encoding: .utf8)
            #expect(log.contains("failpoint consensus.after-fsync-before-reply fired (hit 3"), "\(server.logTail())")
            #expect(log.contains("failpoints armed"))
            // Durable although never acknowledged.
            #expect(try await Self.headAfterRestart(scratch, pool) == Self.version(2))
        }
    }

    @Test func crashBetweenWriteAndFsyncLosesNothingUnderKill9() async throws {
        try await FailpointTestProcesses.with("fp-before-fsync") { scratch, pool in
            let server = try await Self.start(scratch, 0, failpoints: "consensus.before-fsync=crash#3")
            pool.add(server)
            let client = Self.client(scratch)
            try await Self.commitChain(client, count: 2)
            await #expect(throws: StorageError.self) {
                try await client.compareAndSet(Self.key, expected: SeqNo(1), new: Self.version(2))
            }
            await client.shutdown()
            #expect(try await Self.death(of: server) == -SIGKILL)
            #expect(
                try String(contentsOfFile: server.logPath, encoding: .utf8).contains("failpoint consensus.before-fsync fired (hit 3"))
            // The written bytes were in the page cache, which outlives the process: the
            // unsynced record is there after the restart. (This is why the deliberate bug
            // below acknowledges before writing, not merely before syncing.)
            #expect(try await Self.headAfterRestart(scratch, pool) == Self.version(2))
        }
    }

    @Test func ackBeforeFsyncLosesAnAcknowledgedCaSOnKill9() async throws {
        try await FailpointTestProcesses.with("fp-ack-early") { scratch, pool in
            // The third batch is acknowledged, then its writer holds still before writing
            // (two minutes: only a hang guard, the kill below comes first).
            let server = try await Self.start(
                scratch, 0, failpoints: "consensus.after-early-ack=sleep(120000)#3", bugs: "ack-before-fsync")
            pool.add(server)
            let client = Self.client(scratch)
            try await Self.commitChain(client, count: 3)
            await client.shutdown()
            // The caller holds "committed" for version 2; now the crash.
            await server.killed()
            let log = try String(contentsOfFile: server.logPath, encoding: .utf8)
            #expect(log.contains("DELIBERATE BUG ENABLED"), "\(server.logTail())")
            #expect(log.contains("ack-before-fsync"))
            let head = try await Self.headAfterRestart(scratch, pool)
            #expect(head == Self.version(1), "the acknowledged version 2 is lost: the bug is real")
        }
    }

    @Test func ackBeforeFsyncWithoutACrashStillStoresEverything() async throws {
        try await FailpointTestProcesses.with("fp-ack-early-clean") { scratch, pool in
            let server = try await Self.start(scratch, 0, bugs: "ack-before-fsync")
            pool.add(server)
            let client = Self.client(scratch)
            try await Self.commitChain(client, count: 20)
            await client.shutdown()
            server.signal(SIGTERM)
            #expect(await server.exitStatus(within: .seconds(120)) == 0, "\(server.logTail())")
            #expect(try await Self.headAfterRestart(scratch, pool) == Self.version(19))
        }
    }

    @Test(arguments: [
        ([Failpoints.variable: "consensus.before-fsync=explode"], "malformed entry \"consensus.before-fsync=explode\""),
        ([Failpoints.variable: "consensus.befor-fsync=crash"], "unknown failpoint \"consensus.befor-fsync\""),
        ([Failpoints.variable: "consensus.before-fsync=crash", Failpoints.seedVariable: "-1"], "\"-1\" is not"),
        ([TestBugs.variable: "ack-before-fsync,ack-late"], "unknown test bug \"ack-late\""),
    ])
    func badSwitchesStopTheServerWithExitCode2(_ switches: [String: String], _ message: String) async throws {
        let scratch = ScratchDirectory("fp-bad")
        defer { scratch.remove() }
        let environment = ProcessInfo.processInfo.environment.merging(switches) { _, new in new }
        let outcome = try await ChildProgram.run(
            executable: try SpawnedServer.builtExecutable("consensus"),
            arguments: ["--data-dir", scratch.path + "/log", "--listen", "unix:\(scratch.path)/rpc.sock", "--metrics-listen", "off"],
            environment: environment, timeout: .seconds(120))
        #expect(outcome.status == 2, "\(outcome.output)")
        #expect(outcome.output.contains(message), "\(outcome.output)")
        // Refused before touching anything.
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/log"))
    }
}

/// Server processes a test started. At its end, those still running are killed; one
/// the test already reaped is left alone (its pid may belong to another process now).
final class FailpointTestProcesses: Sendable {
    private let servers = Mutex<[SpawnedServer]>([])

    func add(_ server: SpawnedServer) { servers.withLock { $0.append(server) } }

    /// Kills and reaps the ones still running, on a thread of its own.
    func stopAll() async {
        let all = servers.withLock { $0 }
        _ = try? await SpawnedServer.offThread {
            for server in all where SpawnedServer.reap(server.pid, by: .now) == nil { server.kill9() }
        }
    }

    /// Runs `body` with a fresh scratch directory and a pool, then stops what is left
    /// running and removes the directory, whether `body` failed or not.
    static func with(
        _ label: String, _ body: (ScratchDirectory, FailpointTestProcesses) async throws -> Void
    ) async throws {
        let scratch = ScratchDirectory(label)
        let pool = FailpointTestProcesses()
        do {
            try await body(scratch, pool)
        } catch {
            await pool.stopAll()
            scratch.remove()
            throw error
        }
        await pool.stopAll()
        scratch.remove()
    }
}
