import Foundation
import PersistCodec
import PersistCore
import Testing

/// The rollup (`ShardState`) and consensus-value (`StateDiff`) encodings: round trips of
/// seeded random values, rejection of every truncation and single-byte change, random
/// inputs that must never trap, the trace and map-order checks the decoder makes, and the
/// pinned header bytes.
@Suite struct ShardStateCodecTests {
    static let masks: [UInt8] = [0x01, 0x80, 0xFF]

    // MARK: Samples

    /// A small state with one of everything, used by the corruption and golden tests.
    static let sampleState: ShardState = {
        var g = SeededGenerator(seed: 9_001)
        let reader = LeasedReaderID(using: &g)
        let critical = CriticalReaderID(using: &g)
        let writer = WriterID(using: &g)
        let token = IdempotencyToken(using: &g)
        return ShardState(
            shardID: Fixtures.shard, seqno: SeqNo(7), walltimeMs: 1_700_000_000_000, hostname: "host-a",
            applierVersion: "0.1.0", keyCodec: "bytes", valueCodec: "unit", lastGCReq: SeqNo(3),
            rollups: [SeqNo(1): HollowRollup(key: "r/1/a", encodedSizeBytes: 90), SeqNo(5): HollowRollup(key: "r/5/b", encodedSizeBytes: 200)],
            leasedReaders: [
                reader: LeasedReaderState(seqno: SeqNo(4), since: Antichain(2), lastHeartbeatMs: 10, leaseDurationMs: 900, purpose: "snapshot")
            ],
            criticalReaders: [critical: CriticalReaderState(since: Antichain(1), opaque: 42, opaqueCodec: "u64", purpose: "controller")],
            writers: [
                writer: WriterState(
                    lastHeartbeatMs: 11, leaseDurationMs: 3_600, mostRecentWriteToken: token,
                    mostRecentWriteUpper: Antichain(9), purpose: "ingest")
            ],
            trace: TraceState(
                since: Antichain(1), upper: Antichain(9),
                batches: [
                    HollowBatch(
                        desc: BatchDescription(lower: .minimum, upper: Antichain(5)), rowCount: 5,
                        parts: [HollowBatchPart(key: "p/w/0", encodedSizeBytes: 64, rowCount: 5)]),
                    Fixtures.hollowBatch,
                ]))
    }()

    static let sampleDiff: StateDiff = {
        var g = SeededGenerator(seed: 9_002)
        let reader = LeasedReaderID(using: &g)
        let old = LeasedReaderState(seqno: SeqNo(4), since: Antichain(2), lastHeartbeatMs: 10, leaseDurationMs: 900, purpose: "p")
        var new = old
        new.since = Antichain(6)
        return StateDiff(
            applierVersion: "0.1.0", seqnoFrom: SeqNo(7), seqnoTo: SeqNo(8), walltimeMs: 1_700_000_000_001,
            latestRollupKey: "r/5/b", hostname: ValueChange(old: "host-a", new: "host-b"),
            lastGCReq: ValueChange(old: SeqNo(3), new: SeqNo(4)),
            rollups: [.insert(SeqNo(8), HollowRollup(key: "r/8/c", encodedSizeBytes: 1))],
            leasedReaders: [.update(reader, old: old, new: new)],
            traceSince: ValueChange(old: Antichain(1), new: Antichain(2)),
            traceUpper: ValueChange(old: Antichain(9), new: Antichain(12)),
            insertedBatches: [
                HollowBatch(
                    desc: BatchDescription(lower: Antichain(9), upper: Antichain(12)), rowCount: 1,
                    parts: [HollowBatchPart(key: "p/w/1", encodedSizeBytes: 30, rowCount: 1)])
            ])
    }()

    static func randomSeqNo(using g: inout SeededGenerator) -> SeqNo {
        switch Int.random(in: 0..<4, using: &g) {
        case 0: return .minimum
        case 1: return .maximum
        default: return SeqNo(UInt64.random(in: 0...UInt64(Int64.max), using: &g))!
        }
    }

