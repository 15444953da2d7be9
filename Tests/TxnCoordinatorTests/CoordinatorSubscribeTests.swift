import PersistCodec
import PersistCore
import Testing

@testable import TxnCoordinator

/// Subscriptions: the snapshot, later commits in order with progress, and cancellation.
@Suite struct CoordinatorSubscribeTests {
    /// Collects events until progress passes `ts`; returns the updates seen and the last
    /// progress. Checks that progress only grows and that no update comes before the
    /// progress already announced.
    static func collect(_ sub: CoordinatorSubscription, pastTime ts: Timestamp) async throws
        -> (updates: [Update], progress: Timestamp)
    {
        var updates: [Update] = []
        var progress: Timestamp = 0
        while progress <= ts {
            guard let event = try await sub.next() else {
                Issue.record("the subscription ended early")
                break
            }
            switch event {
            case .updates(let u):
                #expect(u.allSatisfy { $0.time >= progress }, "updates at or after the announced progress")
                updates += u
            case .progress(let p):
                #expect(p > progress, "progress grows")
                progress = p
            default:
                Issue.record("unexpected event \(event)")
            }
        }
        return (updates, progress)
    }

    @Test func aSubscriptionSeesTheSnapshotThenLaterCommitsWithProgress() async throws {
        let env = CoordinatorEnv(seed: 41)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        _ = try await c.createShard(name: "other")
        _ = try await c.register([.name("t"), .name("other")], at: nil)
        env.clock.advance(byMilliseconds: 5)
        let t1 = try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("a"), rowW("b")])], at: nil)

        let sub = try await c.subscribe(.name("t"), from: nil)
        #expect(sub.asOf == t1)
        let snapshot = try await Self.collect(sub, pastTime: t1)
        #expect(rowStrings(snapshot.updates) == ["a@\(t1)*1", "b@\(t1)*1"])
        #expect(snapshot.progress == t1 + 1)

        let t2 = try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("a", -1), rowW("c")])], at: nil)
        let t3 = try await c.commit([ShardWrites(shard: .name("other"), rows: [rowW("elsewhere")])], at: nil)
        let t4 = try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("d")])], at: nil)
        #expect(t1 < t2 && t2 < t3 && t3 < t4)
        let later = try await Self.collect(sub, pastTime: t4)
        #expect(rowStrings(later.updates) == ["a@\(t2)*-1", "c@\(t2)*1", "d@\(t4)*1"], "only this shard, at the commit times")
        #expect(later.progress > t4)

        await sub.cancel()
        #expect(try await sub.next() == nil)
        await sub.cancel()  // idempotent
        await c.shutdown()
    }

    @Test func aSubscriptionFromAnEarlierTimeReplaysHistory() async throws {
        let env = CoordinatorEnv(seed: 42)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        _ = try await c.register([.name("t")], at: nil)
        var times: [Timestamp] = []
        for i in 0..<3 {
            env.clock.advance(byMilliseconds: 1)
            times.append(try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("k\(i)")])], at: nil))
        }
        let sub = try await c.subscribe(.name("t"), from: times[0])
        let events = try await Self.collect(sub, pastTime: times[2])
        #expect(rowStrings(events.updates) == ["k0@\(times[0])*1", "k1@\(times[1])*1", "k2@\(times[2])*1"])
        await sub.cancel()
        await c.shutdown()
    }

    @Test func cancelWakesAWaitingConsumerAndAnIteratorEnds() async throws {
        let env = CoordinatorEnv(seed: 43)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        let r = try await c.register([.name("t")], at: nil)
        let sub = try await c.subscribe(.name("t"), from: nil)
        let seen = HookLog<CoordinatorResponse>()
        let consumer = Task { () throws(CoordinatorError) -> Int in
            var n = 0
            for try await event in sub {
                seen.append(event)
                n += 1
            }
            return n
        }
        // The consumer sees the empty snapshot's progress, then waits for more.
        await waitUntil("the consumer has the snapshot's progress") { seen.all.count == 1 }
        await sub.cancel()
        #expect(try await consumer.value == 1, "the waiting iterator ends")
        #expect(seen.all == [.progress(r + 1)])
        await c.shutdown()
    }
}
