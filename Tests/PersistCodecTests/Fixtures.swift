import PersistCodec
import PersistCore
import Testing

/// Fixed sample values shared by the golden, corruption and error tests, and seeded
/// generators of random valid values for the round-trip tests.
enum Fixtures {
    static let shardText = "s0f1e2d3c-4b5a-4968-8776-655443322110"
    static let shard = try! ShardID(parsing: shardText)
    static let otherShard = try! ShardID(parsing: "s00000000-0000-4000-8000-000000000001")
    static let batchID: [UInt8] = Array(0xB0...0xBF)

    /// Two parts: the first with statistics, a timestamp rewrite and a diff sum, the
    /// second with none of them.
    static let hollowBatch = HollowBatch(
        desc: BatchDescription(lower: Antichain(5), upper: Antichain(9), since: .minimum),
        rowCount: 5,
        parts: [
            HollowBatchPart(
                key: "p/w1/part-0", encodedSizeBytes: 300, rowCount: 3, keyLower: Array("a".utf8),
                keyUpper: Array("c".utf8), tsRewrite: 7, diffsSum: -2),
            HollowBatchPart(key: "p/w1/part-1", encodedSizeBytes: 120, rowCount: 2),
        ])

    static let handle = TransmittableBatch(shard: shard, batchID: batchID, batch: hollowBatch)

    static let register = TxnsEntry.register(shard: shard, ts: 0x0000_018B_CFE5_6800)
    static let append = TxnsEntry.append(shard: shard, ts: 42, batch: handle.encode())

    static let rows: [Update] = [
        Update(key: Array("k1".utf8), value: Array("v1".utf8), time: 5, diff: 1),
        Update(key: [0x00, 0xFF], value: [], time: 6, diff: -1),
    ]

    static var frame: [UInt8] {
        let payload = PartRows.encode(rows)
        return BatchPartFrame.encode(
            codec: .none, rowCount: UInt64(rows.count), uncompressedLength: payload.count,
            storedPayload: payload)
    }

    // MARK: Random valid values

    static func randomBytes(_ n: Int, using g: inout SeededGenerator) -> [UInt8] {
        (0..<n).map { _ in UInt8.random(in: 0...255, using: &g) }
    }

    /// A value biased towards the edges of the range, where encodings change shape.
    static func randomU64(using g: inout SeededGenerator) -> UInt64 {
        switch Int.random(in: 0..<6, using: &g) {
        case 0: return 0
        case 1: return UInt64.max
        case 2: return UInt64.random(in: 0...255, using: &g)
        case 3: return UInt64(1) << UInt64.random(in: 0...63, using: &g)
        default: return g.next()
        }
    }

    static func randomI64(using g: inout SeededGenerator) -> Int64 {
        switch Int.random(in: 0..<5, using: &g) {
        case 0: return Int64.min
        case 1: return Int64.max
        case 2: return Int64.random(in: -3...3, using: &g)
        default: return Int64(bitPattern: g.next())
        }
    }

    static func randomAntichain(using g: inout SeededGenerator) -> Antichain {
        Int.random(in: 0..<5, using: &g) == 0 ? .empty : Antichain(randomU64(using: &g))
    }

    static let keyAlphabet: [String] = ["a", "b", "z", "0", "/", "-", "é", "ß", "日", "😀"]

    static func randomKey(using g: inout SeededGenerator) -> String {
        let n = Int.random(in: 1...24, using: &g)
        return (0..<n).map { _ in keyAlphabet.randomElement(using: &g)! }.joined()
    }

    static func randomPart(rowCount: UInt64, using g: inout SeededGenerator) -> HollowBatchPart {
        var lo = randomBytes(Int.random(in: 0...8, using: &g), using: &g)
        var hi = randomBytes(Int.random(in: 0...8, using: &g), using: &g)
        if hi.lexicographicallyPrecedes(lo) { swap(&lo, &hi) }
        return HollowBatchPart(
            key: randomKey(using: &g), encodedSizeBytes: randomU64(using: &g), rowCount: rowCount,
            keyLower: lo, keyUpper: hi,
            tsRewrite: Bool.random(using: &g) ? randomU64(using: &g) : nil,
            diffsSum: Bool.random(using: &g) ? randomI64(using: &g) : nil)
    }

    static func randomHollowBatch(using g: inout SeededGenerator) -> HollowBatch {
        var a = randomAntichain(using: &g)
        var b = randomAntichain(using: &g)
        if !a.lessEqual(b) { swap(&a, &b) }
        let parts = (0..<Int.random(in: 0...4, using: &g)).map { _ in
            randomPart(rowCount: UInt64.random(in: 0...(1 << 40), using: &g), using: &g)
        }
        let total = parts.reduce(UInt64(0)) { $0 + $1.rowCount }
        return HollowBatch(
            desc: BatchDescription(lower: a, upper: b, since: randomAntichain(using: &g)),
            rowCount: total, parts: parts)
    }

