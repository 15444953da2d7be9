import PersistCodec
import PersistCore
import Testing

/// Seeded random and mutated inputs against every decoder. A decoder may only throw a
/// `CodecError` or return a value; whatever it returns must re-encode to exactly the input
/// (every format here has one encoding per value).
@Suite struct RandomInputTests {
    struct Tally {
        var handles = 0, entries = 0, frames = 0, rows = 0
    }

    /// Feeds `input` to every decoder, checking round trips; counts successes.
    static func feed(_ input: [UInt8], key: [UInt8], rowCount: UInt64, into tally: inout Tally) {
        if let handle = outcome({ () throws(CodecError) in try TransmittableBatch.decode(input) }).value {
            #expect(handle.encode() == input)
            tally.handles += 1
        }
        if let entry = outcome({ () throws(CodecError) in try TxnsEntry.decode(key: key, value: input) }).value {
            #expect(entry.encodedValue == input)
            #expect(entry.encodedKey == key)
            tally.entries += 1
        }
        if let frame = outcome({ () throws(CodecError) in try BatchPartFrame.decode(input) }).value {
            #expect(reencode(frame) == input)
            tally.frames += 1
        }
        for count in [0, 1, 2, rowCount] {
            if let rows = outcome({ () throws(CodecError) in try PartRows.decode(input, rowCount: count) }).value {
                #expect(UInt64(rows.count) == count)
                #expect(PartRows.encode(rows) == input)
                tally.rows += 1
            }
        }
    }

    /// One to four random edits: overwrite, insert, delete, or cut.
    static func mutate(_ bytes: [UInt8], using g: inout SeededGenerator) -> [UInt8] {
        var out = bytes
        for _ in 0..<Int.random(in: 1...4, using: &g) {
            switch Int.random(in: 0..<5, using: &g) {
            case 0...1 where !out.isEmpty:
                out[Int.random(in: 0..<out.count, using: &g)] = UInt8.random(in: 0...255, using: &g)
            case 2:
                out.insert(UInt8.random(in: 0...255, using: &g), at: Int.random(in: 0...out.count, using: &g))
            case 3 where !out.isEmpty:
                out.remove(at: Int.random(in: 0..<out.count, using: &g))
            case 4 where !out.isEmpty:
                out.removeLast(Int.random(in: 0...min(out.count, 8), using: &g))
            default:
                break
            }
        }
        return out
    }

    static func keyFor(value: [UInt8]) -> [UInt8] {
        guard value.count >= 18, let id = try? ShardID(bytes: Array(value[2..<18])) else {
            return Array(Fixtures.shardText.utf8)
        }
        return Array(id.description.utf8)
    }

    @Test func randomBytesNeverCrashAnyDecoder() {
        var g = SeededGenerator(seed: 500)
        var tally = Tally()
        let prefixes: [[UInt8]] = [
            [], TransmittableBatch.magic + [1], BatchPartHeader.magic + [1], [1, 1], [1, 2],
        ]
        for i in 0..<100_000 {
            let prefix = prefixes[i % prefixes.count]
            let body = Fixtures.randomBytes(Int.random(in: 0...200, using: &g), using: &g)
            var input = prefix + body
            // A third of the inputs get checksums that match, to reach the checks after them.
            if i % 3 == 0 && input.count >= 4 {
                input = prefix == BatchPartHeader.magic + [1] && input.count >= BatchPartHeader.size
                    ? refreshFrameChecksums(input) : refreshTrailingChecksum(input)
            }
            let key = i % 2 == 0 ? Self.keyFor(value: input) : Array(body.prefix(37))
            Self.feed(input, key: key, rowCount: UInt64(body.first ?? 0) % 8, into: &tally)
        }
        // Purely random bytes essentially never form a valid record; the point is that none
        // of them trapped. (Empty row lists are the exception: zero rows of nothing.)
        #expect(tally.handles == 0)
        #expect(tally.frames == 0)
    }

    @Test func mutatedValidEncodingsNeverCrashAnyDecoder() {
        var g = SeededGenerator(seed: 501)
        var tally = Tally()
        var samples: [[UInt8]] = [
            Fixtures.handle.encode(), Fixtures.register.encodedValue, Fixtures.append.encodedValue,
            Fixtures.frame, PartRows.encode(Fixtures.rows),
        ]
        for _ in 0..<20 {
            samples.append(Fixtures.randomHandle(using: &g).encode())
            samples.append(Fixtures.randomEntry(using: &g).encodedValue)
            let payload = PartRows.encode(Fixtures.randomRows(using: &g))
            samples.append(payload)
            samples.append(BatchPartFrame.encode(
                codec: .none, rowCount: 3, uncompressedLength: payload.count, storedPayload: payload))
        }
        for i in 0..<30_000 {
            let sample = samples[i % samples.count]
            var input = Self.mutate(sample, using: &g)
            // Most mutants get their checksums repaired so the structural checks are hit.
            if i % 4 != 0 && input.count >= 4 {
                if input.starts(with: BatchPartHeader.magic) && input.count >= BatchPartHeader.size {
                    input = refreshFrameChecksums(input)
                } else {
                    input = refreshTrailingChecksum(input)
                }
            }
            Self.feed(input, key: Self.keyFor(value: input), rowCount: UInt64(i % 13), into: &tally)
        }
        // Some mutants are valid (a changed size or timestamp, say); they were round-tripped.
        #expect(tally.handles > 0)
        #expect(tally.entries > 0)
        #expect(tally.frames > 0)
        #expect(tally.rows > 0)
    }
}
