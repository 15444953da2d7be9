import PersistCodec
import PersistCore
import Testing

@testable import PersistClient

/// Runs seeded random commands against a shard state the way the CaS loop does (copy,
/// next seqno, command, then expiry and GC assignment on a commit), and hands back every
/// committed transition.
struct CommandDriver {
    typealias F = StateFixtures

    struct Transition {
        var old: ShardState
        var new: ShardState
        var command: String
    }

    var state = F.initialState()
    var g: SeededGenerator
    var nowMs: UInt64 = 10_000
    var pending: [MergeRequest] = []
    var serial = 0
    var commits: [String: Int] = [:]
    let writers: [WriterID] = F.ids(3, seed: 100)
    let readers: [LeasedReaderID] = F.ids(4, seed: 101)
    let criticals: [CriticalReaderID] = F.ids(2, seed: 102)

    init(seed: UInt64) { g = SeededGenerator(seed: seed) }

    mutating func fresh() -> Int {
        serial += 1
        return serial
    }

    mutating func token() -> IdempotencyToken { IdempotencyToken(using: &g) }

    /// One random command; nil when it ended as a no-op.
    mutating func step() -> Transition? {
        let old = state
        nowMs += UInt64.random(in: 0...2_500, using: &g)
        var next = old
        next.seqno = old.seqno.next!
        next.walltimeMs = max(nowMs, old.walltimeMs + 1)
        if Int.random(in: 0..<10, using: &g) == 0 { next.hostname = "host-\(Int.random(in: 0..<3, using: &g))" }
        if Int.random(in: 0..<40, using: &g) == 0 { next.applierVersion = "0.\(Int.random(in: 1...3, using: &g)).0" }
        let beforeCommand = next
        let (name, committed, isWrite) = run(&next)
        guard committed else {
            #expect(next == beforeCommand, "the no-op \(name) changed the state")
            return nil
        }
        next.expire(nowMs: nowMs)
        _ = next.maybeAssignGC(isWrite: isWrite)
        state = next
        commits[name, default: 0] += 1
        return Transition(old: old, new: next, command: name)
    }

    static func done<R>(_ w: Work<R>) -> Bool { w.committed != nil }

    /// Runs a random command on `s`: its name, whether it committed, whether it is a write.
    mutating func run(_ s: inout ShardState) -> (String, Bool, Bool) {
        let lease: UInt64 = 8_000
        switch Int.random(in: 0..<100, using: &g) {
        case 0..<35:
            let w = Int.random(in: 0..<writers.count, using: &g)
            var lower = s.upper.element ?? 0
            if Int.random(in: 0..<6, using: &g) == 0 { lower = UInt64.random(in: 0...lower + 3, using: &g) }
            let upper = Int.random(in: 0..<10, using: &g) == 0 ? lower : lower + UInt64.random(in: 1...4, using: &g)
            let rows = upper == lower ? 0 : UInt64.random(in: 0...3, using: &g)
            let batch = F.batch(lower, upper, rows: rows, tag: "/\(fresh())")
            // Now and then a retry of the writer's last token.
            let retry = Int.random(in: 0..<12, using: &g) == 0
            let tok = retry ? (s.writers[writers[w]]?.mostRecentWriteToken ?? token()) : token()
            let outcome = s.compareAndAppend(
                batch, writer: writers[w], token: tok, nowMs: nowMs, leaseMs: lease * 2, purpose: "w\(w)", mergeFanout: 3)
            if case .appended(let requests)? = outcome.committed { pending += requests }
            return ("append", Self.done(outcome), true)
        case 35..<50:
            guard !pending.isEmpty else { return ("merge", false, false) }
            let r = pending.remove(at: Int.random(in: 0..<pending.count, using: &g))
            return ("merge", Self.done(s.applyMergeResult(inputs: r.inputs, output: F.mergeOutput(r, tag: "m\(fresh())"))), false)
        case 50..<58:
            let id = readers.randomElement(using: &g)!
            return ("register leased", Self.done(s.registerLeasedReader(id, nowMs: nowMs, leaseMs: lease, purpose: "r", useCriticalSince: Bool.random(using: &g))), false)
        case 58..<63:
            return ("heartbeat", Self.done(s.heartbeatLeasedReader(readers.randomElement(using: &g)!, nowMs: nowMs)), false)
        case 63..<73:
            let id = readers.randomElement(using: &g)!
            let current = s.leasedReaders[id]?.since.element ?? 0
            let target = Antichain(current + UInt64.random(in: 0...4, using: &g))
            let seqno = SeqNo(UInt64.random(in: 0...s.seqno.rawValue, using: &g))!
            return ("downgrade", Self.done(s.downgradeSince(id, to: target, outstandingSeqno: seqno, nowMs: nowMs)), false)
        case 73..<76:
            return ("expire leased", Self.done(s.expireLeasedReader(readers.randomElement(using: &g)!)), false)
        case 76..<80:
            let purpose = Bool.random(using: &g) ? "ctl" : "ctl2"
            return ("register critical", Self.done(s.registerCriticalReader(criticals.randomElement(using: &g)!, initialOpaque: 0, opaqueCodec: "u64", purpose: purpose)), false)
        case 80..<88:
            let id = criticals.randomElement(using: &g)!
            guard let r = s.criticalReaders[id] else { return ("downgrade critical", false, false) }
            let expected = Int.random(in: 0..<5, using: &g) == 0 ? r.opaque &+ 1 : r.opaque
            let target = Antichain((r.since.element ?? 0) + UInt64.random(in: 0...3, using: &g))
            return ("downgrade critical", Self.done(s.compareAndDowngradeSince(id, expected: expected, newOpaque: r.opaque &+ 1, newSince: target)), false)
        case 88..<89:
            return ("expire critical", Self.done(s.expireCriticalReader(criticals.randomElement(using: &g)!)), false)
        case 89..<91:
            return ("expire writer", Self.done(s.expireWriter(writers.randomElement(using: &g)!)), false)
        case 91..<97:
            // A rollup of the previous state, or a competing one for a recorded seqno.
            let at = Bool.random(using: &g) ? SeqNo(s.seqno.rawValue - 1)! : (s.rollups.keys.randomElement(using: &g) ?? SeqNo(1))
            let rollup = HollowRollup(key: "r/\(at.rawValue)/\(fresh())", encodedSizeBytes: UInt64.random(in: 1...1_000, using: &g))
            return ("add rollup", Self.done(s.addRollup(at: at, rollup)), false)
        default:
            let since = s.seqnoSince
            let old = s.rollups.filter { $0.key <= since }.map { ($0.key, $0.value) }
            return ("remove rollups", Self.done(s.removeRollups(old)), false)
        }
    }
}

