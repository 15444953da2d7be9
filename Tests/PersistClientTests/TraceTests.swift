import PersistCodec
import PersistCore
import Testing

@testable import PersistClient

/// The trace's rules (spec/persist.md §6.1): contiguous pushes, fused empty batches,
/// size-tiered merge requests and their application.
@Suite struct TraceTests {
    typealias F = StateFixtures

    static func trace(_ batches: [HollowBatch], since: Antichain = .minimum) -> TraceState {
        var t = TraceState(since: since)
        for b in batches { t.push(b) }
        return t
    }

    /// Consecutive batches over `[start, start + 1)`, ... with the given row counts
    /// (0 = an empty batch).
    static func run(_ rows: [UInt64], from start: UInt64 = 0) -> [HollowBatch] {
        rows.enumerated().map { i, r in F.batch(start + UInt64(i), start + UInt64(i) + 1, rows: r) }
    }

    // MARK: push

    @Test func pushKeepsTheTraceContiguous() throws {
        var t = TraceState()
        let a = F.batch(0, 3, rows: 2), b = F.batch(3, 7, rows: 1), c = F.batch(7, nil, rows: 5)
        t.push(a)
        t.push(b)
        #expect(t.batches == [a, b] && t.upper == Antichain(7))
        try t.validate()
        // An empty interval changes nothing, wherever it is.
        t.push(F.batch(7, 7, rows: 0))
        t.push(F.batch(2, 2, rows: 0))
        #expect(t.batches == [a, b] && t.upper == Antichain(7))
        // Closing the shard.
        t.push(c)
        #expect(t.batches == [a, b, c] && t.upper == .empty)
        try t.validate()
        #expect(t.since == .minimum, "pushing never moves the since")
    }

    @Test func adjacentEmptyBatchesAreFused() throws {
        var t = TraceState()
        t.push(F.batch(0, 2, rows: 0))
        t.push(F.batch(2, 5, rows: 0))
        t.push(F.batch(5, 6, rows: 0))
        #expect(t.batches == [F.batch(0, 6, rows: 0)])
        t.push(F.batch(6, 8, rows: 3))
        t.push(F.batch(8, 9, rows: 0))
        t.push(F.batch(9, 12, rows: 0))
        // An empty batch is never fused into one with data.
        #expect(t.batches == [F.batch(0, 6, rows: 0), F.batch(6, 8, rows: 3), F.batch(8, 12, rows: 0)])
        #expect(t.upper == Antichain(12))
        try t.validate()
    }

    @Test func emptyBatchesWithDifferentSincesAreNotFused() {
        var t = TraceState()
        t.push(F.batch(0, 2, rows: 0))
        t.push(F.batch(2, 5, rows: 0, since: Antichain(3)))
        #expect(t.batches.count == 2)
    }

    // MARK: mergeRequests

    @Test func fewerThanFanoutSameLevelBatchesRequestNothing() {
        for fanout in 2...6 {
            let t = Self.trace(Self.run(Array(repeating: 1, count: fanout - 1)))
            #expect(t.mergeRequests(fanout: fanout).isEmpty, "fanout \(fanout)")
        }
        #expect(Self.trace(Self.run([1, 1, 1])).mergeRequests(fanout: 1).isEmpty, "a fanout below 2 never merges")
        #expect(TraceState().mergeRequests(fanout: 2).isEmpty)
    }

    @Test func fanoutSameLevelBatchesRequestOneMergeSpanningThem() throws {
        var batches = Self.run([1, 1, 1, 1], from: 0)
        batches[1].desc.since = Antichain(2)
        let t = Self.trace(batches, since: Antichain(1))
        let requests = t.mergeRequests(fanout: 4)
        let r = try #require(requests.first)
        #expect(requests.count == 1)
        #expect(r.inputs == batches)
        #expect(r.desc == BatchDescription(lower: .minimum, upper: Antichain(4), since: Antichain(2)))
        // The trace's since wins when it is further along than every input.
        let later = Self.trace(batches, since: Antichain(9)).mergeRequests(fanout: 4)
        #expect(later.first?.desc.since == Antichain(9))
        // A closed input since closes the merged one.
        batches[3].desc.since = .empty
        #expect(Self.trace(batches).mergeRequests(fanout: 4).first?.desc.since == .empty)
    }

    @Test func longerRunsAreRequestedWhole() throws {
        let t = Self.trace(Self.run([1, 1, 1, 1, 1, 1]))
        let r = try #require(t.mergeRequests(fanout: 4).first)
        #expect(r.inputs.count == 6)
        #expect(r.desc.lower == .minimum && r.desc.upper == Antichain(6))
    }

