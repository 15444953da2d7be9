import PersistClient
import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation
import Synchronization
import Testing

/// A `Blob` that counts calls and, when `holding`, holds every `set` back until the test
/// releases it.
///
/// A held set registers itself and suspends; `releaseAll()` lets every set held at that
/// moment through, `openGate()` also every later one. A held set whose task is cancelled
/// fails with an indeterminate timeout without writing. A released set writes to `inner`.
final class GatedBlob: Blob {
    /// One `set` arriving at the gate: how many arrived so far, and how many are held
    /// now (this one included).
    struct Arrival: Sendable, Equatable {
        var arrived: Int
        var held: Int
    }

    let inner = MemoryBlob()
    private let holding: Bool

    private struct State {
        var held: [Int: CheckedContinuation<Void, any Error>] = [:]
        var nextID = 0
        var arrived = 0
        var maxHeld = 0
        var sets = 0
        var deletes = 0
        var open = false
    }

    private enum Admission {
        case pass
        case fail
        case hold(Arrival)
    }

    private let state = Mutex(State())
    /// Every arrival of a held set, in order.
    let arrivals: AsyncStream<Arrival>
    private let arrivalsSink: AsyncStream<Arrival>.Continuation

    init(holding: Bool = false) {
        self.holding = holding
        (arrivals, arrivalsSink) = AsyncStream.makeStream(bufferingPolicy: .unbounded)
    }

    /// The most sets that were ever held at once.
    var maxHeld: Int { state.withLock { $0.maxHeld } }
    /// How many sets and deletes were called (including failed ones).
    var setCalls: Int { state.withLock { $0.sets } }
    var deleteCalls: Int { state.withLock { $0.deletes } }

    /// Lets every set held now through.
    func releaseAll() {
        let waiting = state.withLock { s in
            defer { s.held = [:] }
            return Array(s.held.values)
        }
        for c in waiting { c.resume() }
    }

    /// Lets every held and every future set through.
    func openGate() {
        state.withLock { $0.open = true }
        releaseAll()
    }

    func get(_ key: String) async throws(StorageError) -> [UInt8]? { try await inner.get(key) }

    func set(_ key: String, _ value: [UInt8]) async throws(StorageError) {
        let id = state.withLock { s in
            s.sets += 1
            s.nextID += 1
            return s.nextID
        }
        if holding {
            do {
                try await withTaskCancellationHandler {
                    try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                        let admission = state.withLock { s -> Admission in
                            if Task.isCancelled { return .fail }
                            if s.open { return .pass }
                            s.arrived += 1
                            s.held[id] = c
                            s.maxHeld = max(s.maxHeld, s.held.count)
                            return .hold(Arrival(arrived: s.arrived, held: s.held.count))
                        }
                        switch admission {
                        case .pass: c.resume()
                        case .fail: c.resume(throwing: CancellationError())
                        case .hold(let arrival): arrivalsSink.yield(arrival)
                        }
                    }
                } onCancel: {
                    let c = state.withLock { $0.held.removeValue(forKey: id) }
                    c?.resume(throwing: CancellationError())
                }
            } catch {
                throw StorageError.indeterminate(.timeout, "gated set cancelled")
            }
        }
        try await inner.set(key, value)
    }

    func delete(_ key: String) async throws(StorageError) -> Int? {
        state.withLock { $0.deletes += 1 }
        return try await inner.delete(key)
    }

    func list(prefix: String) async throws(StorageError) -> [BlobMetadata] { try await inner.list(prefix: prefix) }
}

/// Rows whose estimated encoded size is exactly `rowBytes` (= 4 + 4 + 18), with distinct
/// keys, so a builder with target `k * rowBytes` cuts a part every `k` rows.
private let rowBytes = 26

private func distinctRows(_ n: Int, time: (Int) -> Timestamp = { _ in 1 }) -> [Update] {
    (0..<n).map { i in
        let k = UInt32(i).bigEndian
        let key = withUnsafeBytes(of: k) { Array($0) }
        return Update(key: key, value: [1, 2, 3, 4], time: time(i), diff: 1)
    }
}

