import Foundation
import PersistConformance
import PersistCore
import PersistPostgres
import Synchronization
import Testing

/// Killing PostgreSQL (`pg_ctl stop -m immediate`, as a crash) while clients
/// compare-and-set in loops, then starting it again: no acknowledged write is lost,
/// nothing appears that was reported as not written, and the clients carry on.
@Suite struct PostgresRestartTests {
    /// One compare-and-set a client tried, and what it was told.
    struct Attempt: Sendable {
        enum Outcome: Sendable, Equatable {
            case committed
            case mismatch
            case determinateError
            case indeterminateError
        }

        var client: Int
        var key: String
        var version: VersionedData
        var outcome: Outcome
    }

    /// What the clients did so far, and when to stop.
    final class Journal: Sendable {
        private struct State {
            var attempts: [Attempt] = []
            var commitsSinceMark: [Int: Int] = [:]
            var stop = false
        }

        private let state = Mutex(State())

        func record(_ a: Attempt) {
            state.withLock { s in
                s.attempts.append(a)
                if a.outcome == .committed { s.commitsSinceMark[a.client, default: 0] += 1 }
            }
        }

        /// Starts counting commits afresh (after a restart).
        func mark() { state.withLock { $0.commitsSinceMark = [:] } }

        func everyClientCommitted(_ n: Int, clients: Int) -> Bool {
            state.withLock { s in (0..<clients).allSatisfy { s.commitsSinceMark[$0, default: 0] >= n } }
        }

        func stopAll() { state.withLock { $0.stop = true } }
        var stopped: Bool { state.withLock { $0.stop } }
        var attempts: [Attempt] { state.withLock { $0.attempts } }
    }