    @Test func emptyBatchesInsideARunAreMergedButNotAtItsEnds() throws {
        // [E, 1, E, 1, 1, E, 1, E]: four same-level batches with empties between them.
        let batches = Self.run([0, 1, 0, 1, 1, 0, 1, 0])
        let t = Self.trace(batches)
        #expect(t.batches == batches, "no two empties are adjacent here, so none were fused")
        let requests = t.mergeRequests(fanout: 4)
        let r = try #require(requests.first)
        #expect(requests.count == 1)
        #expect(r.inputs == Array(batches[1...6]))
        #expect(r.desc.lower == Antichain(1) && r.desc.upper == Antichain(7))
        // Empties do not count towards the fanout.
        #expect(Self.trace(Self.run([1, 0, 1, 0, 1])).mergeRequests(fanout: 4).isEmpty)
    }

    @Test func anOlderBatchTwoLevelsAboveTheRunsNewestStartsTheNextRun() {
        // Levels by bit length of the row count: 1 -> 1, 2...3 -> 2, 4...7 -> 3, 8...15 -> 4.
        // One level up, or any level below, stays in the run.
        #expect(Self.trace(Self.run([1, 1, 2, 1, 1])).mergeRequests(fanout: 3).map(\.inputs.count) == [5])
        #expect(Self.trace(Self.run([2, 3, 3, 2])).mergeRequests(fanout: 4).count == 1, "2 and 3 share a level")
        #expect(Self.trace(Self.run([4, 5, 3, 7])).mergeRequests(fanout: 4).count == 1, "3 is one level below the others")
        #expect(Self.trace(Self.run([8, 1, 8, 1])).mergeRequests(fanout: 4).isEmpty, "8 is three levels above 1")

        // Two runs, reported newest first: 6 is two levels above the newest run's 1s.
        let batches = Self.run([5, 4, 6, 1, 1, 1])
        let requests = Self.trace(batches).mergeRequests(fanout: 3)
        #expect(requests.map(\.inputs) == [Array(batches[3...5]), Array(batches[0...2])])
        #expect(requests.map(\.desc.lower) == [Antichain(3), .minimum])
        // A big batch ends the newer run (too short here); older small ones join the big one's.
        #expect(Self.trace(Self.run([1, 1, 1, 8, 1, 1])).mergeRequests(fanout: 3).map(\.inputs.count) == [4])
    }

    @Test func appendSizesStraddlingAPowerOfTwoStillMerge() throws {
        // Group commits of 400 to 640 rows straddle 512: under a "same level only" rule
        // no run ever reached the fanout and the trace grew by one batch per append.
        var rng = SeededGenerator(seed: 7)
        var t = TraceState()
        var merges = 0
        for i in 0..<2_000 {
            t.push(F.batch(UInt64(i), UInt64(i + 1), rows: UInt64.random(in: 400...640, using: &rng), tag: "\(i)"))
            while let r = t.mergeRequests(fanout: 8).first {
                let applied = t.applyMerge(inputs: r.inputs, output: F.mergeOutput(r, tag: "m\(merges)"))
                #expect(applied)
                merges += 1
            }
            try t.validate()
        }
        #expect(t.batches.count <= 8 * (Self.floorLog2(2_000 * 640) / 2 + 2), "\(t.batches.count) batches")
        #expect(merges > 2_000 / 8 / 2)
    }

    // MARK: applyMerge

    @Test func applyMergeReplacesExactlyTheInputs() throws {
        // The newest batch is two levels below the 8s: it is a run of its own.
        let batches = Self.run([1000, 8, 8, 8, 8, 1])
        var t = Self.trace(batches)
        let r = try #require(t.mergeRequests(fanout: 4).first)
        #expect(r.inputs == Array(batches[1...4]))
        let output = F.mergeOutput(r)
        let applied = t.applyMerge(inputs: r.inputs, output: output)
        #expect(applied)
        #expect(t.batches == [batches[0], output, batches[5]])
        #expect(t.upper == Antichain(6))
        try t.validate()
        // Applying it again finds its inputs gone.
        let again = t
        let appliedAgain = t.applyMerge(inputs: r.inputs, output: output)
        #expect(!appliedAgain)
        #expect(t == again)
    }