/// A shard id drawn from `seed`.
private func testShard(_ seed: UInt64) -> ShardID {
    var g = SeededGenerator(seed: seed)
    return ShardID(using: &g)
}

private func config(targetBytes: Int, outstanding: Int = 2, compression: Compression = .default) -> PersistConfig {
    var c = PersistConfig()
    c.blobTargetSizeBytes = targetBytes
    c.batchBuilderMaxOutstandingParts = outstanding
    c.compression = compression
    c.initialBackoff = .microseconds(50)
    c.maxBackoff = .milliseconds(2)
    return c
}

/// Every row of `batch`, read back with no filter.
private func readAll(_ batch: HollowBatch, shard: ShardID, blob: any Blob, config: PersistConfig) async throws -> [Update] {
    var out: [Update] = []
    for part in batch.parts {
        out += try await BatchParts.fetch(blob: blob, shard: shard, part: part, batch: batch.desc, filter: .none, config: config)
    }
    return out
}

@Suite struct BatchBuilderTests {
    @Test func smallTargetMakesManyConsolidatedPartsUnderTheWriterPrefix() async throws {
        var g = SeededGenerator(seed: 10)
        let shard = ShardID(using: &g)
        let blob = MemoryBlob()
        let cfg = config(targetBytes: 200)
        let input = BatchTestData.randomUpdates(count: 600, times: 10...40, using: &g)
        let builder = BatchBuilder(shard: shard, lower: Antichain(10), blob: blob, writerKey: "wtest", config: cfg)
        // Mix single adds and bulk adds.
        for u in input.prefix(250) { try await builder.add(u) }
        try await builder.add(contentsOf: Array(input.dropFirst(250)))
        let batch = try await builder.finish(upper: Antichain(41))

        #expect(batch.desc == BatchDescription(lower: Antichain(10), upper: Antichain(41), since: .minimum))
        #expect(batch.parts.count > 5)
        #expect(batch.rowCount == batch.parts.reduce(0) { $0 + $1.rowCount })
        let stored = try await blob.list(prefix: "")
        #expect(stored.count == batch.parts.count)
        #expect(stored.allSatisfy { $0.key.hasPrefix("\(shard)/p/wtest/") })
        #expect(Set(stored.map(\.key)) == Set(batch.parts.map { "\(shard)/\($0.key)" }))

        var all: [Update] = []
        for part in batch.parts {
            let rows = try await BatchParts.fetch(
                blob: blob, shard: shard, part: part, batch: batch.desc, filter: .none, config: cfg)
            // Each part is sorted and consolidated on its own, and its stats match.
            var consolidated = rows
            Consolidation.consolidate(&consolidated)
            #expect(rows == consolidated)
            #expect(!rows.isEmpty)
            #expect(part.keyLower == rows.first?.key && part.keyUpper == rows.last?.key)
            #expect(part.diffsSum == rows.reduce(0) { $0 &+ $1.diff })
            #expect(stored.first { $0.key == "\(shard)/\(part.key)" }?.sizeBytes == Int(part.encodedSizeBytes))
            #expect(part.tsRewrite == nil)
            all += rows
        }
        #expect(UInt64(all.count) == batch.rowCount)
        Consolidation.consolidate(&all)
        #expect(all == BatchTestData.naiveConsolidate(input))
    }

    @Test func partsAreCutAtTheTargetSize() async throws {
        var g = SeededGenerator(seed: 11)
        let shard = ShardID(using: &g)
        let blob = MemoryBlob()
        // 10 rows per part; 73 rows make 7 full parts and a remainder of 3.
        let batch = try await BatchBuilder.build(
            updates: distinctRows(73), shard: shard, lower: .minimum, upper: Antichain(2), blob: blob,
            writerKey: "w", config: config(targetBytes: 10 * rowBytes, compression: .none))
        #expect(batch.parts.map(\.rowCount) == [10, 10, 10, 10, 10, 10, 10, 3])
        #expect(batch.rowCount == 73)
        // Parts are in the order the rows were added.
        #expect(batch.parts.first?.keyLower == distinctRows(1)[0].key)
        for (a, b) in zip(batch.parts, batch.parts.dropFirst()) {
            #expect(a.keyUpper.lexicographicallyPrecedes(b.keyLower))
        }
    }

