import PersistCodec
import PersistCore
import Testing

@testable import PersistLocation

/// Recovery of LogConsensus from torn writes, corruption and leftovers, driven by editing
/// the segment files of a closed log directly.
@Suite struct LogConsensusRecoveryTests {
    /// Writes `count` versions of key "k" (and one of "other") and closes the log.
    func makeLog(_ dir: String, count: Int) async throws -> [VersionedData] {
        let log = try LogConsensus.open(directory: dir)
        var written: [VersionedData] = []
        _ = try await log.compareAndSet("other", expected: nil, new: VersionedData(seqno: SeqNo(1), data: [7, 7]))
        var expected: SeqNo? = nil
        for i in 1...count {
            let v = VersionedData(seqno: SeqNo(i), data: Array("value-\(i)-".utf8) + Array(repeating: UInt8(i), count: i))
            #expect(try await log.compareAndSet("k", expected: expected, new: v) == .committed)
            expected = v.seqno
            written.append(v)
        }
        await log.close()
        return written
    }

    @Test func cutAtEveryOffsetOfTheLastRecord() async throws {
        let base = TemporaryDirectory("recovery-base")
        defer { base.remove() }
        let written = try await makeLog(base.path, count: 5)
        let segment = try #require(segmentFiles(base.path).last)
        let original = try #require(readFile(base.path + "/" + segment))
        let lastRecord = ConsensusLogRecord.version(key: Array("k".utf8), written[4]).encoded()
        let recordStart = original.count - lastRecord.count
        #expect(Array(original[recordStart...]) == lastRecord, "the last record is at the end of the segment")

        for cut in recordStart..<original.count {
            let dir = TemporaryDirectory("recovery-cut")
            defer { dir.remove() }
            copyDirectory(base.path, dir.path)
            writeFile(dir.path + "/" + segment, Array(original[..<cut]))

            let log = try LogConsensus.open(directory: dir.path)
            #expect(log.stats().recoveredTornBytes == cut - recordStart, "cut at \(cut)")
            #expect(try await log.scanAll("k") == Array(written[0..<4]), "versions after a cut at \(cut)")
            #expect(try await log.head("other")?.data == [7, 7])
            // The log continues cleanly after the cut, and the continuation survives.
            let v5 = VersionedData(seqno: SeqNo(5), data: [0xEE])
            #expect(try await log.compareAndSet("k", expected: SeqNo(4), new: v5) == .committed)
            await log.close()
            let again = try LogConsensus.open(directory: dir.path)
            #expect(again.stats().recoveredTornBytes == 0, "nothing torn the second time (cut \(cut))")
            #expect(try await again.scanAll("k") == Array(written[0..<4]) + [v5])
            await again.close()
        }
    }

    @Test func corruptionInTheLastRecordIsCutOff() async throws {
        let dir = TemporaryDirectory("recovery-flip")
        defer { dir.remove() }
        let written = try await makeLog(dir.path, count: 3)
        let segment = try #require(segmentFiles(dir.path).last)
        var bytes = try #require(readFile(dir.path + "/" + segment))
        bytes[bytes.count - 2] ^= 0x40
        writeFile(dir.path + "/" + segment, bytes)
        let log = try LogConsensus.open(directory: dir.path)
        #expect(try await log.scanAll("k") == Array(written[0..<2]))
        await log.close()
    }