    @Test func applyMergeRefusesWhenTheInputsChanged() throws {
        let batches = Self.run([1, 1, 1, 1, 1, 1, 1, 1])
        let t = Self.trace(batches)
        let r = try #require(t.mergeRequests(fanout: 4).first)
        #expect(r.inputs == batches)

        // A competing merge of the first half landed first.
        var raced = t
        let half = MergeRequest(desc: BatchDescription(lower: .minimum, upper: Antichain(4)), inputs: Array(batches[0...3]))
        let otherApplied = raced.applyMerge(inputs: half.inputs, output: F.mergeOutput(half, tag: "other"))
        #expect(otherApplied)
        let before = raced
        let stale = raced.applyMerge(inputs: r.inputs, output: F.mergeOutput(r))
        #expect(!stale)
        #expect(raced == before)

        // Inputs that are present but not the whole contiguous run.
        var gap = t
        var holey = r.inputs
        holey.remove(at: 2)
        var holeyOutput = F.mergeOutput(r)
        holeyOutput.desc.upper = holey.last!.desc.upper
        let holeyApplied = gap.applyMerge(inputs: holey, output: holeyOutput)
        #expect(!holeyApplied)
        #expect(gap == t)

        // An output whose bounds differ from the inputs'.
        var wrong = t
        var narrow = F.mergeOutput(r)
        narrow.desc.upper = Antichain(7)
        let narrowApplied = wrong.applyMerge(inputs: r.inputs, output: narrow)
        #expect(!narrowApplied)
        let noInputsApplied = wrong.applyMerge(inputs: [], output: F.mergeOutput(r))
        #expect(!noInputsApplied)
        #expect(wrong == t)

        // An input that was since replaced by an equal-bounded but different batch.
        var replaced = t
        replaced.batches[5] = F.batch(5, 6, rows: 1, tag: "rewritten")
        let replacedApplied = replaced.applyMerge(inputs: r.inputs, output: F.mergeOutput(r))
        #expect(!replacedApplied)
    }

    // MARK: Simulation

    static func floorLog2(_ n: Int) -> Int { Int.bitWidth - n.leadingZeroBitCount - 1 }

    /// Pushes `n` batches (one row each; with `interleaveEmpty`, every other one empty),
    /// applying every merge request as soon as it appears, and checks after each push
    /// that the trace is contiguous, holds every row, and stays logarithmically short.
    static func simulate(n: Int, fanout: Int, interleaveEmpty: Bool) throws -> (maxLength: Int, merges: Int) {
        var t = TraceState()
        var rows: UInt64 = 0
        var maxLength = 0
        var merges = 0
        for i in 0..<n {
            let empty = interleaveEmpty && i % 2 == 1
            t.push(F.batch(UInt64(i), UInt64(i + 1), rows: empty ? 0 : 1, tag: "\(i)"))
            rows += empty ? 0 : 1
            // Applying one merge can complete a run at the next level: repeat until quiet.
            while true {
                let requests = t.mergeRequests(fanout: fanout)
                if requests.isEmpty { break }
                for r in requests {
                    let applied = t.applyMerge(inputs: r.inputs, output: F.mergeOutput(r, tag: "m\(merges)"))
                    #expect(applied, "push \(i)")
                    merges += 1
                }
            }
            try t.validate()
            #expect(t.upper == Antichain(UInt64(i + 1)))
            #expect(t.batches.reduce(UInt64(0)) { $0 + $1.rowCount } == rows)
            let nonEmpty = t.batches.filter { $0.rowCount > 0 }.count
            #expect(nonEmpty <= fanout * (floorLog2(i + 1) + 2), "push \(i): \(nonEmpty) batches with data")
            // Empty batches sit between data batches at most once each (adjacent ones fuse).
            #expect(t.batches.count <= 2 * nonEmpty + 1, "push \(i): \(t.batches.count) batches")
            maxLength = max(maxLength, t.batches.count)
        }
        return (maxLength, merges)
    }

    @Test(arguments: [2, 4, 8])
    func tenThousandPushesKeepTheTraceLogarithmic(fanout: Int) throws {
        let (maxLength, merges) = try Self.simulate(n: 10_000, fanout: fanout, interleaveEmpty: false)
        #expect(maxLength <= fanout * (Self.floorLog2(10_000) + 2))
        #expect(merges > 10_000 / fanout / 2, "merging happened throughout")
    }

    @Test(arguments: [2, 4, 8])
    func tenThousandPushesWithEmptyBatchesKeepTheTraceLogarithmic(fanout: Int) throws {
        let (maxLength, merges) = try Self.simulate(n: 10_000, fanout: fanout, interleaveEmpty: true)
        #expect(maxLength <= 2 * fanout * (Self.floorLog2(10_000) + 2) + 1)
        #expect(merges > 5_000 / fanout / 2)
    }
}
