import PersistCodec
import PersistCore
import Testing

@testable import TxnCoordinator

/// Group commit, made deterministic by holding the worker inside its first commit (a
/// hook) until the other commits are queued.
@Suite struct CoordinatorGroupCommitTests {
    /// Opens a coordinator whose first commit step waits at `gate`, with every step's
    /// commit count recorded in `sizes`.
    static func heldCoordinator(_ env: CoordinatorEnv, groupCommit: Bool, gate: HookGate, sizes: HookLog<Int>) async throws
        -> TxnCoordinator
    {
        let c = try await env.open(
            env.configuration(groupCommit: groupCommit),
            hooks: CoordinatorHooks(beforeCommitGroup: { n in
                sizes.append(n)
                if sizes.all.count == 1 { await gate.wait() }
            }))
        _ = try await c.createShard(name: "t")
        _ = try await c.register([.name("t")], at: nil)
        return c
    }

    /// Starts the held first commit and then `n` more, all while the worker is held;
    /// returns the first commit's time and the others' times, in the order they were
    /// started.
    static func commitWhileHeld(_ c: TxnCoordinator, n: Int, gate: HookGate, sizes: HookLog<Int>) async throws
        -> (first: Timestamp, rest: [Timestamp])
    {
        async let first = c.commit([ShardWrites(shard: .name("t"), rows: [rowW("first")])], at: nil)
        await waitUntil("the worker holds the first commit") { sizes.all.count == 1 }
        let rest = try await withThrowingTaskGroup(of: (Int, Timestamp).self) { group in
            for i in 0..<n {
                group.addTask { (i, try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("k\(i)")])], at: nil)) }
            }
            await waitUntil("\(n) commits are queued") { c.core.queueDepth == n }
            gate.open()
            var times = Array(repeating: Timestamp(0), count: n)
            for try await (i, t) in group { times[i] = t }
            return times
        }
        return (try await first, rest)
    }

    @Test func commitsQueuedBehindABusyWorkerShareOneTxnsWrite() async throws {
        let env = CoordinatorEnv(seed: 21)
        let gate = HookGate()
        let sizes = HookLog<Int>()
        let c = try await Self.heldCoordinator(env, groupCommit: true, gate: gate, sizes: sizes)
        let (first, rest) = try await Self.commitWhileHeld(c, n: 20, gate: gate, sizes: sizes)

        #expect(sizes.all == [1, 20], "one step for the held commit, one for the twenty")
        #expect(Set(rest).count == 1, "the twenty share one timestamp")
        let group = try #require(rest.first)
        #expect(group > first)
        #expect(try await c.read(.name("t"), asOf: first).rows.count == 1)
        #expect(try await c.read(.name("t"), asOf: group).rows.count == 21, "every grouped commit is durable and applied")
        #expect(try await c.status().upper == group + 1)
        await c.shutdown()
    }

    @Test func withoutGroupCommitEveryCommitIsItsOwnTxnsWrite() async throws {
        let env = CoordinatorEnv(seed: 22)
        let gate = HookGate()
        let sizes = HookLog<Int>()
        let c = try await Self.heldCoordinator(env, groupCommit: false, gate: gate, sizes: sizes)
        let (first, rest) = try await Self.commitWhileHeld(c, n: 20, gate: gate, sizes: sizes)

        #expect(sizes.all == Array(repeating: 1, count: 21))
        #expect(Set(rest).count == 20, "twenty distinct timestamps")
        #expect(rest.allSatisfy { $0 > first })
        #expect(try await c.read(.name("t"), asOf: nil).rows.count == 21)
        await c.shutdown()
    }

    @Test func explicitTimestampsNeverJoinAGroup() async throws {
        let env = CoordinatorEnv(seed: 23)
        let gate = HookGate()
        let sizes = HookLog<Int>()
        let c = try await Self.heldCoordinator(env, groupCommit: true, gate: gate, sizes: sizes)
        async let first = c.commit([ShardWrites(shard: .name("t"), rows: [rowW("first")])], at: nil)
        await waitUntil("the worker holds the first commit") { sizes.all.count == 1 }
        let explicitTs = env.clock.nowMilliseconds() + 1000
        let results = try await withThrowingTaskGroup(of: (String, Timestamp).self) { group in
            for i in 0..<3 {
                group.addTask { ("g\(i)", try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("g\(i)")])], at: nil)) }
            }
            group.addTask { ("x", try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("x")])], at: explicitTs)) }
            await waitUntil("four commits are queued") { c.core.queueDepth == 4 }
            gate.open()
            var out: [String: Timestamp] = [:]
            for try await (k, t) in group { out[k] = t }
            return out
        }
        _ = try await first
        #expect(sizes.all.sorted() == [1, 1, 3], "the held commit, the explicit one alone, the three together")
        #expect(results["x"] == explicitTs)
        #expect(Set(["g0", "g1", "g2"].compactMap { results[$0] }).count == 1)
        #expect(try await c.read(.name("t"), asOf: nil).rows.count == 5)
        await c.shutdown()
    }
}
