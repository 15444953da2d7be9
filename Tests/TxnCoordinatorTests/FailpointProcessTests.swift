#if canImport(Glibc)
import Glibc
#endif
import Foundation
import PersistCodec
import PersistConformance
import PersistCore
import PersistRPC
import Synchronization
import Testing
import TxnClient

/// The `txn-coordinator` process (embedded storage in one data directory) with
/// failpoints along the commit path and with the deliberate bug
/// `commit-first-shard-only`: it dies by SIGKILL where told, and after a restart a
/// transaction is visible in every shard exactly when its txns-shard CaS happened;
/// the bug really commits a partial transaction.
@Suite struct CoordinatorFailpointProcessTests {
    static let shards = ["x", "y", "z"]

    final class Run: Sendable {
        let scratch: String
        private let started = Mutex<[SpawnedServer]>([])

        init(_ label: String) throws {
            scratch = NSTemporaryDirectory() + "txn-failpoint-\(label)-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        }

        var endpoint: RPCEndpoint { .unix(path: scratch + "/coordinator.sock") }

        /// Starts a coordinator on the run's data directory with the given switches
        /// (absent when nil) in an otherwise inherited environment.
        func start(_ n: Int, failpoints: String? = nil, bugs: String? = nil) async throws -> SpawnedServer {
            var environment = ProcessInfo.processInfo.environment
            environment[Failpoints.variable] = failpoints
            environment[TestBugs.variable] = bugs
            let server = try await SpawnedServer.launch(
                executable: try SpawnedServer.builtExecutable("txn-coordinator"),
                arguments: [
                    "--data-dir", scratch + "/data", "--listen", "unix:\(scratch)/coordinator.sock", "--metrics-listen", "off",
                    "--log-level", "notice",
                ],
                readyFile: scratch + "/ready-\(n)", logPath: scratch + "/coordinator-\(n).log", timeout: .seconds(120),
                environment: environment)
            started.withLock { $0.append(server) }
            return server
        }

        /// Creates and registers the test shards on a coordinator started for that alone.
        func setUpShards() async throws {
            let server = try await start(0)
            let client = patientTxnClient(endpoint)
            for name in CoordinatorFailpointProcessTests.shards { _ = try await client.createShard(name) }
            _ = try await client.register(CoordinatorFailpointProcessTests.shards.map { .name($0) })
            await client.shutdown()
            try await stop(server)
        }

        /// SIGTERM, and a clean exit expected.
        func stop(_ server: SpawnedServer) async throws {
            server.signal(SIGTERM)
            #expect(await server.exitStatus(within: .seconds(120)) == 0, "\(server.logTail())")
        }

        /// Each shard's keys as a fresh coordinator (no switches) serves them.
        func contentsAfterRestart() async throws -> [String: [String]] {
            let server = try await start(99)
            let client = patientTxnClient(endpoint)
            var contents: [String: [String]] = [:]
            for name in CoordinatorFailpointProcessTests.shards { contents[name] = keys(try await client.read(.name(name)).rows) }
            await client.shutdown()
            try await stop(server)
            return contents
        }

        /// Kills and reaps the coordinators still running, removes the directory.
        func finish() async {
            let all = started.withLock { $0 }
            _ = try? await SpawnedServer.offThread {
                for server in all where SpawnedServer.reap(server.pid, by: .now) == nil { server.kill9() }
            }
            try? FileManager.default.removeItem(atPath: scratch)
        }

        static func with(_ label: String, _ body: (Run) async throws -> Void) async throws {
            let run = try Run(label)
            do {
                try await body(run)
            } catch {
                await run.finish()
                throw error
            }
            await run.finish()
        }
    }

    static var transaction: [ShardWrites] { shards.map { ShardWrites(shard: .name($0), rows: rows(["k1"])) } }

    /// Where the crash is, whether the client may have been answered first (the reply
    /// is handed to its connection before apply), and whether the transaction must be
    /// there after the restart.
    struct Case: Sendable, CustomTestStringConvertible {
        var point: Failpoint
        var mayBeAnswered: Bool
        var durable: Bool
        var testDescription: String { point.rawValue }
    }

