import PersistClient
import PersistCodec
import PersistCore
import Testing

@testable import TxnCoordinator

/// Restarts without shutdown, and several coordinators on one txns shard.
@Suite struct CoordinatorRecoveryTests {
    /// Runs a first coordinator that "crashes" after its second commit is durable and
    /// answered, before applying it: its worker stays stuck in the hook, and the
    /// coordinator is dropped without shutdown. Returns the two commit times.
    static func crashAfterSecondCommit(_ env: CoordinatorEnv, stuck: HookGate) async throws -> (Timestamp, Timestamp) {
        let commits = HookLog<Timestamp>()
        let c1 = try await env.open(
            hooks: CoordinatorHooks(afterCommitBeforeApply: { ts in
                commits.append(ts)
                if commits.all.count == 2 { await stuck.wait() }
            }))
        _ = try await c1.createShard(name: "a")
        _ = try await c1.createShard(name: "b")
        _ = try await c1.register([.name("a"), .name("b")], at: nil)
        env.clock.advance(byMilliseconds: 10)
        let t1 = try await c1.commit([ShardWrites(shard: .name("a"), rows: [rowW("a1")])], at: nil)
        env.clock.advance(byMilliseconds: 10)
        let t2 = try await c1.commit(
            [ShardWrites(shard: .name("a"), rows: [rowW("a2")]), ShardWrites(shard: .name("b"), rows: [rowW("b2")])], at: nil)
        #expect(commits.all == [t1, t2])
        return (t1, t2)
    }

    @Test func aRestartAppliesAcknowledgedCommitsAndKeepsTimestampsGrowing() async throws {
        let env = CoordinatorEnv(seed: 31, clockStart: 5_000_000)
        let stuck = HookGate()
        let (_, t2) = try await Self.crashAfterSecondCommit(env, stuck: stuck)

        // The new process's clock is far behind: timestamps must still grow.
        let c2 = try await env.open(clock: ManualPersistClock(startingAt: 10))
        let status = try await c2.status()
        #expect(status.upper == t2 + 1)
        #expect(status.unapplied == 0, "recovery applied the acknowledged commit")
        #expect(keysOf(try await c2.read(.name("a"), asOf: nil).rows) == ["a1", "a2"])
        #expect(keysOf(try await c2.read(.name("b"), asOf: t2).rows) == ["b2"])
        #expect(try await c2.read(.name("b"), asOf: t2 - 1).rows.isEmpty)
        #expect(try await c2.listShards().map(\.registered) == [true, true], "names and registrations survive")

        let t3 = try await c2.commit([ShardWrites(shard: .name("b"), rows: [rowW("b3")])], at: nil)
        #expect(t3 > t2)
        let r = try await c2.register([.name("a")], at: nil)
        #expect(r > t3)
        #expect(keysOf(try await c2.read(.name("b"), asOf: nil).rows) == ["b2", "b3"])
        stuck.open()  // the old worker applies (a no-op now) and stops
        await c2.shutdown()
    }

    @Test func aRestartAfterShutdownSeesEverything() async throws {
        let env = CoordinatorEnv(seed: 32)
        let c1 = try await env.open()
        _ = try await c1.createShard(name: "t")
        _ = try await c1.register([.name("t")], at: nil)
        var last: Timestamp = 0
        for i in 0..<5 {
            env.clock.advance(byMilliseconds: 3)
            last = try await c1.commit([ShardWrites(shard: .name("t"), rows: [rowW("k\(i)")])], at: nil)
        }
        await c1.shutdown()
        let c2 = try await env.open()
        #expect(keysOf(try await c2.read(.name("t"), asOf: nil).rows) == ["k0", "k1", "k2", "k3", "k4"])
        #expect(try await c2.status().upper == last + 1)
        await c2.shutdown()
    }

    @Test func twoCoordinatorsShareNamesRegistrationsAndCommits() async throws {
        let env = CoordinatorEnv(seed: 33)
        let c1 = try await env.open()
        let c2 = try await env.open()
        let a1 = try await c1.createShard(name: "a")
        let a2 = try await c2.createShard(name: "a")
        #expect(a1.id == a2.id, "one name table")
        let b = try await c2.createShard(name: "b")
        _ = try await c1.register([.name("a"), .id(b.id)], at: nil)  // c1 learns of b by reading the table

        // c2 never saw the registration in its cache: its commit must still be admitted.
        let first = try await c2.commit([ShardWrites(shard: .name("b"), rows: [rowW("from-c2")])], at: nil)
        #expect(keysOf(try await c1.read(.name("b"), asOf: first).rows) == ["from-c2"])

        let (times1, times2) = try await withThrowingTaskGroup(of: (Int, Timestamp).self) { group in
            for i in 0..<10 {
                group.addTask {
                    (i, try await c1.commit([ShardWrites(shard: .name("a"), rows: [rowW("c1-\(i)")]), ShardWrites(shard: .name("b"), rows: [rowW("c1-\(i)")])], at: nil))
                }
                group.addTask {
                    (10 + i, try await c2.commit([ShardWrites(shard: .name("a"), rows: [rowW("c2-\(i)")])], at: nil))
                }
            }
            var t1: [Timestamp] = []
            var t2: [Timestamp] = []
            for try await (i, t) in group {
                if i < 10 { t1.append(t) } else { t2.append(t) }
            }
            return (t1, t2)
        }
        // A txns write happens at one time: the two coordinators never shared one.
        #expect(Set(times1).isDisjoint(with: Set(times2)))
        #expect((times1 + times2).allSatisfy { $0 > first })

        let expectedA = ((0..<10).map { "c1-\($0)" } + (0..<10).map { "c2-\($0)" }).sorted()
        for c in [c1, c2] {
            #expect(keysOf(try await c.read(.name("a"), asOf: nil).rows) == expectedA)
            #expect(keysOf(try await c.read(.name("b"), asOf: nil).rows) == (["from-c2"] + (0..<10).map { "c1-\($0)" }).sorted())
        }
        // Each commit is atomic across shards, also as seen by the other coordinator.
        for t in times1 {
            let a = try await c2.read(.name("a"), asOf: t).rows.count
            let before = try await c2.read(.name("a"), asOf: t - 1).rows.count
            let bNow = try await c2.read(.name("b"), asOf: t).rows.count
            let bBefore = try await c2.read(.name("b"), asOf: t - 1).rows.count
            #expect(a > before && bNow > bBefore, "c1's commit at \(t) shows in both shards")
        }
        let s1 = try await c1.status()
        let s2 = try await c2.status()
        #expect(s1.upper == s2.upper)
        #expect(s1.shards == 2 && s2.registered == 2)
        await c1.shutdown()
        await c2.shutdown()
    }
}
