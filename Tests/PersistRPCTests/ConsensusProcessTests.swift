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

/// The `consensus` process under signals: SIGTERM drains and exits 0; SIGKILL under
/// concurrent compare-and-set load loses no acknowledged write, and clients resolve
/// their in-doubt requests by reading once a new server is up.
@Suite struct ConsensusProcessTests {
    static let writers = 16

    /// The bytes every writer stores at a seqno, so a reader can tell exactly what a
    /// version must hold.
    static func payload(_ key: String, _ seqno: SeqNo) -> [UInt8] {
        Array("\(key)@\(seqno.rawValue)".utf8) + Array(repeating: UInt8(truncatingIfNeeded: seqno.rawValue), count: 64)
    }

    struct Tally: Sendable {
        var acked: [String: SeqNo] = [:]
        var indeterminate = 0
        var determinate = 0

        /// Versions acknowledged so far (each key's chain starts at 0).
        var total: Int { acked.values.reduce(0) { $0 + Int($1.rawValue) + 1 } }
    }

    /// The writers' shared record of what was acknowledged and what failed.
    final class Tracker: Sendable {
        private let state = Mutex(Tally())

        func ack(_ key: String, _ seqno: SeqNo) { state.withLock { $0.acked[key] = seqno } }

        func failed(determinate: Bool) {
            state.withLock { determinate ? ($0.determinate += 1) : ($0.indeterminate += 1) }
        }

        var snapshot: Tally { state.withLock { $0 } }
    }

    /// One writer's chain: extends `key` until `stop` says so. An indeterminate failure
    /// is resolved by reading the head (after the server is back) and comparing it with
    /// what was attempted; a determinate one is simply retried.
    static func writeChain(
        key: String, client: RemoteConsensus, tally: Tracker, stop: @Sendable () -> Bool
    ) async {
        var head: SeqNo? = nil
        while !stop() {
            let next = head.map { SeqNo($0.rawValue + 1) ?? .maximum } ?? .minimum
            let version = VersionedData(seqno: next, data: payload(key, next))
            do throws(StorageError) {
                switch try await client.compareAndSet(key, expected: head, new: version) {
                case .committed:
                    head = next
                    tally.ack(key, next)
                case .expectationMismatch(let current):
                    // Only after an in-doubt attempt that did commit; adopt it.
                    head = current?.seqno
                }
            } catch {
                tally.failed(determinate: error.isDeterminate)
                // Whatever happened, the truth is the head; read it once the server answers.
                while !stop() {
                    do throws(StorageError) {
                        let current = try await client.head(key)
                        if let current, current.seqno == next {
                            #expect(current.data == version.data, "an in-doubt CaS that landed must hold its bytes")
                            tally.ack(key, next)
                        }
                        head = current?.seqno
                        break
                    } catch {
                        try? await Task.sleep(for: .milliseconds(20))
                    }
                }
            }
        }
    }

    /// Every key's versions are gap-free from 0, hold the expected bytes, and reach at
    /// least the last acknowledged seqno.
    static func verify(_ client: RemoteConsensus, _ acked: [String: SeqNo]) async throws {
        for (key, last) in acked {
            let versions = try await client.scanAll(key)
            #expect(versions.map(\.seqno.rawValue) == Array(0..<UInt64(versions.count)), "\(key) has gaps")
            for v in versions { #expect(v.data == payload(key, v.seqno), "\(key)@\(v.seqno) holds the wrong bytes") }
            #expect((versions.last?.seqno ?? .minimum) >= last, "\(key) lost acknowledged seqno \(last)")
        }
    }

    static func start(_ scratch: ScratchDirectory, _ n: Int, logLevel: String = "notice") async throws -> SpawnedServer {
        try await SpawnedServer.launch(
            executable: try SpawnedServer.builtExecutable("consensus"),
            arguments: [
                "--data-dir", scratch.path + "/log", "--listen", "unix:\(scratch.path)/rpc.sock", "--metrics-listen", "off",
                "--log-level", logLevel,
            ],
            readyFile: scratch.path + "/ready-\(n)", logPath: scratch.path + "/server.log")
    }

    /// Waits (bounded) until the writers have acknowledged `count` more versions.
    static func waitForAcks(_ tally: Tracker, atLeast count: Int) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while tally.snapshot.total < count {
            try #require(ContinuousClock.now < deadline, "writers made no progress")
            try await Task.sleep(for: .milliseconds(5))
        }
    }


