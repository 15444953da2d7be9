import LoadGenKit
import Synchronization
import Testing

@Suite struct DriverTests {
    @Test func controlStopsAtTheDeadlineTheLimitOrOnRequest() {
        let c = RunControl(maxTransactions: 3)
        let t0 = ContinuousClock.now
        #expect(!c.claim(now: t0), "nothing starts before begin")
        c.begin(for: .seconds(10), now: t0)
        #expect(c.claim(now: t0))
        #expect(!c.claim(now: t0 + .seconds(10)), "past the deadline")
        #expect(c.claim(now: t0))
        #expect(c.claim(now: t0))
        #expect(!c.claim(now: t0), "limit of three")
        #expect(c.started == 3)
        let d = RunControl()
        d.begin(for: .seconds(10), now: t0)
        d.requestStop()
        #expect(!d.claim(now: t0))
    }

    @Test func arrivalGapsAverageTheRate() {
        var poisson = ArrivalSchedule(rate: 200, arrivals: .poisson, seed: 3)
        let gaps = (0..<20000).map { _ in Double(poisson.nextGapNanoseconds()) }
        let mean = gaps.reduce(0, +) / Double(gaps.count)
        #expect(abs(mean - 5_000_000) < 150_000, "mean gap \(mean) ns")
        #expect(Set(gaps).count > 1000, "gaps vary")
        var again = ArrivalSchedule(rate: 200, arrivals: .poisson, seed: 3)
        #expect((0..<100).map { _ in Double(again.nextGapNanoseconds()) } == Array(gaps.prefix(100)))
        var fixed = ArrivalSchedule(rate: 250, arrivals: .fixed, seed: 3)
        #expect(fixed.nextGapNanoseconds() == 4_000_000)
    }

    @Test func closedLoopRunsExactlyTheClaimedTransactions() async {
        let c = RunControl(maxTransactions: 57)
        c.begin(for: .seconds(600))
        let seen = Counter()
        let skipped = await LoadDriver.run(.closed(clients: 5), seed: 1, control: c) { client in
            #expect((0..<5).contains(client))
            seen.add()
            await Task.yield()
        }
        #expect(skipped == 0)
        #expect(seen.value == 57)
    }

    @Test func openLoopStartsTransactionsUntilTheLimit() async {
        let c = RunControl(maxTransactions: 40)
        c.begin(for: .seconds(600))
        let seen = Counter()
        _ = await LoadDriver.run(.open(rate: 10_000, maxInFlight: 4, arrivals: .fixed), seed: 1, control: c) { _ in
            seen.add()
        }
        #expect(seen.value == 40)
    }

    @Test func backoffStaysInItsRangeAndIsSeeded() {
        var a = Backoff(seed: 5)
        var b = Backoff(seed: 5)
        let xs = (0..<200).map { _ in a.nextMilliseconds() }
        #expect(xs.allSatisfy { (50...200).contains($0) })
        #expect(xs == (0..<200).map { _ in b.nextMilliseconds() })
        #expect(derivedSeed(1, stream: 1) != derivedSeed(1, stream: 2))
    }

    @Test func coordinatorAddressesParseLikeTxnctl() throws {
        #expect(try CoordinatorAddress.parse("127.0.0.1:7400") == .tcp(host: "127.0.0.1", port: 7400))
        #expect(try CoordinatorAddress.parse("[::1]:7300") == .tcp(host: "::1", port: 7300))
        #expect(try CoordinatorAddress.parse("unix:/run/c.sock") == .unix(path: "/run/c.sock"))
        for bad in ["nohost", ":7300", "h:0", "h:99999", "::1:7300", "unix:", "[::1]7300"] {
            #expect(throws: LoadGenError.self, "\(bad)") { try CoordinatorAddress.parse(bad) }
        }
    }

    @Test func progressLineShowsEveryFigure() {
        let line = ProgressSample(
            elapsedSeconds: 3.04, opsPerSecond: 212.4, totals: OutcomeCounts(ok: 500, fail: 20, info: 1), p50: 12.34,
            p99: 45.0
        ).line
        #expect(line == "[3.0s] 212 txn/s  ok 500  fail 20  info 1  p50 12.3 ms  p99 45.0 ms")
        let idle = ProgressSample(elapsedSeconds: 1, opsPerSecond: 0, totals: OutcomeCounts(), p50: nil, p99: nil).line
        #expect(idle.hasSuffix("p50 -  p99 -"))
    }
}

final class Counter: Sendable {
    let n = Mutex(0)
    func add() { n.withLock { $0 += 1 } }
    var value: Int { n.withLock { $0 } }
}
