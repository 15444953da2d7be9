import PersistCodec
import PersistCore
import Testing

@testable import TxnCoordinator

/// A seeded random workload checked against a model built from the answered commit
/// times: concurrent commits over several shards (so groups form), reads at random
/// past times, restarts and compactions. Whatever the interleaving, every read must
/// equal the model's contents at its time.
@Suite struct CoordinatorModelTests {
    /// Every acknowledged row: shard name -> (time, key, diff).
    struct Model {
        var rows: [String: [(Timestamp, String, Int64)]] = [:]

        mutating func record(_ writes: [ShardWrites], at t: Timestamp) {
            for w in writes {
                guard case .name(let n) = w.shard else { continue }
                for r in w.rows { rows[n, default: []].append((t, String(decoding: r.key, as: UTF8.self), r.diff)) }
            }
        }

        /// The consolidated contents of `shard` at `t`, as sorted `key*diff` strings.
        func contents(_ shard: String, at t: Timestamp) -> [String] {
            var sums: [String: Int64] = [:]
            for (time, key, diff) in rows[shard] ?? [] where time <= t { sums[key, default: 0] += diff }
            return sums.compactMap { k, d in d == 0 ? nil : "\(k)*\(d)" }.sorted()
        }
    }

    /// A read's rows as sorted `key*diff` strings (times are all the read's time).
    static func contents(_ rows: [Update]) -> [String] {
        rows.map { "\(String(decoding: $0.key, as: UTF8.self))*\($0.diff)" }.sorted()
    }

    @Test(arguments: [UInt64(7), 99, 2024])
    func randomWorkloadMatchesTheModel(seed: UInt64) async throws {
        var rng = SeededGenerator(seed: seed)
        let env = CoordinatorEnv(seed: seed)
        var c = try await env.open()
        let shards = ["s0", "s1", "s2", "s3"]
        for s in shards { _ = try await c.createShard(name: s) }
        let registered = try await c.register(shards.map { .name($0) }, at: nil)
        var model = Model()
        var latest = registered
        var since: Timestamp = 0

        for round in 0..<12 {
            // A burst of concurrent commits, each to one to three shards.
            var burst: [[ShardWrites]] = []
            for i in 0..<Int.random(in: 1...6, using: &rng) {
                let targets = shards.shuffled(using: &rng).prefix(Int.random(in: 1...3, using: &rng))
                burst.append(
                    targets.map { s in
                        ShardWrites(
                            shard: .name(s),
                            rows: (0..<Int.random(in: 1...3, using: &rng)).map { j in
                                // Mostly inserts of fresh keys, sometimes a retraction of an old one.
                                Int.random(in: 0..<5, using: &rng) == 0 ? rowW("k\(Int.random(in: 0..<4, using: &rng))", -1)
                                    : rowW("r\(round)-\(i)-\(j)")
                            })
                    })
            }
            let snapshot = burst
            let current = c
            let times = try await withThrowingTaskGroup(of: (Int, Timestamp).self) { group in
                for (i, writes) in snapshot.enumerated() {
                    group.addTask { (i, try await current.commit(writes, at: nil)) }
                }
                var out = Array(repeating: Timestamp(0), count: snapshot.count)
                for try await (i, t) in group { out[i] = t }
                return out
            }
            for (writes, t) in zip(burst, times) {
                #expect(t > latest, "times only grow")
                model.record(writes, at: t)
            }
            latest = max(latest, times.max() ?? latest)
            if Bool.random(using: &rng) { env.clock.advance(byMilliseconds: UInt64.random(in: 1...5, using: &rng)) }

            // Reads at random times from the since to the latest commit.
            for _ in 0..<3 {
                let s = shards[Int.random(in: 0..<shards.count, using: &rng)]
                let t = Timestamp.random(in: max(since, registered)...latest, using: &rng)
                let read = try await c.read(.name(s), asOf: t)
                #expect(read.asOf == t)
                #expect(Self.contents(read.rows) == model.contents(s, at: t), "seed \(seed) round \(round): \(s) at \(t)")
            }

            switch Int.random(in: 0..<6, using: &rng) {
            case 0:
                // A restart, sometimes without shutdown.
                if Bool.random(using: &rng) { await c.shutdown() }
                c = try await env.open()
            case 1:
                since = try await c.compact(since: latest - UInt64.random(in: 0...2, using: &rng))
                #expect(since <= latest)
            default:
                break
            }
        }
        for s in shards {
            #expect(Self.contents(try await c.read(.name(s), asOf: nil).rows) == model.contents(s, at: latest), "\(s) at the end")
        }
        #expect(try await c.status().unapplied == 0)
        await c.shutdown()
    }
}