/// Diffs between consecutive states (spec/persist.md §3.2): computed from a transition,
/// they rebuild the new state exactly, survive their encoding, and refuse to apply to any
/// state other than the one they were computed from.
@Suite struct StateDiffTests {
    typealias F = StateFixtures

    static func between(_ t: CommandDriver.Transition) -> StateDiff {
        StateDiff.between(t.old, t.new, applierVersion: t.new.applierVersion)
    }

    static func applying(_ diff: StateDiff, to state: ShardState) -> Result<ShardState, DiffMismatch> {
        var s = state
        do {
            try diff.apply(to: &s)
            return .success(s)
        } catch {
            // A refused diff leaves the state untouched.
            #expect(s == state)
            return .failure(error)
        }
    }

    @Test(arguments: [1 as UInt64, 2, 3, 4])
    func diffsRebuildTheNextStateExactly(seed: UInt64) throws {
        var driver = CommandDriver(seed: seed)
        var transitions = 0
        for _ in 0..<3_000 {
            guard let t = driver.step() else { continue }
            transitions += 1
            let diff = Self.between(t)
            #expect(diff.seqnoFrom == t.old.seqno && diff.seqnoTo == t.new.seqno)
            #expect(diff.latestRollupKey == (t.new.latestRollup?.rollup.key ?? ""))
            let rebuilt = try Self.applying(diff, to: t.old).get()
            #expect(rebuilt == t.new, "\(t.command) at \(t.new.seqno)")
            // The consensus value: the diff survives its encoding, and so does the rollup.
            let decoded = try StateDiff.decode(diff.encode())
            #expect(decoded == diff)
            #expect(try Self.applying(decoded, to: t.old).get() == t.new)
            #expect(try ShardState.decode(t.new.encode()) == t.new)
        }
        // The driver exercised what matters.
        #expect(transitions > 1_500)
        for command in ["append", "merge", "register leased", "downgrade", "downgrade critical", "add rollup", "remove rollups"] {
            #expect(driver.commits[command, default: 0] > 5, "\(command): \(driver.commits)")
        }
        #expect(driver.state.trace.batches.count > 2)
        #expect(driver.state.since != .minimum, "readers moved the since")
    }

    @Test func replayingEveryDiffFromTheFirstStateReachesTheLast() throws {
        var driver = CommandDriver(seed: 7)
        let first = driver.state
        var encoded: [[UInt8]] = []
        for _ in 0..<2_000 {
            if let t = driver.step() { encoded.append(Self.between(t).encode()) }
        }
        var s = first
        for bytes in encoded { try StateDiff.decode(bytes).apply(to: &s) }
        #expect(s == driver.state)
        #expect(s.seqno.rawValue == first.seqno.rawValue + UInt64(encoded.count))
    }