    static func randomText(maxLength: Int, using g: inout SeededGenerator) -> String {
        let n = Int.random(in: 0...maxLength, using: &g)
        return String((0..<n).map { _ in Fixtures.keyAlphabet.randomElement(using: &g)!.first! })
    }

    static func randomRollup(using g: inout SeededGenerator) -> HollowRollup {
        HollowRollup(key: "r/" + Fixtures.randomKey(using: &g), encodedSizeBytes: Fixtures.randomU64(using: &g))
    }

    static func randomLeasedReader(using g: inout SeededGenerator) -> LeasedReaderState {
        LeasedReaderState(
            seqno: randomSeqNo(using: &g), since: Fixtures.randomAntichain(using: &g),
            lastHeartbeatMs: Fixtures.randomU64(using: &g), leaseDurationMs: Fixtures.randomU64(using: &g),
            purpose: randomText(maxLength: 12, using: &g))
    }

    static func randomCriticalReader(using g: inout SeededGenerator) -> CriticalReaderState {
        CriticalReaderState(
            since: Fixtures.randomAntichain(using: &g), opaque: Fixtures.randomU64(using: &g),
            opaqueCodec: randomText(maxLength: 6, using: &g), purpose: randomText(maxLength: 12, using: &g))
    }

    static func randomWriter(using g: inout SeededGenerator) -> WriterState {
        WriterState(
            lastHeartbeatMs: Fixtures.randomU64(using: &g), leaseDurationMs: Fixtures.randomU64(using: &g),
            mostRecentWriteToken: IdempotencyToken(using: &g), mostRecentWriteUpper: Fixtures.randomAntichain(using: &g),
            purpose: randomText(maxLength: 12, using: &g))
    }

    static func randomMap<K: Hashable, V>(_ maxCount: Int, using g: inout SeededGenerator, _ make: (inout SeededGenerator) -> (K, V)) -> [K: V] {
        var out: [K: V] = [:]
        for _ in 0..<Int.random(in: 0...maxCount, using: &g) {
            let (k, v) = make(&g)
            out[k] = v
        }
        return out
    }

    /// A valid trace: contiguous non-empty intervals from `{0}`; the last one sometimes
    /// closes the shard (upper `{}`). Some batches are empty (no parts).
    static func randomTrace(using g: inout SeededGenerator) -> TraceState {
        var batches: [HollowBatch] = []
        var lower: UInt64 = 0
        let count = Int.random(in: 0...6, using: &g)
        for i in 0..<count {
            let closes = i == count - 1 && Int.random(in: 0..<4, using: &g) == 0
            let upper = closes ? Antichain.empty : Antichain(lower + UInt64.random(in: 1...1_000, using: &g))
            let parts = (0..<Int.random(in: 0...3, using: &g)).map { _ in
                Fixtures.randomPart(rowCount: UInt64.random(in: 0...10_000, using: &g), using: &g)
            }
            batches.append(
                HollowBatch(
                    desc: BatchDescription(lower: Antichain(lower), upper: upper, since: Fixtures.randomAntichain(using: &g)),
                    rowCount: parts.reduce(0) { $0 + $1.rowCount }, parts: parts))
            lower = upper.element ?? lower
        }
        let upper = batches.last?.desc.upper ?? .minimum
        return TraceState(since: Fixtures.randomAntichain(using: &g), upper: upper, batches: batches)
    }

    static func randomState(using g: inout SeededGenerator) -> ShardState {
        ShardState(
            shardID: ShardID(using: &g), seqno: randomSeqNo(using: &g), walltimeMs: Fixtures.randomU64(using: &g),
            hostname: randomText(maxLength: 20, using: &g), applierVersion: randomText(maxLength: 10, using: &g),
            keyCodec: randomText(maxLength: 10, using: &g), valueCodec: randomText(maxLength: 10, using: &g),
            lastGCReq: randomSeqNo(using: &g),
            rollups: randomMap(5, using: &g) { g in (randomSeqNo(using: &g), randomRollup(using: &g)) },
            leasedReaders: randomMap(5, using: &g) { g in (LeasedReaderID(using: &g), randomLeasedReader(using: &g)) },
            criticalReaders: randomMap(4, using: &g) { g in (CriticalReaderID(using: &g), randomCriticalReader(using: &g)) },
            writers: randomMap(4, using: &g) { g in (WriterID(using: &g), randomWriter(using: &g)) },
            trace: randomTrace(using: &g))
    }

