import Histogram
import PersistCore
import PersistLocation

/// Closed-loop compare-and-set load on a `Consensus`: each writer owns one key and keeps
/// exactly one CaS in flight, the way a persist shard writer does (spec/persist.md §2.5:
/// concurrency at the consensus store equals the number of active shards).
///
/// A writer's chain needs no reads: it expects its own last seqno (nil before its first
/// commit) and writes last + 1. A mismatch means someone else moved the key, which never
/// happens here, so the writer resynchronises from the returned head and counts it.
/// After every 64th commit the writer truncates its key below its newest seqno, so the
/// store's size stays bounded (the Postgres peer does the same).
struct ConsensusBench {
    /// Commits between truncations, here and in the Postgres peer.
    static let truncateEvery: UInt64 = 64

    struct LevelResult: Codable {
        var writers: Int
        var seconds: Double
        var commits: Int
        var casPerSecond: Double
        /// Per iteration (one CaS, plus the truncation on every 64th), microseconds.
        var latency: LatencySummary
        var mismatches: Int
        var fsyncs: Int?
        var fsyncsPerSecond: Double?
        /// Commits per fsync in the measured window: the mean group-commit size.
        var casPerFsync: Double?
        var verifiedKeys: Int
    }

    var writers: Int
    var warmup: Duration
    var duration: Duration
    var value: [UInt8]
    /// Distinguishes this level's keys from any other level's.
    var keyPrefix: String

    private struct WriterOutcome: Sendable {
        var key: String
        var histogram: Histogram<UInt64>
        var measuredCommits = 0
        var mismatches = 0
        var lastCommitted: SeqNo?
        var lastMeasuredEnd: ContinuousClock.Instant?
    }

    private enum TaskOutcome: Sendable {
        case writer(WriterOutcome)
        case countersAtMeasureStart(FlushCounters?)
    }

    func run(on backend: OpenedConsensus) async throws(BenchError) -> LevelResult {
        let clock = ContinuousClock()
        let start = clock.now
        let measureStart = start + warmup
        let end = measureStart + duration
        let consensus = backend.consensus
        let value = self.value
        let keys = (0..<writers).map { "\(keyPrefix)-w\($0)" }

        var outcomes: [WriterOutcome] = []
        var countersAtStart: FlushCounters?
        do {
            try await withThrowingTaskGroup(of: TaskOutcome.self) { group in
                group.addTask {
                    try await Task.sleep(until: measureStart, clock: .continuous)
                    return .countersAtMeasureStart(backend.counters())
                }
                for key in keys {
                    group.addTask {
                        .writer(
                            try await Self.drive(
                                consensus, key: key, value: value, measureStart: measureStart, end: end))
                    }
                }
                for try await outcome in group {
                    switch outcome {
                    case .writer(let w): outcomes.append(w)
                    case .countersAtMeasureStart(let c): countersAtStart = c
                    }
                }
            }
        } catch let error as BenchError {
            throw error
        } catch {
            throw BenchError("consensus writer failed: \(error)")
        }
        let countersAtEnd = backend.counters()

        // Each writer's key must now have exactly the head that writer last committed.
        for outcome in outcomes {
            let head: VersionedData?
            do {
                head = try await consensus.head(outcome.key)
            } catch {
                throw BenchError("reading the head of \(outcome.key) failed: \(error)")
            }
            guard head?.seqno == outcome.lastCommitted else {
                throw BenchError(
                    "verification failed: \(outcome.key) has head \(head.map { "\($0.seqno)" } ?? "none"), "
                        + "but its writer last committed \(outcome.lastCommitted.map { "\($0)" } ?? "nothing")")
            }
            if let head, head.data != value {
                throw BenchError("verification failed: the head of \(outcome.key) holds other bytes than written")
            }
        }

        var histogram = LatencySummary.makeHistogram()
        for outcome in outcomes { histogram.add(outcome.histogram) }
        let commits = outcomes.reduce(0) { $0 + $1.measuredCommits }
        let lastEnd = outcomes.compactMap(\.lastMeasuredEnd).max() ?? end
        let seconds = max((lastEnd - measureStart).seconds, 1e-9)
        var result = LevelResult(
            writers: writers, seconds: seconds, commits: commits, casPerSecond: Double(commits) / seconds,
            latency: LatencySummary(histogram), mismatches: outcomes.reduce(0) { $0 + $1.mismatches },
            verifiedKeys: outcomes.count)
        if let before = countersAtStart, let after = countersAtEnd {
            let delta = after - before
            result.fsyncs = delta.fsyncs
            result.fsyncsPerSecond = Double(delta.fsyncs) / seconds
            result.casPerFsync = delta.fsyncs > 0 ? Double(commits) / Double(delta.fsyncs) : nil
        }
        return result
    }

    /// One writer's loop. Iterations that start before `measureStart` are warmup; the
    /// first iteration to start at or after `end` is not run.
    private static func drive(
        _ consensus: any Consensus, key: String, value: [UInt8],
        measureStart: ContinuousClock.Instant, end: ContinuousClock.Instant
    ) async throws -> WriterOutcome {
        let clock = ContinuousClock()
        var outcome = WriterOutcome(key: key, histogram: LatencySummary.makeHistogram())
        var last: SeqNo?
        while true {
            let t0 = clock.now
            if t0 >= end { break }
            let seqno: SeqNo
            if let last {
                guard let next = last.next else { throw BenchError("\(key) ran out of sequence numbers") }
                seqno = next
            } else {
                seqno = .minimum
            }
            let committed: Bool
            let new = VersionedData(seqno: seqno, data: value)
            switch try await consensus.compareAndSet(key, expected: last, new: new) {
            case .committed:
                committed = true
                last = seqno
                if (seqno.rawValue + 1) % truncateEvery == 0 {
                    _ = try await consensus.truncate(key, seqno: seqno)
                }
            case .expectationMismatch(let current):
                committed = false
                outcome.mismatches += 1
                last = current?.seqno
            }
            if t0 >= measureStart {
                let t1 = clock.now
                outcome.histogram.recordClamped((t1 - t0).nanoseconds)
                if committed { outcome.measuredCommits += 1 }
                outcome.lastMeasuredEnd = t1
            }
        }
        outcome.lastCommitted = last
        return outcome
    }
}
