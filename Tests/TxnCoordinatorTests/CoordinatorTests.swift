import PersistClient
import PersistCodec
import PersistCore
import PersistLocation
import Synchronization
import Testing

@testable import TxnCoordinator

/// Every coordinator operation against in-memory storage, and the typed error of every
/// misuse.
@Suite struct CoordinatorOperationTests {
    @Test func createShardIsIdempotentByNameAndListsAscending() async throws {
        let env = CoordinatorEnv(seed: 1)
        let c = try await env.open()
        let orders = try await c.createShard(name: "orders")
        #expect(orders.name == "orders")
        #expect(!orders.registered)
        #expect(try await c.createShard(name: "orders") == orders, "same name, same shard")
        let stock = try await c.createShard(name: "a/stock")
        #expect(stock.id != orders.id)
        _ = try await c.register([.name("orders")], at: nil)
        #expect(try await c.createShard(name: "orders").registered, "an existing shard reports its registration")
        let listed = try await c.listShards()
        #expect(listed.map(\.name) == ["a/stock", "orders"])
        #expect(listed.map(\.registered) == [false, true])
        #expect(listed.map(\.id) == [stock.id, orders.id])
        await c.shutdown()
    }

    @Test func registerCommitAndReadAtEachTime() async throws {
        let env = CoordinatorEnv(seed: 2)
        let c = try await env.open()
        let shard = try await c.createShard(name: "t")
        let registeredAt = try await c.register([.name("t")], at: nil)
        #expect(registeredAt == env.clock.nowMilliseconds(), "an idle coordinator takes the clock's time")

        env.clock.advance(byMilliseconds: 5)
        let t1 = try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("a"), rowW("b", 2)])], at: nil)
        #expect(t1 == registeredAt + 5)
        let t2 = try await c.commit([ShardWrites(shard: .id(shard.id), rows: [rowW("a", -1), rowW("c")])], at: nil)
        #expect(t2 == t1 + 1, "the clock stood still: the next time is the txns upper")

        let latest = try await c.read(.name("t"), asOf: nil)
        #expect(latest.asOf == t2)
        #expect(rowStrings(latest.rows) == ["b@\(t2)*2", "c@\(t2)*1"])
        #expect(keysOf(try await c.read(.name("t"), asOf: t1).rows) == ["a", "b", "b"])
        #expect(try await c.read(.id(shard.id), asOf: t1 - 1).rows.isEmpty)
        #expect(try await c.read(.name("t"), asOf: registeredAt).rows.isEmpty)
        await c.shutdown()
    }

    @Test func explicitTimestampsAreUsedExactlyOrRefusedWithTheNextUsable() async throws {
        let env = CoordinatorEnv(seed: 3)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        let r = try await c.register([.name("t")], at: 2_000_000)
        #expect(r == 2_000_000)
        #expect(try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("x")])], at: 2_000_010) == 2_000_010)
        let closed = await catchCoordinatorError { () async throws(CoordinatorError) in
            try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("y")])], at: 2_000_005)
        }
        #expect(closed?.code == .timestampClosed)
        #expect(closed?.nextUsable == 2_000_011)
        let registerClosed = await catchCoordinatorError { () async throws(CoordinatorError) in
            try await c.register([.name("t")], at: 7)
        }
        #expect(registerClosed?.code == .timestampClosed)
        #expect(registerClosed?.nextUsable == 2_000_011)
        // The clock (1_000_000) is behind the upper: chosen times continue from the upper.
        #expect(try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("z")])], at: nil) == 2_000_011)
        #expect(keysOf(try await c.read(.name("t"), asOf: nil).rows) == ["x", "z"])
        await c.shutdown()
    }

    @Test func misuseAnswersTypedErrors() async throws {
        let env = CoordinatorEnv(seed: 4)
        let c = try await env.open(env.configuration(maxRows: 3, maxBytes: 64))
        _ = try await c.createShard(name: "reg")
        _ = try await c.createShard(name: "unreg")
        _ = try await c.register([.name("reg")], at: nil)
        var rng = SeededGenerator(seed: 4)
        let stranger = ShardID(using: &rng)

        func code<T>(_ body: () async throws(CoordinatorError) -> T) async -> CoordinatorError.Code? {
            await catchCoordinatorError(body)?.code
        }
        let w = { (ref: ShardRef, rows: [RowWrite]) in [ShardWrites(shard: ref, rows: rows)] }
        #expect(await code { () async throws(CoordinatorError) in try await c.createShard(name: "bad name") } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.createShard(name: "") } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("nope"), [rowW("k")]), at: nil) } == .unknownShard)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.id(stranger), [rowW("k")]), at: nil) } == .unknownShard)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("bad name"), [rowW("k")]), at: nil) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("unreg"), [rowW("k")]), at: nil) } == .notRegistered)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("unreg"), [rowW("k")]), at: 5_000_000) } == .notRegistered)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit([], at: nil) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("reg"), []), at: nil) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("reg"), Array(repeating: rowW("k"), count: 4)), at: nil) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("reg"), [RowWrite(key: Array(repeating: 1, count: 65))]), at: nil) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.commit(w(.name("reg"), [rowW("k")]), at: .max) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.register([], at: nil) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.register([.id(stranger)], at: nil) } == .unknownShard)
        #expect(await code { () async throws(CoordinatorError) in try await c.read(.name("unreg"), asOf: nil) } == .notRegistered)
        #expect(await code { () async throws(CoordinatorError) in try await c.read(.name("nope"), asOf: nil) } == .unknownShard)
        #expect(await code { () async throws(CoordinatorError) in try await c.read(.name("reg"), asOf: .max) } == .badRequest)
        #expect(await code { () async throws(CoordinatorError) in try await c.subscribe(.name("unreg"), from: nil) } == .notRegistered)

        // Together (perhaps one group): the commit to the unregistered shard fails alone.
        let (badWrites, goodWrites) = (w(.name("unreg"), [rowW("u")]), w(.name("reg"), [rowW("r")]))
        async let bad = catchCoordinatorError { () async throws(CoordinatorError) in try await c.commit(badWrites, at: nil) }
        async let good = c.commit(goodWrites, at: nil)
        #expect(await bad?.code == .notRegistered)
        let t = try await good
        #expect(keysOf(try await c.read(.name("reg"), asOf: t).rows) == ["r"])
        #expect(try await c.status().unapplied == 0)
        await c.shutdown()
    }

    @Test func aReadBeforeTheRegistrationOrAfterTheForgetIsNotRegistered() async throws {
        let env = CoordinatorEnv(seed: 5)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        let r = try await c.register([.name("t")], at: nil)
        env.clock.advance(byMilliseconds: 10)
        let t1 = try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("k")])], at: nil)
        env.clock.advance(byMilliseconds: 10)
        let f = try await c.forget([.name("t")], at: nil)
        #expect(r < t1 && t1 < f)
        let before = await catchCoordinatorError { () async throws(CoordinatorError) in try await c.read(.name("t"), asOf: r - 1) }
        #expect(before?.code == .notRegistered)
        #expect(keysOf(try await c.read(.name("t"), asOf: t1).rows) == ["k"])
        #expect(keysOf(try await c.read(.name("t"), asOf: f).rows) == ["k"], "the forget time still belongs to the registration")
        env.clock.advance(byMilliseconds: 10)
        _ = try await c.createShard(name: "other")
        _ = try await c.register([.name("other")], at: nil)  // moves the upper past the forget
        let after = await catchCoordinatorError { () async throws(CoordinatorError) in try await c.read(.name("t"), asOf: nil) }
        #expect(after?.code == .notRegistered)
        let commitAfter = await catchCoordinatorError { () async throws(CoordinatorError) in
            try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("late")])], at: nil)
        }
        #expect(commitAfter?.code == .notRegistered)
        #expect(try await c.listShards().map(\.registered) == [true, false])
        await c.shutdown()
    }

    @Test func aCommitOverThreeShardsIsVisibleWhollyAtItsTimeAndNotBefore() async throws {
        let env = CoordinatorEnv(seed: 6)
        let applyGate = HookGate()
        let pausedAt = HookLog<Timestamp>()
        let c = try await env.open(
            hooks: CoordinatorHooks(afterCommitBeforeApply: { ts in
                pausedAt.append(ts)
                await applyGate.wait()
            }))
        let names = ["x", "y", "z"]
        for n in names { _ = try await c.createShard(name: n) }
        _ = try await c.register(names.map { .name($0) }, at: nil)
        applyGate.open()  // (the registration wrote no commit; nothing was held)

        env.clock.advance(byMilliseconds: 100)
        let writes = names.map { ShardWrites(shard: .name($0), rows: [rowW("\($0)1"), rowW("\($0)2")]) }
        let secondGate = HookGate()
        let c2 = try await env.open(
            hooks: CoordinatorHooks(afterCommitBeforeApply: { _ in await secondGate.wait() }))
        // The commit is durable and answered, and its apply is held back.
        let t = try await c2.commit(writes, at: nil)
        // Another coordinator reads: it must see all three shards at `t` (applying what it
        // needs itself), and none of them just before.
        for n in names {
            #expect(try await c.read(.name(n), asOf: t - 1).rows.isEmpty, "\(n) before the commit")
            #expect(keysOf(try await c.read(.name(n), asOf: t).rows) == ["\(n)1", "\(n)2"], "\(n) at the commit")
        }
        secondGate.open()
        await c2.shutdown()
        await c.shutdown()
    }

    @Test func readsAtAnOpenTimeTheClockHasReachedCloseIt() async throws {
        let env = CoordinatorEnv(seed: 7)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        let r = try await c.register([.name("t")], at: nil)
        env.clock.advance(byMilliseconds: 50)
        let read = try await c.read(.name("t"), asOf: r + 20)
        #expect(read.asOf == r + 20)
        #expect(read.rows.isEmpty)
        let closed = await catchCoordinatorError { () async throws(CoordinatorError) in
            try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("k")])], at: r + 20)
        }
        #expect(closed?.code == .timestampClosed, "the read closed its time")
        #expect(closed?.nextUsable == r + 21)
        await c.shutdown()
    }

    @Test func compactionMovesTheSinceAndOlderReadsAreRefused() async throws {
        let env = CoordinatorEnv(seed: 8)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        _ = try await c.register([.name("t")], at: nil)
        var times: [Timestamp] = []
        for i in 0..<4 {
            env.clock.advance(byMilliseconds: 1)
            times.append(try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("k\(i)")])], at: nil))
        }
        let since = try await c.compact(since: times[2])
        #expect(since == times[2])
        let status = try await c.status()
        #expect(status.since >= times[2])
        #expect(status.unapplied == 0)
        let below = await catchCoordinatorError { () async throws(CoordinatorError) in try await c.read(.name("t"), asOf: times[1]) }
        #expect(below?.code == .badRequest)
        #expect(keysOf(try await c.read(.name("t"), asOf: times[2]).rows) == ["k0", "k1", "k2"])
        // Asking for more than exists clamps to the latest committed time.
        let all = try await c.compact(since: .max)
        #expect(all == status.upper - 1)
        #expect(keysOf(try await c.read(.name("t"), asOf: nil).rows) == ["k0", "k1", "k2", "k3"])
        await c.shutdown()
    }

    @Test func statusCountsShardsRegistrationsAndTheUpper() async throws {
        let env = CoordinatorEnv(seed: 9)
        let c = try await env.open()
        for n in ["a", "b", "c"] { _ = try await c.createShard(name: n) }
        _ = try await c.register([.name("a"), .name("b"), .name("a")], at: nil)
        let t = try await c.commit([ShardWrites(shard: .name("a"), rows: [rowW("k")])], at: nil)
        let s = try await c.status()
        #expect(s.txnsShard == env.txnsShard)
        #expect(s.shards == 3)
        #expect(s.registered == 2)
        #expect(s.upper == t + 1)
        #expect(s.unapplied == 0)
        await c.shutdown()
    }

    @Test func afterShutdownEveryCallIsShuttingDown() async throws {
        let env = CoordinatorEnv(seed: 10)
        let c = try await env.open()
        _ = try await c.createShard(name: "t")
        _ = try await c.register([.name("t")], at: nil)
        let sub = try await c.subscribe(.name("t"), from: nil)
        await c.shutdown()
        await c.shutdown()  // idempotent
        #expect(try await sub.next() == nil, "shutdown ends subscriptions")
        let calls: [CoordinatorError?] = [
            await catchCoordinatorError { () async throws(CoordinatorError) in try await c.createShard(name: "u") },
            await catchCoordinatorError { () async throws(CoordinatorError) in try await c.commit([ShardWrites(shard: .name("t"), rows: [rowW("k")])], at: nil) },
            await catchCoordinatorError { () async throws(CoordinatorError) in try await c.read(.name("t"), asOf: nil) },
            await catchCoordinatorError { () async throws(CoordinatorError) in try await c.status() },
            await catchCoordinatorError { () async throws(CoordinatorError) in try await c.compact(since: 0) },
        ]
        #expect(calls.map { $0?.code } == Array(repeating: .shuttingDown, count: calls.count))
    }
}

