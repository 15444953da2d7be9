import PersistCodec
import PersistCompression
import PersistCore
import PersistLocation
import Testing

@testable import PersistClient

/// The tiered part codecs: the write path and small merges use `compression`, merges of
/// at least `compactionDenseMinBytes` of input use `compactionCompression`, and a shard
/// holding both reads back exactly what was written.
@Suite struct CompactionCompressionTests {
    static let shardCodecs = ("bytes", "bytes")

    /// `count` rows at time `t` over 200 keys, with values of 20 to 60 compressible bytes
    /// and diffs in -1...2 (so consolidation has something to do).
    static func rows(_ rng: inout SeededGenerator, at t: Timestamp, count: Int) -> [Update] {
        (0..<count).map { _ in
            let k = Int.random(in: 0..<200, using: &rng)
            let v = Int.random(in: 0..<5, using: &rng)
            let length = Int.random(in: 20...60, using: &rng)
            let value = Array(String(repeating: "value-\(v)-", count: 8).utf8.prefix(length))
            return Update(
                key: Array("key-\(k)".utf8), value: value, time: t, diff: Int64.random(in: -1...2, using: &rng))
        }
    }

    /// The codec id in the stored frame of `part`, read from `store` (not from any cache).
    static func codec(of part: HollowBatchPart, shard: ShardID, store: MemoryBlob) async throws -> PartCodecID {
        let bytes = try #require(try await store.get("\(shard)/\(part.key)"), "part \(part.key) is not stored")
        return try BatchPartFrame.decode(bytes).header.codec
    }

    static func codecs(of batches: [HollowBatch], shard: ShardID, store: MemoryBlob) async throws -> [PartCodecID] {
        var out: [PartCodecID] = []
        for b in batches {
            for p in b.parts { out.append(try await codec(of: p, shard: shard, store: store)) }
        }
        return out
    }

    /// A config whose writers use lz4 and whose dense codec is zstd, with compaction left
    /// to the test (it calls the compactor itself).
    static func config(denseMinBytes: Int) -> PersistConfig {
        var c = testConfig()
        c.compression = .lz4
        c.compactionCompression = .zstd(level: 1)
        c.compactionDenseMinBytes = denseMinBytes
        c.compactionEnabled = false
        return c
    }

    /// Appends `batches` batches of 40 rows, one time each; returns what was acknowledged.
    static func fill(
        _ client: PersistClient, shard: ShardID, batches: Int, seed: UInt64
    ) async throws -> [Update] {
        var rng = SeededGenerator(seed: seed)
        let writer = try await client.openWriter(shard: shard, purpose: "w")
        var acked: [Update] = []
        for t in 0..<Timestamp(batches) {
            let batch = rows(&rng, at: t, count: 40)
            _ = try await writer.compareAndAppend(batch, expectedUpper: Antichain(t), newUpper: Antichain(t + 1)).get()
            acked += batch
        }
        return acked
    }

    /// Every time from 0 to `upper - 1`, read through a fresh client without the
    /// own-parts cache (so every part is decoded from the stored bytes), matches the fold
    /// of `acked`.
    static func expectReadBack(
        _ acked: [Update], upper: Timestamp, store: MemoryBlob, consensus: MemoryConsensus, shard: ShardID
    ) async throws {
        var c = testConfig()
        c.partCacheBytes = 0
        c.compactionEnabled = false
        let reader = try await PersistClient(blob: store, consensus: consensus, config: c)
            .openLeasedReader(shard: shard, purpose: "check")
        for asOf in 0..<upper {
            let got = try await reader.snapshotAndFetch(asOf: asOf)
            #expect(got == ShardBehaviourTests.fold(acked, asOf: asOf), "as of \(asOf)")
        }
    }

    @Test func defaultsAreLz4ForWritesAndZstdForLargeMerges() {
        let c = PersistConfig()
        #expect(c.compression == .lz4)
        #expect(c.compactionCompression == .zstd(level: 1))
        #expect(c.compactionDenseMinBytes == 8 << 20)
    }