    @Test func aDiffOnlyAppliesToItsOwnSeqno() throws {
        var driver = CommandDriver(seed: 8)
        var checked = 0
        for _ in 0..<400 {
            guard let t = driver.step() else { continue }
            let diff = Self.between(t)
            // Already applied: the state is at the diff's target.
            #expect(Self.applying(diff, to: t.new).failure != nil)
            // Right contents, wrong seqno, either side.
            for delta in [-1, 1] {
                var other = t.old
                other.seqno = SeqNo(UInt64(Int(other.seqno.rawValue) + delta))!
                #expect(Self.applying(diff, to: other).failure != nil)
            }
            checked += 1
        }
        #expect(checked > 100)
    }

    /// Alters the old side of the first change in `changes` inside `map`: removes nothing
    /// that is absent, but makes an insert find its key present and an update or delete
    /// find another value. Returns whether there was a change to tamper with.
    static func tamper<K: Hashable, V>(_ changes: [MapChange<K, V>], _ map: inout [K: V], _ alter: (V) -> V) -> Bool {
        switch changes.first {
        case .insert(let k, let v)?: map[k] = alter(v)
        case .update(let k, let old, _)?: map[k] = alter(old)
        case .delete(let k, let old)?: map[k] = alter(old)
        case nil: return false
        }
        return true
    }

    @Test func aDiffRefusesAStateWithOtherOldValues() throws {
        var driver = CommandDriver(seed: 9)
        var tampered: [String: Int] = [:]
        for _ in 0..<2_000 {
            guard let t = driver.step() else { continue }
            let diff = Self.between(t)
            var variants: [(String, ShardState)] = []
            var s = t.old
            if Self.tamper(diff.writers, &s.writers, { var w = $0; w.purpose += "!"; return w }) { variants.append(("writers", s)) }
            s = t.old
            if Self.tamper(diff.leasedReaders, &s.leasedReaders, { var r = $0; r.lastHeartbeatMs &+= 1; return r }) { variants.append(("leased", s)) }
            s = t.old
            if Self.tamper(diff.criticalReaders, &s.criticalReaders, { var r = $0; r.opaque &+= 1; return r }) { variants.append(("critical", s)) }
            s = t.old
            if Self.tamper(diff.rollups, &s.rollups, { var r = $0; r.key += "!"; return r }) { variants.append(("rollups", s)) }
            if diff.hostname != nil {
                s = t.old
                s.hostname += "!"
                variants.append(("hostname", s))
            }
            if diff.lastGCReq != nil {
                s = t.old
                s.lastGCReq = SeqNo(s.lastGCReq.rawValue + 1)!
                variants.append(("gc", s))
            }
            if diff.traceSince != nil {
                s = t.old
                s.trace.since = Antichain((s.trace.since.element ?? 0) + 1)
                variants.append(("since", s))
            }
            if let deleted = diff.deletedBatches.first, let i = t.old.trace.batches.firstIndex(of: deleted) {
                // The batch the diff removes is not the one in the state.
                s = t.old
                if !s.trace.batches[i].parts.isEmpty {
                    s.trace.batches[i].parts[0].encodedSizeBytes += 1
                    variants.append(("deleted batch", s))
                }
            }
            for (what, bad) in variants {
                #expect(Self.applying(diff, to: bad).failure != nil, "\(what) after \(t.command)")
                tampered[what, default: 0] += 1
            }
        }
        for what in ["writers", "leased", "critical", "rollups", "hostname", "gc", "since", "deleted batch"] {
            #expect(tampered[what, default: 0] > 3, "\(what): \(tampered)")
        }
    }

    @Test func aBatchInsertedTwiceOrMissingIsRefused() throws {
        let s0 = F.initialState()
        var s1 = F.next(s0)
        _ = s1.compareAndAppend(
            F.batch(0, 4), writer: CommandDriver(seed: 0).writers[0], token: IdempotencyToken(bytes: Array(repeating: 7, count: 16))!,
            nowMs: 1, leaseMs: 1, purpose: "", mergeFanout: 4)
        let diff = StateDiff.between(s0, s1, applierVersion: F.version)
        #expect(diff.insertedBatches == [F.batch(0, 4)])
        // A state that already has the batch (at the same seqno) cannot take it again.
        var has = s0
        has.trace = s1.trace
        #expect(Self.applying(diff, to: has).failure != nil)
        // A diff deleting a batch the state does not hold.
        var backwards = StateDiff.between(s1, s0, applierVersion: F.version)
        backwards.seqnoFrom = s0.seqno
        backwards.seqnoTo = s1.seqno
        #expect(backwards.deletedBatches == [F.batch(0, 4)])
        #expect(Self.applying(backwards, to: s0).failure != nil)
    }

