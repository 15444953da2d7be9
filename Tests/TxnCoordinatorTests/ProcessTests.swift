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

/// The whole cluster as processes: a consensus server, a blob-store and a coordinator
/// using them through location URLs; then the coordinator is killed with SIGKILL under
/// commit load and restarted.
@Suite struct ProcessTests {
    /// Three server processes in one scratch directory.
    struct Cluster: Sendable {
        let scratch: String
        let consensus: SpawnedServer
        let blobStore: SpawnedServer
        let consensusURL: String
        let blobURL: String
        let environment: [String: String]

        static func start(_ label: String) async throws -> Cluster {
            let scratch = NSTemporaryDirectory() + "txn-cluster-\(label)-\(UUID().uuidString.prefix(8))"
            try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
            try Data("cluster-token\n".utf8).write(to: URL(fileURLWithPath: scratch + "/token"))
            try Data("clusterkey clustersecret\n".utf8).write(to: URL(fileURLWithPath: scratch + "/s3-keys"))
            let consensus = try await SpawnedServer.launch(
                executable: try SpawnedServer.builtExecutable("consensus"),
                arguments: [
                    "--data-dir", scratch + "/consensus", "--listen", "unix:\(scratch)/consensus.sock", "--token-file",
                    scratch + "/token", "--metrics-listen", "off", "--log-level", "warning",
                ],
                readyFile: scratch + "/consensus.ready", logPath: scratch + "/consensus.log")
            let blobStore = try await SpawnedServer.launch(
                executable: try SpawnedServer.builtExecutable("blob-store"),
                arguments: [
                    "--data-dir", scratch + "/blobs", "--listen", "unix:\(scratch)/blob.sock", "--bucket", "persist",
                    "--credentials-file", scratch + "/s3-keys", "--metrics-listen", "off", "--log-level", "warning",
                ],
                readyFile: scratch + "/blob.ready", logPath: scratch + "/blob-store.log")
            var environment = ProcessInfo.processInfo.environment
            environment["AWS_ACCESS_KEY_ID"] = "clusterkey"
            environment["AWS_SECRET_ACCESS_KEY"] = "clustersecret"
            return Cluster(
                scratch: scratch, consensus: consensus, blobStore: blobStore,
                consensusURL: "consensus+unix://\(scratch)/consensus.sock?token_file=\(scratch)/token",
                blobURL: "s3://persist/data?endpoint=unix://\(scratch)/blob.sock", environment: environment)
        }

        /// Starts a coordinator on the cluster's storage (a new process each time).
        func coordinator(_ n: Int, logLevel: String = "warning", extraArguments: [String] = []) async throws -> SpawnedServer {
            try await SpawnedServer.launch(
                executable: try SpawnedServer.builtExecutable("txn-coordinator"),
                arguments: [
                    "--blob", blobURL, "--consensus", consensusURL, "--listen", "unix:\(scratch)/coordinator.sock",
                    "--metrics-listen", "off", "--log-level", logLevel,
                ] + extraArguments,
                readyFile: scratch + "/coordinator-\(n).ready", logPath: scratch + "/coordinator.log",
                timeout: .seconds(120), environment: environment)
        }

        var coordinatorEndpoint: RPCEndpoint { .unix(path: scratch + "/coordinator.sock") }

        func stop() async {
            for s in [consensus, blobStore] {
                s.signal(SIGTERM)
                _ = await s.exitStatus()
            }
            try? FileManager.default.removeItem(atPath: scratch)
        }
    }

    @Test func everyOperationOverTheServers() async throws {
        let cluster = try await Cluster.start("ops")
        let coordinator = try await cluster.coordinator(0)
        let txns = patientTxnClient(cluster.coordinatorEndpoint)
        do {
            for name in ["a", "b", "c"] { _ = try await txns.createShard(name) }
            _ = try await txns.register([.name("a"), .name("b"), .name("c")])
            let t = try await txns.commit([
                ShardWrites(shard: .name("a"), rows: rows(["1", "2"])), ShardWrites(shard: .name("b"), rows: rows(["3"])),
            ])
            #expect(keys(try await txns.read(.name("a"), asOf: t).rows) == ["1", "2"])
            #expect(keys(try await txns.read(.name("b")).rows) == ["3"])
            #expect(try await txns.read(.name("c")).rows.isEmpty)
            let status = try await txns.status()
            #expect(status.shards == 3 && status.registered == 3 && status.upper > t)
        } catch {
            Issue.record("\(error)\n\(coordinator.logTail())")
        }
        await txns.shutdown()
        coordinator.signal(SIGTERM)
        #expect(await coordinator.exitStatus() == 0, "\(coordinator.logTail())")
        await cluster.stop()
    }