    static func randomHandle(shard: ShardID? = nil, using g: inout SeededGenerator) -> TransmittableBatch {
        let s = shard ?? ShardID(using: &g)
        return TransmittableBatch(shard: s, batch: randomHollowBatch(using: &g), using: &g)
    }

    static func randomEntry(using g: inout SeededGenerator) -> TxnsEntry {
        let s = ShardID(using: &g)
        let ts = randomU64(using: &g)
        if Bool.random(using: &g) { return .register(shard: s, ts: ts) }
        return .append(shard: s, ts: ts, batch: randomHandle(shard: s, using: &g).encode())
    }

    static func randomRows(using g: inout SeededGenerator) -> [Update] {
        (0..<Int.random(in: 0...12, using: &g)).map { _ in
            Update(
                key: randomBytes(Int.random(in: 0...40, using: &g), using: &g),
                value: randomBytes(Int.random(in: 0...200, using: &g), using: &g),
                time: randomU64(using: &g), diff: randomI64(using: &g))
        }
    }
}

// MARK: - Helpers

/// Bytes from hex text; whitespace is ignored so long constants can be split.
func hexBytes(_ text: String) -> [UInt8] {
    let digits = Array(text.utf8.filter { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") })
    precondition(digits.count % 2 == 0, "even number of hex digits")
    func value(_ c: UInt8) -> UInt8 {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        default: preconditionFailure("not a lowercase hex digit")
        }
    }
    return stride(from: 0, to: digits.count, by: 2).map { value(digits[$0]) << 4 | value(digits[$0 + 1]) }
}

func hexString(_ bytes: some Sequence<UInt8>) -> String {
    let digits = Array("0123456789abcdef")
    return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
}

/// Little-endian integers at an offset, for checking layouts field by field.
func le<T: FixedWidthInteger>(_ bytes: [UInt8], at offset: Int, as: T.Type = T.self) -> T {
    var v: T = 0
    for i in 0..<MemoryLayout<T>.size { v |= T(truncatingIfNeeded: bytes[offset + i]) << (8 * i) }
    return v
}

/// Runs a decoder and captures its outcome, so tests can assert on the error itself.
func outcome<T>(_ body: () throws(CodecError) -> T) -> Result<T, CodecError> {
    do { return .success(try body()) } catch { return .failure(error) }
}

extension Result {
    var failure: Failure? {
        if case .failure(let e) = self { return e }
        return nil
    }
    var value: Success? {
        if case .success(let v) = self { return v }
        return nil
    }
}

/// The case of a `CodecError`, without its payload.
enum CodecErrorKind: Hashable {
    case truncated, badMagic, unsupportedVersion, checksumMismatch, invalidValue
    case lengthOutOfRange, trailingBytes
}

extension CodecError {
    var kind: CodecErrorKind {
        switch self {
        case .truncated: return .truncated
        case .badMagic: return .badMagic
        case .unsupportedVersion: return .unsupportedVersion
        case .checksumMismatch: return .checksumMismatch
        case .invalidValue: return .invalidValue
        case .lengthOutOfRange: return .lengthOutOfRange
        case .trailingBytes: return .trailingBytes
        }
    }

    /// The field or format the error names.
    var subject: String {
        switch self {
        case .truncated(let f, _, _), .invalidValue(let f, _), .lengthOutOfRange(let f, _, _):
            return f
        case .badMagic(let f, _), .unsupportedVersion(let f, _), .checksumMismatch(let f, _, _),
            .trailingBytes(let f, _):
            return f
        }
    }
}

/// Replaces the trailing CRC32C of a buffer that ends in one, after editing its body.
func refreshTrailingChecksum(_ bytes: [UInt8]) -> [UInt8] {
    var body = Array(bytes.dropLast(4))
    let crc = CRC32C.checksum(body)
    for i in 0..<4 { body.append(UInt8(truncatingIfNeeded: crc >> (8 * UInt32(i)))) }
    return body
}

/// Recomputes both checksums of a batch part object after editing it.
func refreshFrameChecksums(_ bytes: [UInt8]) -> [UInt8] {
    var out = bytes
    let payloadCRC = CRC32C.checksum(Array(bytes[BatchPartHeader.size...]))
    for i in 0..<4 { out[32 + i] = UInt8(truncatingIfNeeded: payloadCRC >> (8 * UInt32(i))) }
    let headerCRC = CRC32C.checksum(Array(out[0..<36]))
    for i in 0..<4 { out[36 + i] = UInt8(truncatingIfNeeded: headerCRC >> (8 * UInt32(i))) }
    return out
}

/// Re-encodes a decoded frame, for round-trip checks.
func reencode(_ frame: BatchPartFrame) -> [UInt8] {
    BatchPartFrame.encode(
        codec: frame.header.codec, rowCount: frame.header.rowCount,
        uncompressedLength: Int(frame.header.uncompressedLength), storedPayload: frame.payload)
}