/// Failures of the storage under the name table come back as `storage` errors, and an
/// outcome left unknown by a timeout is settled by reading.
@Suite struct CoordinatorStorageErrorTests {
    @Test func nameTableFailuresAreStorageErrors() async throws {
        let env = CoordinatorEnv(seed: 11)
        let faults = FaultInjector(seed: 11, rates: .reliable)
        let c = try await env.open(namesConsensus: UnreliableConsensus(env.consensus, faults: faults))
        faults.setRates(.unavailable)
        let down = await catchCoordinatorError { () async throws(CoordinatorError) in try await c.createShard(name: "t") }
        #expect(down?.code == .storage)
        #expect(down?.message.contains("did not take effect") == true)
        let list = await catchCoordinatorError { () async throws(CoordinatorError) in try await c.listShards() }
        #expect(list?.code == .storage)
        faults.setRates(.reliable)
        #expect(try await c.createShard(name: "t").name == "t", "the coordinator is still usable")
        await c.shutdown()
    }

    @Test func aCreateWhoseWriteTimedOutIsSettledByReading() async throws {
        let env = CoordinatorEnv(seed: 13)
        let names = TimeoutOnceConsensus(env.consensus)
        let c = try await env.open(namesConsensus: names)
        names.armed.withLock { $0 = true }
        let created = try await c.createShard(name: "t")
        #expect(!names.armed.withLock { $0 }, "the write happened and reported a timeout")
        #expect(try await c.createShard(name: "t") == created)
        let other = try await env.open(namesConsensus: names)
        #expect(try await other.listShards().map(\.id) == [created.id], "exactly one shard, the one answered")
        await other.shutdown()
        await c.shutdown()
    }