    @Test func theCodecFollowsTheStoredInputBytesAtTheThreshold() {
        func part(_ bytes: UInt64) -> HollowBatchPart {
            HollowBatchPart(key: "p/w/\(bytes)", encodedSizeBytes: bytes, rowCount: 1)
        }
        func request(_ sizes: [[UInt64]]) -> MergeRequest {
            let inputs = sizes.enumerated().map { i, parts in
                HollowBatch(
                    desc: BatchDescription(lower: Antichain(Timestamp(i)), upper: Antichain(Timestamp(i + 1))),
                    rowCount: UInt64(parts.count), parts: parts.map(part))
            }
            return MergeRequest(
                desc: BatchDescription(lower: .minimum, upper: Antichain(Timestamp(sizes.count))), inputs: inputs)
        }
        func chosen(_ req: MergeRequest, threshold: Int) -> Compression {
            var c = PersistConfig()
            c.compression = .lz4
            c.compactionCompression = .zstd(level: 3)
            c.compactionDenseMinBytes = threshold
            return Compactor.outputCompression(req, config: c)
        }
        // 1000 bytes over three parts in two batches.
        let req = request([[300, 200], [500]])
        #expect(chosen(req, threshold: 1000) == .zstd(level: 3), "exactly the threshold is dense")
        #expect(chosen(req, threshold: 1001) == .lz4, "one byte short stays fast")
        #expect(chosen(req, threshold: 0) == .zstd(level: 3))
        #expect(chosen(req, threshold: -1) == .zstd(level: 3), "a negative threshold counts as 0")
        #expect(chosen(request([]), threshold: 1) == .lz4)
        #expect(chosen(request([[], []]), threshold: 1) == .lz4, "empty batches add nothing")
        // Sizes that would wrap a UInt64 sum must not look small.
        #expect(chosen(request([[.max], [2]]), threshold: .max) == .zstd(level: 3))
        // The real default threshold: 8 MiB.
        var d = PersistConfig()
        d.compactionCompression = .zstd(level: 3)
        #expect(Compactor.outputCompression(request([[8 << 20]]), config: d) == .zstd(level: 3))
        #expect(Compactor.outputCompression(request([[4 << 20, (4 << 20) - 1]]), config: d) == d.compression)
    }

    @Test func lz4PartsCompactedIntoZstdReadBackIdentically() async throws {
        let store = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        let config = Self.config(denseMinBytes: 1)
        let client = PersistClient(blob: store, consensus: consensus, config: config)
        let acked = try await Self.fill(client, shard: shard, batches: 12, seed: 31)

        let machine = try await client.machine(for: shard, keyCodec: Self.shardCodecs.0, valueCodec: Self.shardCodecs.1)
        let before = try await machine.refresh()
        #expect(before.trace.batches.count == 12)
        let written = try await Self.codecs(of: before.trace.batches, shard: shard, store: store)
        #expect(written.count > 12, "the 1 KiB part target cuts each batch into several parts")
        #expect(written.allSatisfy { $0 == .lz4 }, "writers use `compression`: \(written)")

        // Merge the eight oldest batches; the four newest stay as written.
        let req = before.trace.request(for: Array(before.trace.batches.prefix(8)))
        #expect(Compactor.outputCompression(req, config: config) == .zstd(level: 1))
        try await Compactor(machine: machine, blob: client.blob, config: config, runner: client.maintenance).compact(req)

        let after = try await machine.refresh()
        #expect(after.trace.batches.count == 5)
        let merged = after.trace.batches.filter { $0.desc == req.desc }
        #expect(merged.count == 1, "the merge result is linked")
        let outputParts = merged.flatMap(\.parts)
        #expect(!outputParts.isEmpty)
        #expect(outputParts.allSatisfy { $0.key.hasPrefix("p/\(Compactor.writerKey)/") })
        let mergedCodecs = try await Self.codecs(of: merged, shard: shard, store: store)
        #expect(!mergedCodecs.isEmpty && mergedCodecs.allSatisfy { $0 == .zstd }, "dense output: \(mergedCodecs)")
        let rest = try await Self.codecs(of: after.trace.batches.filter { $0.desc != req.desc }, shard: shard, store: store)
        #expect(!rest.isEmpty && rest.allSatisfy { $0 == .lz4 }, "untouched batches keep lz4: \(rest)")

        // The shard now mixes both codecs; every time reads back the same as before.
        try await Self.expectReadBack(acked, upper: 12, store: store, consensus: consensus, shard: shard)
        await client.waitForMaintenance()
    }