    @Test(arguments: [
        Case(point: .coordinatorAfterBatchPut, mayBeAnswered: false, durable: false),
        Case(point: .coordinatorAfterTxnsCaS, mayBeAnswered: false, durable: true),
        Case(point: .coordinatorBeforeReply, mayBeAnswered: false, durable: true),
        Case(point: .coordinatorBeforeApply, mayBeAnswered: true, durable: true),
        Case(point: .coordinatorMidApply, mayBeAnswered: true, durable: true),
    ])
    func crashOnTheCommitPathIsAllOrNothingAfterRestart(_ c: Case) async throws {
        try await Run.with(c.point.rawValue) { run in
            try await run.setUpShards()
            let server = try await run.start(1, failpoints: "\(c.point.rawValue)=crash")
            let client = patientTxnClient(run.endpoint)
            let answered: Bool
            do {
                _ = try await client.commit(Self.transaction)
                answered = true
            } catch {
                answered = false
            }
            await client.shutdown()
            #expect(!answered || c.mayBeAnswered, "answered although the crash came before the reply")
            let status = try #require(await server.exitStatus(within: .seconds(120)), "still running:\n\(server.logTail())")
            #expect(status == -SIGKILL, "\(server.logTail())")
            let log = try String(contentsOfFile: server.logPath, encoding: .utf8)
            #expect(log.contains("failpoint \(c.point.rawValue) fired (hit 1"), "\(server.logTail())")

            let contents = try await run.contentsAfterRestart()
            for name in Self.shards {
                #expect(contents[name] == (c.durable ? ["k1"] : []), "\(name) after a crash at \(c.point.rawValue): \(contents)")
            }
        }
    }

    @Test func commitFirstShardOnlyAcknowledgesAPartialTransaction() async throws {
        try await Run.with("first-shard-only") { run in
            try await run.setUpShards()
            let server = try await run.start(1, bugs: "commit-first-shard-only")
            let client = patientTxnClient(run.endpoint)
            let ts = try await client.commit(Self.transaction)
            var contents: [String: [String]] = [:]
            for name in Self.shards { contents[name] = keys(try await client.read(.name(name), asOf: ts).rows) }
            await client.shutdown()
            #expect(contents == ["x": ["k1"], "y": [], "z": []], "only the first shard's writes were committed")
            try await run.stop(server)
            let log = try String(contentsOfFile: server.logPath, encoding: .utf8)
            #expect(log.contains("DELIBERATE BUG ENABLED") && log.contains("commit-first-shard-only"), "\(server.logTail())")
            // Without the bug the same commit is whole.
            let fixed = try await run.start(2)
            let again = patientTxnClient(run.endpoint)
            _ = try await again.commit(Self.shards.map { ShardWrites(shard: .name($0), rows: rows(["k2"])) })
            await again.shutdown()
            try await run.stop(fixed)
            let after = try await run.contentsAfterRestart()
            #expect(after == ["x": ["k1", "k2"], "y": ["k2"], "z": ["k2"]])
        }
    }

    /// Every server refuses bad switches before doing anything, with exit code 2 and a
    /// message naming the bad text.
    @Test(arguments: ["txn-coordinator", "consensus", "blob-store"])
    func badSwitchesStopEveryServerWithExitCode2(_ executable: String) async throws {
        let scratch = NSTemporaryDirectory() + "txn-failpoint-bad-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let arguments =
            ["--data-dir", scratch + "/data", "--listen", "unix:\(scratch)/server.sock", "--metrics-listen", "off"]
            + (executable == "blob-store" ? ["--allow-anonymous"] : [])
        let cases: [([String: String], String)] = [
            ([Failpoints.variable: "coordinator.mid-apply=crash#"], "malformed entry \"coordinator.mid-apply=crash#\""),
            ([Failpoints.variable: "coordinator.midapply=crash"], "unknown failpoint \"coordinator.midapply\""),
            ([TestBugs.variable: "commit-all-shards"], "unknown test bug \"commit-all-shards\""),
        ]
        for (switches, message) in cases {
            let outcome = try await ChildProgram.run(
                executable: try SpawnedServer.builtExecutable(executable), arguments: arguments,
                environment: ProcessInfo.processInfo.environment.merging(switches) { _, new in new }, timeout: .seconds(120))
            #expect(outcome.status == 2, "\(executable) with \(switches): \(outcome.output)")
            #expect(outcome.output.contains(message), "\(executable) with \(switches): \(outcome.output)")
            #expect(!FileManager.default.fileExists(atPath: scratch + "/data"), "\(executable) touched its data directory")
        }
    }
}