    @Test(.timeLimit(.minutes(10))) func killingTheServerLosesNoAcknowledgedWrite() async throws {
        let server = try await PostgresTestServer.startAsync(maxConnections: 50)
        let consensus: PostgresConsensus
        do {
            let url = try await server.createDatabase("restart")
            // An operation stuck across the kill ends with a timeout (a legitimate outcome,
            // counted like any error); 20 s keeps such a straggler from holding up the run.
            consensus = try await PostgresTestSupport.open(url, operationTimeout: .seconds(20))
        } catch {
            await server.removeAsync()
            throw error
        }
        let clients = 6
        let keys = ["k0", "k1", "k2"]  // two clients per key: they also race each other
        let journal = Journal()
        let seed: UInt64 = 0x9E57_A127
        let workers = Task {
            await withTaskGroup(of: Void.self) { group in
                for client in 0..<clients {
                    group.addTask {
                        await Self.clientLoop(client, key: keys[client % keys.count], consensus: consensus, journal: journal, seed: seed)
                    }
                }
            }
        }
        do {
            try await waitUntil("every client committed before the first kill") {
                journal.everyClientCommitted(5, clients: clients)
            }
            for round in 1...2 {
                try await server.stopAsync(mode: .immediate)
                try await server.startAgainAsync()
                journal.mark()
                try await waitUntil("every client committed again after restart \(round)") {
                    journal.everyClientCommitted(5, clients: clients)
                }
            }
        } catch {
            journal.stopAll()
            await workers.value
            await consensus.close()
            await server.removeAsync()
            throw error
        }
        journal.stopAll()
        await workers.value

        var stored: [String: [VersionedData]] = [:]
        for key in keys { stored[key] = try await consensus.scanAll(key) }
        await consensus.close()
        await server.removeAsync()

        let attempts = journal.attempts
        let byContent = Dictionary(grouping: attempts) { AttemptKey(key: $0.key, version: $0.version) }
        for key in keys {
            let versions = stored[key] ?? []
            let stamps = Set(versions.map { AttemptKey(key: key, version: $0) })
            // Every acknowledged write is there.
            for a in attempts where a.key == key && a.outcome == .committed {
                let found = stamps.contains(AttemptKey(key: key, version: a.version))
                #expect(found, "acknowledged \(a.version) on \(key) is lost")
                if !found {
                    // What was stored there instead, and who tried it: the story of the loss.
                    let stored = versions.first { $0.seqno == a.version.seqno }.map { String(decoding: $0.data, as: UTF8.self) }
                    print("lost on \(key) at \(a.version.seqno): stored there: \(stored ?? "nothing")")
                    for b in attempts where b.key == key && b.version.seqno == a.version.seqno {
                        print("  attempt by c\(b.client): \(String(decoding: b.version.data, as: UTF8.self)), told \(b.outcome)")
                    }
                }
            }
            // Nothing is there that its writer was told did not happen.
            for v in versions {
                let writers = byContent[AttemptKey(key: key, version: v)] ?? []
                #expect(writers.count == 1, "\(v) on \(key) has \(writers.count) attempts (payloads are unique)")
                if let w = writers.first {
                    #expect(
                        w.outcome == .committed || w.outcome == .indeterminateError,
                        "\(v) on \(key) is stored, but its writer was told \(w.outcome)")
                }
            }
            // Seqnos are strictly increasing (no version was written twice).
            #expect(zip(versions, versions.dropFirst()).allSatisfy { $0.seqno < $1.seqno })
        }
        let count = { (o: Attempt.Outcome) in attempts.filter { $0.outcome == o }.count }
        print(
            "postgres restart test: \(attempts.count) attempts, \(count(.committed)) committed, \(count(.mismatch)) "
                + "mismatches, \(count(.determinateError)) determinate and \(count(.indeterminateError)) indeterminate errors")
    }

    struct AttemptKey: Hashable {
        var key: String
        var version: VersionedData
    }

    /// Reads the head and tries to put the next version after it (sometimes skipping a
    /// seqno, chosen by the seeded generator), until told to stop. Every attempt's
    /// payload is unique, so the stored versions say who wrote them.
    static func clientLoop(_ client: Int, key: String, consensus: PostgresConsensus, journal: Journal, seed: UInt64) async {
        var rng = SeededGenerator(seed: seed &+ UInt64(client))
        var n = 0
        while !journal.stopped {
            let head: VersionedData?
            do {
                head = try await consensus.head(key)
            } catch {
                try? await Task.sleep(for: .milliseconds(5))
                continue
            }
            n += 1
            let step: UInt64 = UInt64.random(in: 0..<4, using: &rng) == 0 ? 2 : 1
            guard let seqno = SeqNo((head?.seqno.rawValue ?? 0) + step) else { return }
            let version = VersionedData(seqno: seqno, data: Array("c\(client)-a\(n)-\(rng.next())".utf8))
            let outcome: Attempt.Outcome
            do throws(StorageError) {
                switch try await consensus.compareAndSet(key, expected: head?.seqno, new: version) {
                case .committed: outcome = .committed
                case .expectationMismatch: outcome = .mismatch
                }
            } catch {
                outcome = error.isDeterminate ? .determinateError : .indeterminateError
            }
            journal.record(Attempt(client: client, key: key, version: version, outcome: outcome))
            if outcome == .determinateError || outcome == .indeterminateError {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
    }

    /// Polls `condition` until it holds; the deadline is a hang guard only.
    func waitUntil(_ what: String, _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(240)
        while !condition() {
            guard ContinuousClock.now < deadline else { throw PostgresServerError("gave up waiting until \(what)") }
            try await Task.sleep(for: .milliseconds(10))
        }
    }
}

/// Closing while the server is down: waiting operations fail at once (determinately)
/// and `close` returns, instead of waiting for a server that may never come back.
@Suite struct PostgresCloseTests {
    @Test(.timeLimit(.minutes(5))) func closingWhileTheServerIsDownReturns() async throws {
        let server = try await PostgresTestServer.startAsync(maxConnections: 20)
        let url = try await server.createDatabase("close_down")
        let c = try await PostgresTestSupport.open(url, operationTimeout: .seconds(240))
        #expect(try await c.compareAndSet("k", expected: nil, new: VersionedData(seqno: SeqNo(1), data: [1])) == .committed)
        try await server.stopAsync(mode: .immediate)
        let waiting = Task { () async -> StorageError? in
            do throws(StorageError) {
                _ = try await c.head("k")
                return nil
            } catch {
                return error
            }
        }
        await c.close()
        let error = await waiting.value
        #expect(error?.isDeterminate == true, "a statement that never found a connection did not run: \(String(describing: error))")
        await server.removeAsync()
    }
}