    @Test func aCorruptNameTableIsAStorageErrorNotACrash() async throws {
        let env = CoordinatorEnv(seed: 12)
        let key = ShardNameStore.key(txnsShard: env.txnsShard)
        _ = try await env.consensus.compareAndSet(key, expected: nil, new: VersionedData(seqno: .minimum, data: [1, 2, 3]))
        let opened = await { () async -> CoordinatorError? in
            do {
                _ = try await env.open()
                return nil
            } catch let e as CoordinatorError {
                return e
            } catch {
                return CoordinatorError(.rejected, "unexpected \(error)")
            }
        }()
        #expect(opened?.code == .storage)
        #expect(opened?.message.contains("corrupt") == true)
    }
}

/// Performs the next compare-and-set once armed, then reports it as an indeterminate
/// timeout; everything else passes through.
final class TimeoutOnceConsensus: Consensus {
    let inner: any Consensus
    let armed = Mutex(false)

    init(_ inner: any Consensus) { self.inner = inner }

    func head(_ key: String) async throws(StorageError) -> VersionedData? { try await inner.head(key) }

    func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError) -> CaSResult {
        let result = try await inner.compareAndSet(key, expected: expected, new: new)
        if armed.withLock({ a in defer { a = false }; return a }) {
            throw .indeterminate(.timeout, "the answer was lost")
        }
        return result
    }

    func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try await inner.scan(key, from: from, limit: limit)
    }

    func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int { try await inner.truncate(key, seqno: seqno) }

    func listKeys() async throws(StorageError) -> [String] { try await inner.listKeys() }
}