    static func randomChanges<K: Hashable & Sendable, V: Hashable & Sendable>(
        using g: inout SeededGenerator, key: (inout SeededGenerator) -> K, value: (inout SeededGenerator) -> V
    ) -> [MapChange<K, V>] {
        (0..<Int.random(in: 0...4, using: &g)).map { _ in
            switch Int.random(in: 0..<3, using: &g) {
            case 0: return .insert(key(&g), value(&g))
            case 1: return .update(key(&g), old: value(&g), new: value(&g))
            default: return .delete(key(&g), value(&g))
            }
        }
    }

    static func randomValueChange<V>(using g: inout SeededGenerator, _ value: (inout SeededGenerator) -> V) -> ValueChange<V>? {
        Bool.random(using: &g) ? ValueChange(old: value(&g), new: value(&g)) : nil
    }

    static func randomDiff(using g: inout SeededGenerator) -> StateDiff {
        let from = SeqNo(UInt64.random(in: 0..<UInt64(Int64.max), using: &g))!
        let to = Bool.random(using: &g) ? from.next! : SeqNo(UInt64.random(in: from.rawValue + 1...UInt64(Int64.max), using: &g))!
        return StateDiff(
            applierVersion: randomText(maxLength: 10, using: &g), seqnoFrom: from, seqnoTo: to,
            walltimeMs: Fixtures.randomU64(using: &g), latestRollupKey: randomText(maxLength: 30, using: &g),
            hostname: randomValueChange(using: &g) { randomText(maxLength: 10, using: &$0) },
            lastGCReq: randomValueChange(using: &g) { randomSeqNo(using: &$0) },
            rollups: randomChanges(using: &g, key: { randomSeqNo(using: &$0) }, value: { randomRollup(using: &$0) }),
            leasedReaders: randomChanges(using: &g, key: { LeasedReaderID(using: &$0) }, value: { randomLeasedReader(using: &$0) }),
            criticalReaders: randomChanges(
                using: &g, key: { CriticalReaderID(using: &$0) }, value: { randomCriticalReader(using: &$0) }),
            writers: randomChanges(using: &g, key: { WriterID(using: &$0) }, value: { randomWriter(using: &$0) }),
            traceSince: randomValueChange(using: &g) { Fixtures.randomAntichain(using: &$0) },
            traceUpper: randomValueChange(using: &g) { Fixtures.randomAntichain(using: &$0) },
            insertedBatches: (0..<Int.random(in: 0...3, using: &g)).map { _ in Fixtures.randomHollowBatch(using: &g) },
            deletedBatches: (0..<Int.random(in: 0...3, using: &g)).map { _ in Fixtures.randomHollowBatch(using: &g) })
    }

    static func decodeState(_ bytes: [UInt8]) -> Result<ShardState, CodecError> {
        outcome { () throws(CodecError) in try ShardState.decode(bytes) }
    }

    static func decodeDiff(_ bytes: [UInt8]) -> Result<StateDiff, CodecError> {
        outcome { () throws(CodecError) in try StateDiff.decode(bytes) }
    }

    // MARK: Round trips

    @Test func randomStatesRoundTrip() throws {
        var g = SeededGenerator(seed: 1_200)
        var closed = 0, batches = 0, readers = 0
        for _ in 0..<500 {
            let state = Self.randomState(using: &g)
            let bytes = state.encode()
            let decoded = try Self.decodeState(bytes).get()
            #expect(decoded == state)
            // One encoding per value: encoding what was decoded gives the same bytes.
            #expect(decoded.encode() == bytes)
            if state.trace.upper.isEmpty { closed += 1 }
            batches += state.trace.batches.count
            readers += state.leasedReaders.count + state.criticalReaders.count
        }
        // The generator reached the shapes that matter.
        #expect(closed > 0 && batches > 500 && readers > 500)
    }