    @Test func aSmallMergeStaysOnTheFastCodec() async throws {
        let store = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        // The default threshold (8 MiB) is far above these few KiB of input.
        var config = Self.config(denseMinBytes: PersistConfig().compactionDenseMinBytes)
        config.compactionCompression = .zstd(level: 3)
        let client = PersistClient(blob: store, consensus: consensus, config: config)
        let acked = try await Self.fill(client, shard: shard, batches: 8, seed: 32)

        let machine = try await client.machine(for: shard, keyCodec: Self.shardCodecs.0, valueCodec: Self.shardCodecs.1)
        let before = try await machine.refresh()
        let inputBytes = before.trace.batches.flatMap(\.parts).reduce(UInt64(0)) { $0 + $1.encodedSizeBytes }
        #expect(inputBytes > 0 && inputBytes < UInt64(config.compactionDenseMinBytes))
        let req = before.trace.request(for: before.trace.batches)
        #expect(Compactor.outputCompression(req, config: config) == .lz4)
        try await Compactor(machine: machine, blob: client.blob, config: config, runner: client.maintenance).compact(req)

        let after = try await machine.refresh()
        #expect(after.trace.batches.count == 1)
        #expect(after.trace.batches.flatMap(\.parts).allSatisfy { $0.key.hasPrefix("p/\(Compactor.writerKey)/") })
        let output = try await Self.codecs(of: after.trace.batches, shard: shard, store: store)
        #expect(!output.isEmpty && output.allSatisfy { $0 == .lz4 }, "small output: \(output)")
        try await Self.expectReadBack(acked, upper: 8, store: store, consensus: consensus, shard: shard)
        await client.waitForMaintenance()
    }

    @Test func backgroundCompactionWritesDenseOutputsBesideFastWrites() async throws {
        let store = MemoryBlob()
        let consensus = MemoryConsensus()
        let shard = ShardID.random()
        var config = Self.config(denseMinBytes: 1)
        config.compactionEnabled = true
        config.compactionMinInputs = 3
        let client = PersistClient(blob: store, consensus: consensus, config: config)
        let acked = try await Self.fill(client, shard: shard, batches: 30, seed: 33)
        await client.waitForMaintenance()

        let machine = try await client.machine(for: shard, keyCodec: Self.shardCodecs.0, valueCodec: Self.shardCodecs.1)
        let state = try await machine.refresh()
        // At idle no run of three similar batches is left, so 30 batches must have merged.
        #expect(state.trace.batches.count < 30)
        var compacted: [PartCodecID] = []
        var appended: [PartCodecID] = []
        for part in state.trace.batches.flatMap(\.parts) {
            let codec = try await Self.codec(of: part, shard: shard, store: store)
            if part.key.hasPrefix("p/\(Compactor.writerKey)/") { compacted.append(codec) } else { appended.append(codec) }
        }
        #expect(!compacted.isEmpty && compacted.allSatisfy { $0 == .zstd }, "compaction outputs: \(compacted)")
        #expect(appended.allSatisfy { $0 == .lz4 }, "appended parts: \(appended)")
        try await Self.expectReadBack(acked, upper: 30, store: store, consensus: consensus, shard: shard)
    }
}