    @Test func updateBeforeLowerIsRejectedAndNotAdded() async throws {
        let blob = GatedBlob()
        let builder = BatchBuilder(shard: testShard(108), lower: Antichain(5), blob: blob, writerKey: "w", config: config(targetBytes: 1 << 20))
        await #expect(throws: InvalidUsage.updateNotBeyondLower(time: 4, lower: Antichain(5))) {
            try await builder.add(Update(key: [1], value: [], time: 4, diff: 1))
        }
        // A bulk add with one bad row adds none of them.
        await #expect(throws: InvalidUsage.updateNotBeyondLower(time: 0, lower: Antichain(5))) {
            try await builder.add(contentsOf: [Update(key: [1], value: [], time: 5, diff: 1), Update(key: [2], value: [], time: 0, diff: 1)])
        }
        let batch = try await builder.finish(upper: Antichain(6))
        #expect(batch.parts.isEmpty && batch.rowCount == 0)
        #expect(blob.setCalls == 0)

        let closed = BatchBuilder(shard: testShard(109), lower: .empty, blob: blob, writerKey: "w", config: config(targetBytes: 1 << 20))
        await #expect(throws: InvalidUsage.updateNotBeyondLower(time: .max, lower: .empty)) {
            try await closed.add(Update(key: [1], value: [], time: .max, diff: 1))
        }
    }

    @Test func finishChecksTheUpper() async throws {
        let blob = GatedBlob()
        let shard = testShard(101)
        let builder = BatchBuilder(shard: shard, lower: Antichain(5), blob: blob, writerKey: "w", config: config(targetBytes: 1 << 20))
        try await builder.add(contentsOf: [
            Update(key: [1], value: [], time: 9, diff: 1), Update(key: [2], value: [], time: 5, diff: 1),
        ])
        await #expect(throws: InvalidUsage.invalidBounds(lower: Antichain(5), upper: Antichain(4))) {
            try await builder.finish(upper: Antichain(4))
        }
        await #expect(throws: InvalidUsage.updateBeyondUpper(time: 9, upper: Antichain(9))) {
            try await builder.finish(upper: Antichain(9))
        }
        await #expect(throws: InvalidUsage.updateBeyondUpper(time: 9, upper: Antichain(5))) {
            try await builder.finish(upper: Antichain(5))
        }
        #expect(blob.setCalls == 0)
        // The failed finishes changed nothing: a valid upper still works.
        let batch = try await builder.finish(upper: Antichain(10))
        #expect(batch.rowCount == 2)
        #expect(try await readAll(batch, shard: shard, blob: blob, config: PersistConfig()).map(\.time).sorted() == [5, 9])
        // The builder is consumed.
        await #expect(throws: InvalidUsage.batchConsumed) { try await builder.add(Update(key: [1], value: [], time: 6, diff: 1)) }
        await #expect(throws: InvalidUsage.batchConsumed) { try await builder.finish(upper: Antichain(10)) }
        // Aborting a finished builder leaves the batch alone.
        await builder.abort()
        #expect(try await blob.list(prefix: "").count == 1)

        // A closed upper admits every time.
        let closed = try await BatchBuilder.build(
            updates: [Update(key: [1], value: [], time: .max, diff: 1)], shard: shard, lower: .minimum, upper: .empty,
            blob: blob, writerKey: "w", config: PersistConfig())
        #expect(closed.rowCount == 1 && closed.desc.upper == .empty)
    }

    @Test func emptyBatchesWriteNothing() async throws {
        let blob = GatedBlob()
        let shard = testShard(102)
        let empty = try await BatchBuilder(shard: shard, lower: Antichain(3), blob: blob, writerKey: "w", config: PersistConfig())
            .finish(upper: Antichain(3))
        #expect(empty == HollowBatch(desc: BatchDescription(lower: Antichain(3), upper: Antichain(3)), rowCount: 0, parts: []))
        // Rows that cancel out, in one part, upload nothing either.
        let cancelled = try await BatchBuilder.build(
            updates: [Update(key: [1], value: [], time: 4, diff: 1), Update(key: [1], value: [], time: 4, diff: -1)],
            shard: shard, lower: Antichain(3), upper: Antichain(5), blob: blob, writerKey: "w", config: PersistConfig())
        #expect(cancelled.parts.isEmpty && cancelled.rowCount == 0)
        #expect(blob.setCalls == 0)
        #expect(try await blob.list(prefix: "").isEmpty)
    }

    @Test func buildRejectsBadBoundsWithoutWriting() async throws {
        let blob = GatedBlob()
        let rows = distinctRows(50, time: { UInt64($0) })
        await #expect(throws: InvalidUsage.updateBeyondUpper(time: 49, upper: Antichain(49))) {
            try await BatchBuilder.build(
                updates: rows, shard: testShard(110), lower: .minimum, upper: Antichain(49), blob: blob, writerKey: "w",
                config: config(targetBytes: rowBytes))
        }
        await #expect(throws: InvalidUsage.updateNotBeyondLower(time: 0, lower: Antichain(1))) {
            try await BatchBuilder.build(
                updates: rows, shard: testShard(111), lower: Antichain(1), upper: Antichain(50), blob: blob, writerKey: "w",
                config: config(targetBytes: rowBytes))
        }
        #expect(try await blob.list(prefix: "").isEmpty)
    }

    @Test func abortDeletesEveryUploadedPart() async throws {
        let blob = GatedBlob()
        let shard = testShard(103)
        let other = testShard(104)
        // Someone else's part, which must survive.
        try await blob.set("\(other)/p/w/keep", [1])
        let builder = BatchBuilder(shard: shard, lower: .minimum, blob: blob, writerKey: "w", config: config(targetBytes: 5 * rowBytes))
        try await builder.add(contentsOf: distinctRows(58))
        await builder.abort()
        // 11 full parts were handed to uploads (the last 3 rows were only buffered).
        #expect(blob.setCalls == 1 + 11)
        #expect(blob.deleteCalls == 11)
        #expect(try await blob.list(prefix: "\(shard)/").isEmpty)
        #expect(try await blob.list(prefix: "").map(\.key) == ["\(other)/p/w/keep"])
        await #expect(throws: InvalidUsage.batchConsumed) { try await builder.add(distinctRows(1)[0]) }
        await #expect(throws: InvalidUsage.batchConsumed) { try await builder.finish(upper: .empty) }
    }

    @Test func deletePartsRemovesABatch() async throws {
        let blob = MemoryBlob()
        let shard = testShard(105)
        let cfg = config(targetBytes: 4 * rowBytes)
        let keep = try await BatchBuilder.build(
            updates: distinctRows(9), shard: shard, lower: .minimum, upper: .empty, blob: blob, writerKey: "w", config: cfg)
        let drop = try await BatchBuilder.build(
            updates: distinctRows(9), shard: shard, lower: .minimum, upper: .empty, blob: blob, writerKey: "w", config: cfg)
        #expect(try await blob.list(prefix: "").count == 6)
        #expect(await BatchBuilder.deleteParts(of: drop, shard: shard, blob: blob, config: cfg))
        #expect(Set(try await blob.list(prefix: "").map(\.key)) == Set(keep.parts.map { "\(shard)/\($0.key)" }))
        // Deleting again is harmless.
        #expect(await BatchBuilder.deleteParts(of: drop, shard: shard, blob: blob, config: cfg))
        #expect(try await readAll(keep, shard: shard, blob: blob, config: cfg) == distinctRows(9))
    }

    @Test(arguments: [1, 2, 3])
    func uploadsInFlightNeverExceedTheBound(outstanding: Int) async throws {
        // 10 rows per part, 68 rows: 7 parts. Every upload is held at the blob until the
        // test sees `outstanding` of them held (or all 7 arrived) and lets the held ones
        // go. A builder that waited for fewer uploads than allowed would deadlock here;
        // one that started more would be seen holding more than `outstanding` at once
        // (the test yields before each release to let such extra uploads arrive).
        let parts = 7
        let blob = GatedBlob(holding: true)
        let shard = testShard(106)
        let cfg = config(targetBytes: 10 * rowBytes, outstanding: outstanding, compression: .lz4)
        let input = distinctRows(68)
        let builder = BatchBuilder(shard: shard, lower: .minimum, blob: blob, writerKey: "w", config: cfg)
        let building = Task {
            for chunk in stride(from: 0, to: input.count, by: 17) {
                try await builder.add(contentsOf: Array(input[chunk..<min(chunk + 17, input.count)]))
            }
            return try await builder.finish(upper: Antichain(2))
        }
        var arrivals = blob.arrivals.makeAsyncIterator()
        var arrived = 0
        while arrived < parts, let arrival = await arrivals.next() {
            arrived = arrival.arrived
            if arrival.held >= outstanding || arrived == parts {
                for _ in 0..<50 { await Task.yield() }
                blob.releaseAll()
            }
        }
        blob.openGate()
        let batch = try await building.value
        #expect(blob.maxHeld == outstanding)
        #expect(blob.setCalls == parts)
        #expect(batch.parts.map(\.rowCount) == [10, 10, 10, 10, 10, 10, 8])
        #expect(try await readAll(batch, shard: shard, blob: blob, config: cfg) == input)
    }

    @Test func cancellationWhileWaitingForAnUploadFailsTheBuilder() async throws {
        // Uploads are held until cancelled; with one upload allowed, filling the second
        // part makes `add` wait for the first.
        let blob = GatedBlob(holding: true)
        let shard = testShard(107)
        let cfg = config(targetBytes: 10 * rowBytes, outstanding: 1)
        let builder = BatchBuilder(shard: shard, lower: .minimum, blob: blob, writerKey: "w", config: cfg)
        let adding = Task { try await builder.add(contentsOf: distinctRows(25)) }
        var arrivals = blob.arrivals.makeAsyncIterator()
        #expect(await arrivals.next() == GatedBlob.Arrival(arrived: 1, held: 1))
        adding.cancel()
        await #expect(throws: CancellationError.self) { try await adding.value }
        // Failed for good: only abort is left.
        await #expect(throws: CancellationError.self) { try await builder.finish(upper: .empty) }
        await #expect(throws: CancellationError.self) { try await builder.add(distinctRows(1)[0]) }
        await builder.abort()
        #expect(blob.setCalls == 1)
        #expect(blob.deleteCalls == 1)
        #expect(try await blob.list(prefix: "").isEmpty)
    }

    @Test(arguments: [UInt64(21), 22, 23])
    func unreliableBlobStillYieldsAReadableBatch(seed: UInt64) async throws {
        var g = SeededGenerator(seed: seed)
        let shard = ShardID(using: &g)
        let memory = MemoryBlob()
        let faults = FaultInjector(seed: seed, rates: FaultInjector.Rates(happenRate: 0.95, timeoutRate: 0.05))
        let blob = UnreliableBlob(memory, faults: faults)
        let cfg = config(targetBytes: 300, outstanding: 3)
        let input = BatchTestData.randomUpdates(count: 800, times: 100...200, using: &g)
        let batch = try await BatchBuilder.build(
            updates: input, shard: shard, lower: Antichain(100), upper: Antichain(201), blob: blob, writerKey: "w",
            config: cfg)
        #expect(batch.parts.count > 10)
        #expect(faults.injectedCount > 0)
        // Every part is in blob and reads back (through the faults) to the input.
        let stored = try await memory.list(prefix: "\(shard)/p/w/")
        #expect(stored.count == batch.parts.count)
        var all = try await readAll(batch, shard: shard, blob: blob, config: cfg)
        Consolidation.consolidate(&all)
        #expect(all == BatchTestData.naiveConsolidate(input))

        // Deleting through the faults also completes.
        #expect(await BatchBuilder.deleteParts(of: batch, shard: shard, blob: blob, config: cfg))
        #expect(try await memory.list(prefix: "").isEmpty)
    }
}
