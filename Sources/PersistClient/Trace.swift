import PersistCodec
import PersistCore

/// A request to merge a contiguous run of batches into one, emitted by the trace after an
/// append. Applying the result later checks that exactly these inputs are still present.
public struct MergeRequest: Hashable, Sendable {
    /// `[first.lower, last.upper)`, with since = join(input sinces, trace since).
    public var desc: BatchDescription
    public var inputs: [HollowBatch]
}

/// The trace's rules, as pure functions over `TraceState`: contiguous batches, adjacent
/// empty batches fused, and size-tiered merging that keeps the number of batches
/// logarithmic in the number of updates (spec/persist.md §6.1 and §6.6).
///
/// A batch's level is the bit length of its update count. The non-empty batches are cut
/// into runs from the newest back: a run's newest batch sets its level `L`, and each older
/// batch joins it while its own level is at most `L + 1` (so smaller batches join too);
/// the first batch of level `L + 2` or more starts the next run. Empty batches between
/// members neither count nor break a run. A run of `fanout` or more batches is requested
/// as one merge.
///
/// Cutting by the newest member's level rather than by fixed level boundaries matters
/// when appends vary in size around a power of two (group commits of 400 to 600 rows,
/// say): under "same level only" such neighbours split every run and nothing merges,
/// so the trace grows with every append. Here each run's level is at least two above
/// the next newer run's, so the trace stays O(fanout * log n) long.
extension TraceState {
    static func level(_ b: HollowBatch) -> Int { UInt64.bitWidth - b.rowCount.leadingZeroBitCount }

    static func isEmpty(_ b: HollowBatch) -> Bool { b.parts.isEmpty && b.rowCount == 0 }

    /// Appends a batch that starts at the current upper. A batch with an empty interval
    /// changes nothing. Consecutive empty batches are fused into one.
    mutating func push(_ batch: HollowBatch) {
        guard batch.desc.lower != batch.desc.upper else { return }
        precondition(batch.desc.lower == upper, "pushed batches are contiguous")
        if Self.isEmpty(batch), let last = batches.last, Self.isEmpty(last), last.desc.since == batch.desc.since {
            batches[batches.count - 1].desc.upper = batch.desc.upper
        } else {
            batches.append(batch)
        }
        upper = batch.desc.upper
    }

    /// Runs of at least `fanout` non-empty batches (see above), as merge requests, newest
    /// first. Empty batches inside a run are merged along with it.
    func mergeRequests(fanout: Int) -> [MergeRequest] {
        guard fanout >= 2 else { return [] }
        var requests: [MergeRequest] = []
        var runLevel: Int?
        var runCount = 0
        var runStart = 0
        var runEnd = 0
        for i in batches.indices.reversed() where !Self.isEmpty(batches[i]) {
            let l = Self.level(batches[i])
            if let r = runLevel, l <= r + 1 {
                runCount += 1
                runStart = i
                continue
            }
            if runCount >= fanout { requests.append(request(for: Array(batches[runStart..<runEnd]))) }
            runLevel = l
            runCount = 1
            runStart = i
            runEnd = i + 1
        }
        if runCount >= fanout { requests.append(request(for: Array(batches[runStart..<runEnd]))) }
        return requests
    }

    func request(for inputs: [HollowBatch]) -> MergeRequest {
        var since = self.since
        for b in inputs { since = since.join(b.desc.since) }
        let lower = inputs.first?.desc.lower ?? upper
        let upper = inputs.last?.desc.upper ?? upper
        return MergeRequest(desc: BatchDescription(lower: lower, upper: upper, since: since), inputs: inputs)
    }

    /// Replaces `inputs` by `output` if exactly those batches are still a contiguous run
    /// of the trace. Returns whether it did.
    mutating func applyMerge(inputs: [HollowBatch], output: HollowBatch) -> Bool {
        guard let first = inputs.first, output.desc.lower == first.desc.lower,
            output.desc.upper == inputs.last?.desc.upper,
            let start = batches.firstIndex(of: first), start + inputs.count <= batches.count,
            Array(batches[start..<start + inputs.count]) == inputs
        else { return false }
        batches.replaceSubrange(start..<start + inputs.count, with: [output])
        return true
    }
}
