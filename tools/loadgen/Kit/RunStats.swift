import Histogram
import Synchronization

/// ok, fail and info counts.
public struct OutcomeCounts: Hashable, Sendable, Codable {
    public var ok = 0
    public var fail = 0
    public var info = 0

    public init(ok: Int = 0, fail: Int = 0, info: Int = 0) {
        self.ok = ok
        self.fail = fail
        self.info = info
    }

    public var total: Int { ok + fail + info }

    public mutating func add(_ outcome: TxnOutcome, _ n: Int = 1) {
        switch outcome {
        case .ok: ok += n
        case .fail: fail += n
        case .info: info += n
        }
    }

    public static func + (a: OutcomeCounts, b: OutcomeCounts) -> OutcomeCounts {
        OutcomeCounts(ok: a.ok + b.ok, fail: a.fail + b.fail, info: a.info + b.info)
    }
}

/// Latency percentiles in milliseconds.
public struct LatencyMilliseconds: Hashable, Sendable, Codable {
    public var count: UInt64
    public var p50: Double
    public var p90: Double
    public var p99: Double
    public var p999: Double
    public var max: Double

    public init(_ nanoseconds: Histogram<UInt64>) {
        count = nanoseconds.totalCount
        func ms(_ v: UInt64) -> Double { Double(v) / 1_000_000 }
        if count == 0 {
            p50 = 0
            p90 = 0
            p99 = 0
            p999 = 0
            max = 0
        } else {
            p50 = ms(nanoseconds.valueAtPercentile(50))
            p90 = ms(nanoseconds.valueAtPercentile(90))
            p99 = ms(nanoseconds.valueAtPercentile(99))
            p999 = ms(nanoseconds.valueAtPercentile(99.9))
            max = ms(nanoseconds.max)
        }
    }
}

/// One progress line's figures.
public struct ProgressSample: Hashable, Sendable {
    public var elapsedSeconds: Double
    /// Transactions that ended (any outcome) since the previous sample, per second.
    public var opsPerSecond: Double
    public var totals: OutcomeCounts
    /// ok latencies since the previous sample, in ms (nil when none completed).
    public var p50: Double?
    public var p99: Double?

    public init(elapsedSeconds: Double, opsPerSecond: Double, totals: OutcomeCounts, p50: Double?, p99: Double?) {
        self.elapsedSeconds = elapsedSeconds
        self.opsPerSecond = opsPerSecond
        self.totals = totals
        self.p50 = p50
        self.p99 = p99
    }

    public var line: String {
        func fixed(_ v: Double, _ digits: Int) -> String {
            let scale = Double([1, 10, 100, 1000][min(digits, 3)])
            let r = (v * scale).rounded() / scale
            var s = String(r)
            if let dot = s.firstIndex(of: ".") {
                let decimals = s.distance(from: dot, to: s.endIndex) - 1
                if decimals < digits { s += String(repeating: "0", count: digits - decimals) }
            }
            return s
        }
        let latency =
            if let p50, let p99 { "p50 \(fixed(p50, 1)) ms  p99 \(fixed(p99, 1)) ms" } else { "p50 -  p99 -" }
        return "[\(fixed(elapsedSeconds, 1))s] \(Int(opsPerSecond.rounded())) txn/s  "
            + "ok \(totals.ok)  fail \(totals.fail)  info \(totals.info)  \(latency)"
    }
}

/// Counts and latencies of a run, shared by every client.
public final class RunStats: Sendable {
    struct State {
        var counts: [TxnKind: OutcomeCounts] = [:]
        var latency = RunStats.makeHistogram()
        var interval = RunStats.makeHistogram()
        var intervalEnded = 0
        var lastSample: ContinuousClock.Instant
    }

    let state: Mutex<State>
    public let started: ContinuousClock.Instant

    public init(started: ContinuousClock.Instant = .now) {
        self.started = started
        state = Mutex(State(lastSample: started))
    }

    /// Nanoseconds, up to an hour, three significant digits.
    static func makeHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(highestTrackableValue: 3_600_000_000_000, numberOfSignificantValueDigits: .three)
    }

    /// Counts a finished transaction; ok ones add their latency.
    public func record(_ kind: TxnKind, _ outcome: TxnOutcome, latency: Duration) {
        let ns = HistoryRecorder.nanoseconds(latency)
        state.withLock { s in
            s.counts[kind, default: OutcomeCounts()].add(outcome)
            s.intervalEnded += 1
            if outcome == .ok {
                let clamped = min(max(ns, 1), s.latency.highestTrackableValue)
                _ = s.latency.record(clamped)
                _ = s.interval.record(clamped)
            }
        }
    }

    public func counts(_ kind: TxnKind) -> OutcomeCounts { state.withLock { $0.counts[kind] ?? OutcomeCounts() } }

    public var totals: OutcomeCounts {
        state.withLock { s in s.counts.values.reduce(OutcomeCounts(), +) }
    }

    /// The figures since the previous sample, and starts a new interval.
    public func sample(now: ContinuousClock.Instant = .now) -> ProgressSample {
        state.withLock { s in
            let seconds = max((now - s.lastSample).seconds, 1e-9)
            let sample = ProgressSample(
                elapsedSeconds: (now - started).seconds,
                opsPerSecond: Double(s.intervalEnded) / seconds,
                totals: s.counts.values.reduce(OutcomeCounts(), +),
                p50: s.interval.totalCount == 0 ? nil : Double(s.interval.valueAtPercentile(50)) / 1_000_000,
                p99: s.interval.totalCount == 0 ? nil : Double(s.interval.valueAtPercentile(99)) / 1_000_000)
            s.interval.reset()
            s.intervalEnded = 0
            s.lastSample = now
            return sample
        }
    }

    /// Percentiles of every ok transaction so far.
    public var latency: LatencyMilliseconds { state.withLock { LatencyMilliseconds($0.latency) } }
}

extension Duration {
    /// The duration in seconds, as a Double.
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}