    /// Writers commit transactions over three shards (each writes one unique key to every
    /// shard); the coordinator is SIGKILLed twice mid-load and restarted. Afterwards
    /// every acknowledged commit is visible at its timestamp in all three shards, and
    /// every commit (acknowledged or in doubt) is either in all three or in none.
    @Test func kill9OfTheCoordinatorLosesNoAcknowledgedCommit() async throws {
        let cluster = try await Cluster.start("kill9")
        var coordinator = try await cluster.coordinator(0)
        let setup = patientTxnClient(cluster.coordinatorEndpoint)
        for name in ["x", "y", "z"] { _ = try await setup.createShard(name) }
        _ = try await setup.register([.name("x"), .name("y"), .name("z")])
        await setup.shutdown()

        let acked = Locked<[(key: String, ts: Timestamp)]>([])
        let attempted = Locked<[String]>([])
        let stop = Locked(false)
        let client = TxnClient(
            .init(endpoint: cluster.coordinatorEndpoint, connectTimeout: .seconds(2), requestTimeout: .seconds(20)))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<8 {
                group.addTask {
                    var i = 0
                    while !stop.withLock({ $0 }) {
                        let key = "w\(w)-\(i)"
                        i += 1
                        attempted.withLock { $0.append(key) }
                        let writes = ["x", "y", "z"].map { ShardWrites(shard: .name($0), rows: rows([key])) }
                        do {
                            let ts = try await client.commit(writes)
                            acked.withLock { $0.append((key, ts)) }
                        } catch {
                            // In doubt (lost connection) or refused (coordinator down):
                            // the checks below settle what happened.
                            try? await Task.sleep(for: .milliseconds(20))
                        }
                    }
                }
            }
            for round in 1...2 {
                let target = acked.withLock { $0.count } + 150
                let deadline = ContinuousClock.now + .seconds(120)
                while acked.withLock({ $0.count }) < target {
                    try #require(ContinuousClock.now < deadline, "no progress:\n\(coordinator.logTail())")
                    try await Task.sleep(for: .milliseconds(10))
                }
                await coordinator.killed()
                coordinator = try await cluster.coordinator(round)
            }
            let target = acked.withLock { $0.count } + 100
            while acked.withLock({ $0.count }) < target { try await Task.sleep(for: .milliseconds(10)) }
            stop.withLock { $0 = true }
            try await group.waitForAll()
        }
        await client.shutdown()

        let reader = patientTxnClient(cluster.coordinatorEndpoint)
        var contents: [String: Set<String>] = [:]
        var latest: Timestamp = 0
        for name in ["x", "y", "z"] {
            let (asOf, rows) = try await reader.read(.name(name))
            latest = max(latest, asOf)
            contents[name] = Set(keys(rows))
        }
        for (key, ts) in acked.withLock({ $0 }) {
            for name in ["x", "y", "z"] {
                #expect(contents[name]?.contains(key) == true, "acknowledged \(key) missing from \(name)")
            }
            // Visible at its own timestamp, in every shard at once.
            let atTs = try await reader.read(.name("y"), asOf: ts)
            #expect(keys(atTs.rows).contains(key), "\(key) not visible at its timestamp \(ts)")
        }
        for key in attempted.withLock({ $0 }) {
            let present = ["x", "y", "z"].filter { contents[$0]?.contains(key) == true }
            #expect(present.isEmpty || present.count == 3, "\(key) is in \(present) only: not atomic")
        }
        print("coordinator kill -9 test: \(acked.withLock { $0.count }) acknowledged commits, \(attempted.withLock { $0.count }) attempted")
        await reader.shutdown()
        coordinator.signal(SIGTERM)
        #expect(await coordinator.exitStatus() == 0, "\(coordinator.logTail())")
        await cluster.stop()
    }
}

extension ProcessTests {
    /// A stop while storage is unreachable cannot finish the queued commit; the
    /// coordinator must still exit (status 1, saying why) once its shutdown timeout
    /// passes, instead of retrying forever.
    @Test func stopWithStorageGoneExitsAfterItsTimeout() async throws {
        let cluster = try await Cluster.start("stop")
        let coordinator = try await cluster.coordinator(
            0, logLevel: "info", extraArguments: ["--shutdown-timeout-seconds", "2", "--max-retry-backoff-ms", "50"])
        let client = patientTxnClient(cluster.coordinatorEndpoint)
        _ = try await client.createShard("a")
        _ = try await client.register([.name("a")])
        await cluster.blobStore.killed()
        // This commit's batch part cannot be uploaded: it stays queued, retrying.
        let stuck = Task { try? await client.commit([ShardWrites(shard: .name("a"), rows: rows(["k"]))]) }
        let deadline = ContinuousClock.now + .seconds(60)
        while !coordinator.logTail(200).contains("upload batch part keeps failing") {
            try #require(ContinuousClock.now < deadline, "the commit never started retrying:\n\(coordinator.logTail())")
            try await Task.sleep(for: .milliseconds(20))
        }
        coordinator.signal(SIGTERM)
        let status = await coordinator.exitStatus(within: .seconds(60))
        #expect(status == 1, "exit status \(String(describing: status)):\n\(coordinator.logTail())")
        #expect(coordinator.logTail(200).contains("shutdown did not finish"), "\(coordinator.logTail())")
        if status == nil { await coordinator.killed() }
        stuck.cancel()
        await client.shutdown()
        await cluster.stop()
    }
}

/// A value shared by tasks, behind a lock.
final class Locked<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>

    init(_ value: Value) { mutex = Mutex(value) }

    func withLock<R: Sendable>(_ body: (inout Value) -> R) -> R { mutex.withLock { body(&$0) } }
}
