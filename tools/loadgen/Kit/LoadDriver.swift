import Foundation
import PersistCore
import Synchronization

/// How transactions are started.
public enum LoadShape: Hashable, Sendable {
    /// `clients` sequential clients, each starting its next transaction as soon as the
    /// previous one ends.
    case closed(clients: Int)
    /// Transactions started at `rate` per second regardless of how long they take, at
    /// most `maxInFlight` at once (arrivals that find that many running are skipped and
    /// counted).
    case open(rate: Double, maxInFlight: Int, arrivals: Arrivals)

    public enum Arrivals: String, Hashable, Sendable, CaseIterable {
        /// Exponential gaps (a Poisson process), seeded.
        case poisson
        /// Evenly spaced.
        case fixed
    }
}

/// When a run stops starting transactions: at its deadline (set by `begin`), when told
/// to, or after a number of transactions.
public final class RunControl: Sendable {
    struct State {
        var deadline: ContinuousClock.Instant?
        var stopRequested = false
        var started = 0
    }

    let state = Mutex(State())
    public let maxTransactions: Int?

    public init(maxTransactions: Int? = nil) {
        self.maxTransactions = maxTransactions
    }

    /// Starts the clock: transactions may start for `duration` from `now`.
    public func begin(for duration: Duration, now: ContinuousClock.Instant = .now) {
        state.withLock { $0.deadline = now + duration }
    }

    /// When transactions stop starting (nil before `begin`).
    public var deadline: ContinuousClock.Instant? { state.withLock { $0.deadline } }

    /// Asks the run to stop starting transactions (a signal, say); those running finish.
    public func requestStop() { state.withLock { $0.stopRequested = true } }

    public var stopRequested: Bool { state.withLock { $0.stopRequested } }

    /// True, counting one more transaction, if another may start now (never before
    /// `begin`).
    public func claim(now: ContinuousClock.Instant = .now) -> Bool {
        state.withLock { s in
            guard let deadline = s.deadline, now < deadline, !s.stopRequested else { return false }
            if let maxTransactions, s.started >= maxTransactions { return false }
            s.started += 1
            return true
        }
    }

    /// Transactions started so far.
    public var started: Int { state.withLock { $0.started } }
}

/// The gaps between open-loop arrivals, seeded.
public struct ArrivalSchedule: Sendable {
    public let rate: Double
    public let arrivals: LoadShape.Arrivals
    var rng: SeededGenerator

    public init(rate: Double, arrivals: LoadShape.Arrivals, seed: UInt64) {
        precondition(rate > 0, "a positive rate")
        self.rate = rate
        self.arrivals = arrivals
        rng = SeededGenerator(seed: seed)
    }

    /// The next gap in nanoseconds.
    public mutating func nextGapNanoseconds() -> UInt64 {
        let mean = 1e9 / rate
        switch arrivals {
        case .fixed:
            return UInt64(mean.rounded())
        case .poisson:
            // Inverse transform of a uniform in (0, 1].
            let u = 1 - Double.random(in: 0..<1, using: &rng)
            return UInt64(min(-mean * log(u), 3.6e12))
        }
    }
}

/// Runs transactions in the given shape until `control` says stop, then waits for those
/// running. `body` runs one transaction; its argument is the client number (closed loop)
/// or the arrival number (open loop).
public enum LoadDriver {
    /// Returns the number of open-loop arrivals skipped because `maxInFlight` were
    /// running (0 for a closed loop).
    public static func run(
        _ shape: LoadShape, seed: UInt64, control: RunControl, body: @escaping @Sendable (Int) async -> Void
    ) async -> Int {
        switch shape {
        case .closed(let clients):
            await withDiscardingTaskGroup { group in
                for client in 0..<clients {
                    group.addTask {
                        while control.claim() { await body(client) }
                    }
                }
            }
            return 0
        case .open(let rate, let maxInFlight, let arrivals):
            var schedule = ArrivalSchedule(rate: rate, arrivals: arrivals, seed: derivedSeed(seed, stream: 0xA11))
            let inFlight = InFlight(limit: maxInFlight)
            var skipped = 0
            var next = ContinuousClock.now
            var arrival = 0
            await withDiscardingTaskGroup { group in
                while true {
                    next = next.advanced(by: .nanoseconds(Int64(schedule.nextGapNanoseconds())))
                    guard let deadline = control.deadline, next < deadline, !control.stopRequested else { break }
                    try? await Task.sleep(until: next, clock: .continuous)
                    guard inFlight.enter() else {
                        skipped += 1
                        continue
                    }
                    guard control.claim() else {
                        inFlight.leave()
                        break
                    }
                    let number = arrival
                    arrival += 1
                    group.addTask {
                        await body(number)
                        inFlight.leave()
                    }
                }
            }
            return skipped
        }
    }
}

/// The open loop's count of running transactions.
final class InFlight: Sendable {
    let count = Mutex(0)
    let limit: Int

    init(limit: Int) {
        self.limit = limit
    }

    /// Counts one more running transaction, unless `limit` are running.
    func enter() -> Bool {
        count.withLock { n in
            guard n < limit else { return false }
            n += 1
            return true
        }
    }

    func leave() { count.withLock { $0 -= 1 } }
}

/// A periodic side task during a run (progress lines, history flushes).
public enum Ticker {
    /// Runs `body`, calling `tick` every `interval` meanwhile; stops ticking when `body`
    /// returns.
    public static func whileRunning<T: Sendable>(
        every interval: Duration, tick: @escaping @Sendable () -> Void, _ body: () async -> T
    ) async -> T {
        let ticker = Task {
            var next = ContinuousClock.now
            while !Task.isCancelled {
                next = next.advanced(by: interval)
                do { try await Task.sleep(until: next, clock: .continuous) } catch { break }
                tick()
            }
        }
        let result = await body()
        ticker.cancel()
        await ticker.value
        return result
    }
}