    @Test func kill9UnderLoadLosesNoAcknowledgedCaS() async throws {
        let scratch = ScratchDirectory("consensus-kill9")
        defer { scratch.remove() }
        let pool = ServerPool()
        defer { pool.killAll() }
        var server = try await Self.start(scratch, 0)
        pool.add(server)
        let client = RemoteConsensus(
            .init(endpoint: .unix(path: scratch.path + "/rpc.sock"), connections: 4, connectTimeout: .seconds(2), requestTimeout: .seconds(5)))
        let tally = Tracker()
        let stopping = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<Self.writers {
                group.addTask {
                    await Self.writeChain(key: "key-\(w)", client: client, tally: tally, stop: { stopping.isSet })
                }
            }
            // Three crashes, each under load, each followed by a restart on the same log.
            for round in 1...3 {
                try await Self.waitForAcks(tally, atLeast: tally.snapshot.total + 200)
                await server.killed()
                let ackedAtCrash = tally.snapshot.acked
                server = try await Self.start(scratch, round)
                pool.add(server)
                // Nothing acknowledged before the crash is missing after it.
                let checker = patientClient(.unix(path: scratch.path + "/rpc.sock"))
                try await Self.verify(checker, ackedAtCrash)
                await checker.shutdown()
            }
            try await Self.waitForAcks(tally, atLeast: tally.snapshot.total + 200)
            stopping.set()
            try await group.waitForAll()
        }
        let final = tally.snapshot
        try await Self.verify(client, final.acked)
        #expect(final.acked.count == Self.writers)
        await client.shutdown()
        server.signal(SIGTERM)
        #expect(await server.exitStatus() == 0, "\(server.logTail())")
        print("kill -9 test: \(tally.snapshot.total) acks, \(final.indeterminate) indeterminate and \(final.determinate) determinate errors resolved")
    }

    @Test func sigtermDrainsInFlightRequestsAndExitsZero() async throws {
        let scratch = ScratchDirectory("consensus-sigterm")
        defer { scratch.remove() }
        let pool = ServerPool()
        defer { pool.killAll() }
        let server = try await Self.start(scratch, 0, logLevel: "info")
        pool.add(server)
        // The socket is private to this user from the start.
        var st = stat()
        #expect(lstat(scratch.path + "/rpc.sock", &st) == 0)
        #expect((st.st_mode & S_IFMT) == S_IFSOCK)
        #expect(st.st_mode & 0o777 == 0o600, "socket mode \(String(st.st_mode & 0o777, radix: 8))")
        let client = RemoteConsensus(.init(endpoint: .unix(path: scratch.path + "/rpc.sock"), connectTimeout: .seconds(1), requestTimeout: .seconds(5)))
        let tally = Tracker()
        let stopping = Flag()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<Self.writers {
                group.addTask {
                    await Self.writeChain(key: "key-\(w)", client: client, tally: tally, stop: { stopping.isSet })
                }
            }
            try await Self.waitForAcks(tally, atLeast: 300)
            server.signal(SIGTERM)
            let status = await server.exitStatus()
            stopping.set()
            try await group.waitForAll()
            #expect(status == 0, "SIGTERM must drain and exit 0:\n\(server.logTail())")
        }
        let log = try String(contentsOfFile: server.logPath, encoding: .utf8)
        #expect(log.contains("consensus draining"))
        #expect(log.contains("log closed"))
        // Whatever was acknowledged before and during the drain is there after a restart.
        let again = try await Self.start(scratch, 1)
        pool.add(again)
        let checker = patientClient(.unix(path: scratch.path + "/rpc.sock"))
        try await Self.verify(checker, tally.snapshot.acked)
        await checker.shutdown()
        await client.shutdown()
    }
}

/// A one-way stop signal shared by tasks.
final class Flag: Sendable {
    private let value = Mutex(false)
    var isSet: Bool { value.withLock { $0 } }
    func set() { value.withLock { $0 = true } }
}