    @Test func aCompactionIsNDeletesAndOneInsert() throws {
        var s = F.initialState()
        let writer = CommandDriver(seed: 0).writers[0]
        var requests: [MergeRequest] = []
        for i in 0..<5 {
            var n = F.next(s)
            let rows: UInt64 = i == 2 ? 0 : 1  // an empty batch inside the run
            let w = n.compareAndAppend(
                F.batch(UInt64(i), UInt64(i + 1), rows: rows), writer: writer,
                token: IdempotencyToken(bytes: Array(repeating: UInt8(i + 1), count: 16))!, nowMs: 1, leaseMs: 10, purpose: "",
                mergeFanout: 4)
            if case .appended(let r)? = w.committed { requests = r }
            s = n
        }
        let request = try #require(requests.first)
        #expect(request.inputs.count == 5)
        var merged = F.next(s)
        let output = F.mergeOutput(request)
        #expect(merged.applyMergeResult(inputs: request.inputs, output: output).committed == true)
        let diff = StateDiff.between(s, merged, applierVersion: F.version)
        #expect(Set(diff.deletedBatches) == Set(request.inputs))
        #expect(diff.deletedBatches.count == 5)
        #expect(diff.insertedBatches == [output])
        #expect(diff.traceUpper == nil && diff.traceSince == nil, "a compaction moves no frontier")
        #expect(diff.writers.isEmpty && diff.leasedReaders.isEmpty && diff.rollups.isEmpty)
        #expect(try Self.applying(diff, to: s).get() == merged)

        // The same result again is not applied, so it commits nothing to diff.
        var again = F.next(merged)
        #expect(again.applyMergeResult(inputs: request.inputs, output: output).noOpResult == false)
    }

    @Test func anAppendIsOneInsertAndAnUpperChange() throws {
        let s0 = F.initialState()
        var s1 = F.next(s0)
        let writer = CommandDriver(seed: 0).writers[1]
        _ = s1.compareAndAppend(
            F.batch(0, 6, rows: 2), writer: writer, token: IdempotencyToken(bytes: Array(repeating: 9, count: 16))!, nowMs: 5,
            leaseMs: 10, purpose: "w", mergeFanout: 4)
        let diff = StateDiff.between(s0, s1, applierVersion: F.version)
        #expect(diff.insertedBatches == [F.batch(0, 6, rows: 2)] && diff.deletedBatches.isEmpty)
        #expect(diff.traceUpper == ValueChange(old: .minimum, new: Antichain(6)))
        #expect(diff.writers.count == 1)
        if case .insert(let id, let state)? = diff.writers.first {
            #expect(id == writer && state.mostRecentWriteUpper == Antichain(6))
        } else {
            Issue.record("the writer is inserted: \(diff.writers)")
        }
        // An empty batch after an empty batch fuses: one delete, one insert.
        var s2 = F.next(s1)
        _ = s2.compareAndAppend(
            F.batch(6, 8, rows: 0), writer: writer, token: IdempotencyToken(bytes: Array(repeating: 10, count: 16))!, nowMs: 6,
            leaseMs: 10, purpose: "w", mergeFanout: 4)
        var s3 = F.next(s2)
        _ = s3.compareAndAppend(
            F.batch(8, 9, rows: 0), writer: writer, token: IdempotencyToken(bytes: Array(repeating: 11, count: 16))!, nowMs: 7,
            leaseMs: 10, purpose: "w", mergeFanout: 4)
        let fused = StateDiff.between(s2, s3, applierVersion: F.version)
        #expect(fused.deletedBatches == [F.batch(6, 8, rows: 0)])
        #expect(fused.insertedBatches == [F.batch(6, 9, rows: 0)])
        #expect(try Self.applying(fused, to: s2).get() == s3)
    }

    @Test func identicalStatesDiffToNothingButTheSeqno() throws {
        let s0 = F.initialState()
        let s1 = F.next(s0)
        let diff = StateDiff.between(s0, s1, applierVersion: F.version)
        #expect(diff == StateDiff(
            applierVersion: F.version, seqnoFrom: s0.seqno, seqnoTo: s1.seqno, walltimeMs: s1.walltimeMs,
            latestRollupKey: "r/1/init"))
        #expect(try Self.applying(diff, to: s0).get() == s1)
    }
}

extension Result {
    fileprivate var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
}