    @Test func corruptionInASealedSegmentRefusesToOpen() async throws {
        let dir = TemporaryDirectory("recovery-sealed")
        defer { dir.remove() }
        var options = LogConsensusOptions()
        options.segmentSizeBytes = 4096
        let log = try LogConsensus.open(directory: dir.path, options: options)
        var expected: SeqNo? = nil
        for i in 1...40 {
            _ = try await log.compareAndSet("k", expected: expected, new: VersionedData(seqno: SeqNo(i), data: Array(repeating: 1, count: 300)))
            expected = SeqNo(i)
        }
        await log.close()
        let segments = segmentFiles(dir.path)
        #expect(segments.count > 2, "the log rolled into several segments")
        let first = dir.path + "/" + segments[0]
        var bytes = try #require(readFile(first))
        bytes[ConsensusLogSegmentHeader.size + 20] ^= 0x01
        writeFile(first, bytes)
        #expect {
            _ = try LogConsensus.open(directory: dir.path, options: options)
        } throws: { error in
            (error as? StorageError)?.code == .corruption
        }
    }

    @Test func incompleteNewestSegmentIsRemoved() async throws {
        let dir = TemporaryDirectory("recovery-header")
        defer { dir.remove() }
        let written = try await makeLog(dir.path, count: 2)
        // A crash while the next segment was being created leaves a partial header.
        let partial = ConsensusLogSegmentHeader(segmentID: 2).encode().prefix(7)
        writeFile(LogConsensus.segmentPath(dir.path, 2), Array(partial))
        let log = try LogConsensus.open(directory: dir.path)
        #expect(try await log.scanAll("k") == written)
        let v3 = VersionedData(seqno: SeqNo(3), data: [3])
        #expect(try await log.compareAndSet("k", expected: SeqNo(2), new: v3) == .committed)
        await log.close()
        let again = try LogConsensus.open(directory: dir.path)
        #expect(try await again.scanAll("k") == written + [v3])
        await again.close()
    }

    @Test func aDirectoryIsOpenInOneProcessAtATime() async throws {
        let dir = TemporaryDirectory("recovery-lock")
        defer { dir.remove() }
        let log = try LogConsensus.open(directory: dir.path)
        #expect {
            _ = try LogConsensus.open(directory: dir.path)
        } throws: { error in
            (error as? StorageError)?.code == .rejected
        }
        await log.close()
        let again = try LogConsensus.open(directory: dir.path)
        await again.close()
    }

    @Test func closedLogRefusesRequests() async throws {
        let dir = TemporaryDirectory("recovery-closed")
        defer { dir.remove() }
        let log = try LogConsensus.open(directory: dir.path)
        await log.close()
        await #expect {
            _ = try await log.compareAndSet("k", expected: nil, new: VersionedData(seqno: SeqNo(1), data: []))
        } throws: { error in
            let e = error as? StorageError
            return e?.code == .unavailable && e?.isDeterminate == true
        }
    }

    /// Random operations against LogConsensus with tiny segments (so rolling, truncation
    /// and compaction interleave) and against MemoryConsensus as the model; the two must
    /// agree after every step and after every reopen.
    @Test(arguments: [1, 2, 3, 4] as [UInt64])
    func randomOperationsMatchTheModel(seed: UInt64) async throws {
        let dir = TemporaryDirectory("recovery-model")
        defer { dir.remove() }
        var options = LogConsensusOptions()
        options.segmentSizeBytes = 4096
        options.compactionLiveRatio = 0.6
        var rng = SeededGenerator(seed: seed)
        let model = MemoryConsensus()
        var log = try LogConsensus.open(directory: dir.path, options: options)
        let keys = ["a", "b", "c", "d", "e"]
        var dropped = 0
        for step in 0..<1500 {
            let key = keys.randomElement(using: &rng) ?? "a"
            let head = try await model.head(key)?.seqno
            switch Int.random(in: 0..<100, using: &rng) {
            case 0..<70:
                let next = SeqNo((head?.rawValue ?? 0) + UInt64.random(in: 1...2, using: &rng))!
                let expected = Int.random(in: 0..<10, using: &rng) == 0 ? SeqNo(7) : head
                let v = VersionedData(seqno: next, data: (0..<Int.random(in: 0...200, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) })
                if let e = expected, v.seqno <= e { continue }
                let a = try await model.compareAndSet(key, expected: expected, new: v)
                let b = try await log.compareAndSet(key, expected: expected, new: v)
                #expect(a == b, "CaS result at step \(step)")
            case 70..<90:
                guard let head else { continue }
                let below = SeqNo(UInt64.random(in: 0...head.rawValue, using: &rng))!
                let a = try await model.truncate(key, seqno: below)
                let b = try await log.truncate(key, seqno: below)
                #expect(a == b, "truncate count at step \(step)")
            case 90..<97:
                #expect(try await model.scanAll(key) == log.scanAll(key), "scan at step \(step)")
            default:
                dropped += log.stats().segmentsDropped
                await log.close()
                log = try LogConsensus.open(directory: dir.path, options: options)
                for k in keys {
                    #expect(try await model.scanAll(k) == log.scanAll(k), "\(k) after reopen at step \(step)")
                }
            }
        }
        dropped += log.stats().segmentsDropped
        #expect(dropped > 0, "compaction reclaimed segments")
        for k in keys { #expect(try await model.scanAll(k) == log.scanAll(k)) }
        await log.close()
    }
}