    @Test func randomDiffsRoundTrip() throws {
        var g = SeededGenerator(seed: 1_201)
        for _ in 0..<500 {
            let diff = Self.randomDiff(using: &g)
            let bytes = diff.encode()
            let decoded = try Self.decodeDiff(bytes).get()
            #expect(decoded == diff)
            #expect(decoded.encode() == bytes)
        }
    }

    @Test func equalStatesEncodeEquallyWhateverTheInsertionOrder() {
        var g = SeededGenerator(seed: 1_202)
        let ids = (0..<8).map { _ in WriterID(using: &g) }
        let values = ids.map { _ in Self.randomWriter(using: &g) }
        var forward = Self.sampleState
        var backward = Self.sampleState
        forward.writers = [:]
        backward.writers = [:]
        for i in ids.indices { forward.writers[ids[i]] = values[i] }
        for i in ids.indices.reversed() { backward.writers[ids[i]] = values[i] }
        #expect(forward.encode() == backward.encode())
    }

    /// A leased reader with a closed since and no purpose takes 42 bytes (id 16, seqno 8,
    /// since 1, heartbeat 8, lease 8, purpose 1). Enough of them must still decode.
    @Test func manyMinimalLeasedReadersRoundTrip() {
        var g = SeededGenerator(seed: 1_203)
        var state = Self.sampleState
        state.writers = [:]
        state.criticalReaders = [:]
        state.leasedReaders = [:]
        state.trace = TraceState(
            since: .empty, upper: .empty,
            batches: [HollowBatch(desc: BatchDescription(lower: .minimum, upper: .empty, since: .empty), rowCount: 0, parts: [])])
        for _ in 0..<40 {
            state.leasedReaders[LeasedReaderID(using: &g)] = LeasedReaderState(
                seqno: SeqNo(1), since: .empty, lastHeartbeatMs: 0, leaseDurationMs: 0, purpose: "")
        }
        let decoded = Self.decodeState(state.encode())
        #expect(decoded.failure == nil, "the smallest leased reader encodes to 42 bytes")
        if let value = decoded.value { #expect(value == state) }
        // Six such readers fitted even with the old, too large minimum (the bytes after
        // them made up the difference).
        let few = state.leasedReaders.keys.sorted().prefix(6)
        state.leasedReaders = state.leasedReaders.filter { few.contains($0.key) }
        #expect(Self.decodeState(state.encode()).value == state)
    }

    // MARK: Corruption

    @Test func everyTruncatedStateIsRefused() {
        let bytes = Self.sampleState.encode()
        #expect(bytes.count > 300)
        for n in 0..<bytes.count {
            let e = Self.decodeState(Array(bytes[0..<n])).failure
            switch n {
            case 0..<4: #expect(e == .badMagic(format: "shard state rollup", found: Array(bytes[0..<n])), "prefix \(n)")
            // The version byte, then the smallest body (header) plus the checksum.
            case 4..<9: #expect(e?.kind == .truncated, "prefix \(n)")
            default: #expect(e?.kind == .checksumMismatch, "prefix \(n)")
            }
        }
        // One byte more is not a rollup either.
        #expect(Self.decodeState(bytes + [0]).failure?.kind == .checksumMismatch)
    }

    @Test func everyByteChangeOfAStateIsRefused() {
        let bytes = Self.sampleState.encode()
        for offset in 0..<bytes.count {
            for mask in Self.masks {
                var bad = bytes
                bad[offset] ^= mask
                let e = Self.decodeState(bad).failure
                switch offset {
                case 0..<4: #expect(e?.kind == .badMagic, "offset \(offset)")
                case 4: #expect(e == .unsupportedVersion(format: "shard state rollup", version: Int(1 ^ mask)))
                default: #expect(e?.kind == .checksumMismatch, "offset \(offset) mask \(mask)")
                }
            }
        }
    }

    @Test func everyTruncatedDiffIsRefused() {
        let bytes = Self.sampleDiff.encode()
        #expect(bytes.count > 200)
        for n in 0..<bytes.count {
            let e = Self.decodeDiff(Array(bytes[0..<n])).failure
            switch n {
            case 0..<4: #expect(e == .badMagic(format: "shard state diff", found: Array(bytes[0..<n])), "prefix \(n)")
            case 4..<9: #expect(e?.kind == .truncated, "prefix \(n)")
            default: #expect(e?.kind == .checksumMismatch, "prefix \(n)")
            }
        }
    }

    @Test func everyByteChangeOfADiffIsRefused() {
        let bytes = Self.sampleDiff.encode()
        for offset in 0..<bytes.count {
            for mask in Self.masks {
                var bad = bytes
                bad[offset] ^= mask
                let e = Self.decodeDiff(bad).failure
                switch offset {
                case 0..<4: #expect(e?.kind == .badMagic, "offset \(offset)")
                case 4: #expect(e == .unsupportedVersion(format: "shard state diff", version: Int(1 ^ mask)))
                default: #expect(e?.kind == .checksumMismatch, "offset \(offset) mask \(mask)")
                }
            }
        }
    }

    /// With the checksum repaired, a changed byte reaches the structural checks: the
    /// decoder either refuses it or returns a value that encodes back to the same bytes.
    @Test func byteChangesWithRepairedChecksumsNeverDecodeToSomethingElse() {
        let stateBytes = Self.sampleState.encode()
        let diffBytes = Self.sampleDiff.encode()
        var refusedStructurally = 0
        for (bytes, isState) in [(stateBytes, true), (diffBytes, false)] {
            for offset in 5..<(bytes.count - 4) {
                for mask in Self.masks {
                    var bad = bytes
                    bad[offset] ^= mask
                    bad = refreshTrailingChecksum(bad)
                    if isState {
                        switch Self.decodeState(bad) {
                        case .success(let s): #expect(s.encode() == bad, "state offset \(offset) mask \(mask)")
                        case .failure(let e):
                            #expect(e.kind != .checksumMismatch)
                            refusedStructurally += 1
                        }
                    } else {
                        switch Self.decodeDiff(bad) {
                        case .success(let d): #expect(d.encode() == bad, "diff offset \(offset) mask \(mask)")
                        case .failure(let e):
                            #expect(e.kind != .checksumMismatch)
                            refusedStructurally += 1
                        }
                    }
                }
            }
        }
        #expect(refusedStructurally > 100)
    }

    // MARK: Random inputs

    @Test func randomBytesNeverTrap() {
        var g = SeededGenerator(seed: 1_204)
        let prefixes: [[UInt8]] = [[], ShardState.magic + [1], StateDiff.magic + [1]]
        var decoded = 0
        for i in 0..<20_000 {
            let prefix = prefixes[i % prefixes.count]
            var input = prefix + Fixtures.randomBytes(Int.random(in: 0...300, using: &g), using: &g)
            // Half of the inputs carry a matching checksum, so the body parsers see them.
            if i % 2 == 0 && input.count >= 4 { input = refreshTrailingChecksum(input) }
            if let s = Self.decodeState(input).value {
                #expect(s.encode() == input)
                decoded += 1
            }
            if let d = Self.decodeDiff(input).value {
                #expect(d.encode() == input)
                decoded += 1
            }
        }
        // Random bodies are never a whole valid state or diff.
        #expect(decoded == 0)
    }

    @Test func mutatedEncodingsNeverTrapAndRoundTripWhenAccepted() {
        var g = SeededGenerator(seed: 1_205)
        var samples: [[UInt8]] = [Self.sampleState.encode(), Self.sampleDiff.encode()]
        for _ in 0..<10 {
            samples.append(Self.randomState(using: &g).encode())
            samples.append(Self.randomDiff(using: &g).encode())
        }
        var accepted = 0
        for i in 0..<20_000 {
            var input = RandomInputTests.mutate(samples[i % samples.count], using: &g)
            if i % 4 != 0 && input.count >= 4 { input = refreshTrailingChecksum(input) }
            if let s = Self.decodeState(input).value {
                #expect(s.encode() == input)
                accepted += 1
            }
            if let d = Self.decodeDiff(input).value {
                #expect(d.encode() == input)
                accepted += 1
            }
        }
        // Some mutants stay valid (a changed count or timestamp); those were checked above.
        #expect(accepted > 0)
    }

    // MARK: Structural checks

    /// Encodes `trace` inside the sample state (the encoder does not validate) and decodes.
    static func decodeWithTrace(_ trace: TraceState) -> CodecError? {
        var s = sampleState
        s.trace = trace
        return decodeState(s.encode()).failure
    }

    static func batch(_ lower: Antichain, _ upper: Antichain, rows: UInt64 = 1) -> HollowBatch {
        HollowBatch(
            desc: BatchDescription(lower: lower, upper: upper), rowCount: rows,
            parts: rows == 0 ? [] : [HollowBatchPart(key: "p/x", encodedSizeBytes: 1, rowCount: rows)])
    }

    @Test func decodeAcceptsValidTraces() {
        #expect(Self.decodeWithTrace(TraceState()) == nil)
        #expect(Self.decodeWithTrace(TraceState(upper: Antichain(7), batches: [Self.batch(.minimum, Antichain(3)), Self.batch(Antichain(3), Antichain(7), rows: 0)])) == nil)
        #expect(Self.decodeWithTrace(TraceState(upper: .empty, batches: [Self.batch(.minimum, Antichain(3)), Self.batch(Antichain(3), .empty)])) == nil)
    }

    @Test func decodeRejectsAGapOrOverlapInTheTrace() {
        let gap = TraceState(upper: Antichain(9), batches: [Self.batch(.minimum, Antichain(3)), Self.batch(Antichain(4), Antichain(9))])
        let overlap = TraceState(upper: Antichain(9), batches: [Self.batch(.minimum, Antichain(5)), Self.batch(Antichain(4), Antichain(9))])
        let notFromZero = TraceState(upper: Antichain(9), batches: [Self.batch(Antichain(1), Antichain(9))])
        let outOfOrder = TraceState(upper: Antichain(9), batches: [Self.batch(Antichain(3), Antichain(9)), Self.batch(.minimum, Antichain(3))])
        for trace in [gap, overlap, notFromZero, outOfOrder] {
            let e = Self.decodeWithTrace(trace)
            #expect(e?.kind == .invalidValue && e?.subject == "trace", "\(trace.batches.map(\.desc))")
            #expect(throws: CodecError.self) { try trace.validate() }
        }
    }

    @Test func decodeRejectsAnEmptyIntervalBatch() {
        let empty = TraceState(upper: Antichain(5), batches: [Self.batch(.minimum, Antichain(3)), Self.batch(Antichain(3), Antichain(3), rows: 0), Self.batch(Antichain(3), Antichain(5))])
        let e = Self.decodeWithTrace(empty)
        #expect(e?.kind == .invalidValue && e?.subject == "trace")
        // Even a lone `[0, 0)` batch in a trace whose upper is `{0}`.
        let lone = TraceState(upper: .minimum, batches: [Self.batch(.minimum, .minimum, rows: 0)])
        #expect(Self.decodeWithTrace(lone)?.subject == "trace")
    }

    @Test func decodeRejectsATraceEndingElsewhereThanItsUpper() {
        let short = TraceState(upper: Antichain(9), batches: [Self.batch(.minimum, Antichain(5))])
        let long = TraceState(upper: Antichain(4), batches: [Self.batch(.minimum, Antichain(5))])
        let notClosed = TraceState(upper: .empty, batches: [Self.batch(.minimum, Antichain(5))])
        let noBatches = TraceState(upper: Antichain(5), batches: [])
        for trace in [short, long, notClosed, noBatches] {
            let e = Self.decodeWithTrace(trace)
            #expect(e?.kind == .invalidValue && e?.subject == "trace", "upper \(trace.upper)")
        }
    }

    /// Swaps two adjacent, equally long map entries of a valid encoding (or copies the
    /// first over the second) and repairs the checksum.
    static func reorder(_ bytes: [UInt8], firstKey: [UInt8], secondKey: [UInt8], duplicate: Bool) -> [UInt8] {
        guard let a = find(firstKey, in: bytes), let b = find(secondKey, in: bytes), a < b else {
            Issue.record("keys not found in the encoding")
            return bytes
        }
        let size = b - a
        var out = bytes
        let first = Array(bytes[a..<b])
        let second = Array(bytes[b..<b + size])
        out.replaceSubrange(a..<b, with: duplicate ? first : second)
        out.replaceSubrange(b..<b + size, with: first)
        return refreshTrailingChecksum(out)
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard needle.count <= haystack.count else { return nil }
        return (0...(haystack.count - needle.count)).first { Array(haystack[$0..<$0 + needle.count]) == needle }
    }

    static func u64Bytes(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    @Test func mapsOutOfAscendingKeyOrderAreRejected() throws {
        var g = SeededGenerator(seed: 1_206)
        var base = Self.sampleState
        base.rollups = [:]
        base.leasedReaders = [:]
        base.criticalReaders = [:]
        base.writers = [:]

        // Each case: a state with exactly two entries in one map, their two keys in
        // ascending order, and the field name the decoder reports.
        var cases: [(ShardState, [UInt8], [UInt8], String)] = []

        var rollups = base
        let s1 = SeqNo(0x1111_1111_1111_1111), s2 = SeqNo(0x2222_2222_2222_2222)
        rollups.rollups = [s1: HollowRollup(key: "r/1", encodedSizeBytes: 5), s2: HollowRollup(key: "r/2", encodedSizeBytes: 6)]
        cases.append((rollups, Self.u64Bytes(s1.rawValue), Self.u64Bytes(s2.rawValue), "rollups"))

        let readerIDs = [LeasedReaderID(using: &g), LeasedReaderID(using: &g)].sorted()
        var leased = base
        for id in readerIDs {
            leased.leasedReaders[id] = LeasedReaderState(seqno: SeqNo(2), since: Antichain(3), lastHeartbeatMs: 4, leaseDurationMs: 5, purpose: "x")
        }
        cases.append((leased, readerIDs[0].bytes, readerIDs[1].bytes, "leased readers"))

        let criticalIDs = [CriticalReaderID(using: &g), CriticalReaderID(using: &g)].sorted()
        var critical = base
        for id in criticalIDs {
            critical.criticalReaders[id] = CriticalReaderState(since: Antichain(3), opaque: 1, opaqueCodec: "u64", purpose: "y")
        }
        cases.append((critical, criticalIDs[0].bytes, criticalIDs[1].bytes, "critical readers"))

        let writerIDs = [WriterID(using: &g), WriterID(using: &g)].sorted()
        var writers = base
        let token = IdempotencyToken(using: &g)
        for id in writerIDs {
            writers.writers[id] = WriterState(
                lastHeartbeatMs: 1, leaseDurationMs: 2, mostRecentWriteToken: token, mostRecentWriteUpper: Antichain(3), purpose: "z")
        }
        cases.append((writers, writerIDs[0].bytes, writerIDs[1].bytes, "writers"))

        for (state, k1, k2, field) in cases {
            let bytes = state.encode()
            #expect(try Self.decodeState(bytes).get() == state, "\(field): the unmodified encoding decodes")
            for duplicate in [false, true] {
                let bad = Self.reorder(bytes, firstKey: k1, secondKey: k2, duplicate: duplicate)
                #expect(bad != bytes)
                let e = Self.decodeState(bad).failure
                #expect(e?.kind == .invalidValue && e?.subject == field, "\(field) duplicate: \(duplicate): \(String(describing: e))")
            }
        }
    }

    @Test func diffWithSeqnosNotAscendingIsRejected() {
        for (from, to) in [(8, 8), (9, 8)] {
            var d = Self.sampleDiff
            d.seqnoFrom = SeqNo(from)
            d.seqnoTo = SeqNo(to)
            #expect(Self.decodeDiff(d.encode()).failure?.subject == "diff seqnos")
        }
    }

    // MARK: Fuzz seeds

    /// The fuzzer starts from these files (tools/fuzz/seeds); a seed that no longer
    /// decodes would leave the fuzzer guessing at the format from scratch.
    @Test func fuzzSeedsDecodeAndReencode() throws {
        let seeds = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../tools/fuzz/seeds").standardized
        let state = try #require(FileManager.default.contents(atPath: seeds.appendingPathComponent("shard-state.bin").path))
        let decodedState = try ShardState.decode(Array(state))
        #expect(decodedState.encode() == Array(state))
        #expect(decodedState.trace.batches.count >= 3 && decodedState.leasedReaders.count >= 2)
        let diff = try #require(FileManager.default.contents(atPath: seeds.appendingPathComponent("state-diff.bin").path))
        let decodedDiff = try StateDiff.decode(Array(diff))
        #expect(decodedDiff.encode() == Array(diff))
        #expect(!decodedDiff.insertedBatches.isEmpty && !decodedDiff.deletedBatches.isEmpty)
    }

    // MARK: Golden bytes

    @Test func headersAreMagicAndVersionOne() {
        let state = Self.sampleState.encode()
        #expect(Array(state[0..<5]) == Array("TWSR".utf8) + [1])
        #expect(ShardState.magic == Array("TWSR".utf8) && ShardState.currentVersion == 1)
        let diff = Self.sampleDiff.encode()
        #expect(Array(diff[0..<5]) == Array("TWSD".utf8) + [1])
        #expect(StateDiff.magic == Array("TWSD".utf8) && StateDiff.currentVersion == 1)
        // The two formats are told apart by their magic, not confused.
        #expect(Self.decodeState(diff).failure?.kind == .badMagic)
        #expect(Self.decodeDiff(state).failure?.kind == .badMagic)
    }

    /// A minimal state, laid out field by field as the encoder documents it; the
    /// trailing CRC32C covers everything before it.
    @Test func minimalStateBytes() throws {
        let state = ShardState(
            shardID: Fixtures.shard, seqno: SeqNo(1), walltimeMs: 2, hostname: "h", applierVersion: "0.1.0",
            keyCodec: "k", valueCodec: "v", rollups: [SeqNo(1): HollowRollup(key: "r/1/x", encodedSizeBytes: 10)],
            trace: TraceState(
                since: .minimum, upper: Antichain(3),
                batches: [HollowBatch(desc: BatchDescription(lower: .minimum, upper: Antichain(3)), rowCount: 2, parts: [HollowBatchPart(key: "p", encodedSizeBytes: 7, rowCount: 2)])]))
        let body = hexBytes(
            "5457535201" + "0f1e2d3c4b5a49688776655443322110" + "0100000000000000" + "0200000000000000"
                + "0168" + "05302e312e30" + "016b" + "0176" + "0000000000000000"
                + "01" + "0100000000000000" + "05722f312f78" + "0a00000000000000"
                + "00" + "00" + "00"
                + "010000000000000000" + "010300000000000000"
                + "01" + "010000000000000000" + "010300000000000000" + "010000000000000000" + "0200000000000000"
                + "01" + "0170" + "0700000000000000" + "0200000000000000" + "00" + "00" + "00" + "00")
        let expected = body + Self.u64Bytes(UInt64(CRC32C.checksum(body))).prefix(4)
        #expect(hexString(state.encode()) == hexString(expected))
        #expect(try ShardState.decode(expected) == state)
    }

    @Test func minimalDiffBytes() throws {
        let diff = StateDiff(
            applierVersion: "0.1.0", seqnoFrom: SeqNo(1), seqnoTo: SeqNo(2), walltimeMs: 3, latestRollupKey: "r/1/x",
            lastGCReq: ValueChange(old: SeqNo(0), new: SeqNo(1)),
            rollups: [.delete(SeqNo(1), HollowRollup(key: "r", encodedSizeBytes: 4))])
        let body = hexBytes(
            "5457534401" + "05302e312e30" + "0100000000000000" + "0200000000000000" + "0300000000000000" + "05722f312f78"
                + "00" + "01" + "0000000000000000" + "0100000000000000"
                + "01" + "03" + "0100000000000000" + "0172" + "0400000000000000"
                + "00" + "00" + "00" + "00" + "00" + "00" + "00")
        let expected = body + Self.u64Bytes(UInt64(CRC32C.checksum(body))).prefix(4)
        #expect(hexString(diff.encode()) == hexString(expected))
        #expect(try StateDiff.decode(expected) == diff)
    }
}
