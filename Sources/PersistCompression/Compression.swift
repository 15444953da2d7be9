import CLZ4
import CZstd

/// A one-shot compression scheme for batch part payloads.
///
/// Decompression is always told the exact decompressed size (batch part headers record
/// it), which bounds the output buffer up front: a corrupt or hostile input can never make
/// it allocate more than the caller allowed, and any input that does not decompress to
/// exactly that size is an error.
public enum Compression: Hashable, Sendable {
    case none
    case lz4
    /// zstd at `level` (1 is fastest; 3 is zstd's default; up to 19 for archival).
    case zstd(level: Int32)

    /// The largest output `decompress` will produce (4 GiB): a bound on what a corrupt
    /// size field can make it allocate.
    public static let maxDecompressedSize = 1 << 32

    /// zstd level 1, the dense setting: what `PersistConfig` writes large compaction
    /// outputs with by default, and the decoder for any zstd part (the level does not
    /// matter for decoding). Parts on the write path default to `.lz4` instead, which
    /// trades ratio for speed: on batch-part rows it compresses about 1.6x and
    /// decompresses about 2x as fast as this, at roughly 60% of its ratio.
    public static let `default` = Compression.zstd(level: 1)

    /// Compresses `input` in one call.
    public func compress(_ input: [UInt8]) throws(CompressionError) -> [UInt8] {
        switch self {
        case .none:
            return input
        case .lz4:
            guard input.count <= Int(LZ4_MAX_INPUT_SIZE) else {
                throw .inputTooLarge(codec: "lz4", size: input.count)
            }
            let bound = Int(LZ4_compressBound(Int32(input.count)))
            var out = [UInt8](repeating: 0, count: bound)
            let written = withInputAndOutput(input, &out) { src, srcCount, dst, dstCount in
                LZ4_compress_default(
                    src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                    Int32(srcCount), Int32(dstCount))
            }
            guard written > 0 || input.isEmpty else { throw .failed(codec: "lz4", reason: "compression failed") }
            out.removeSubrange(Int(written)...)
            return out
        case .zstd(let level):
            let bound = ZSTD_compressBound(input.count)
            var out = [UInt8](repeating: 0, count: bound)
            let written = withInputAndOutput(input, &out) { src, srcCount, dst, dstCount in
                ZSTD_compress(dst, dstCount, src, srcCount, level)
            }
            if ZSTD_isError(written) != 0 {
                throw .failed(codec: "zstd", reason: String(cString: ZSTD_getErrorName(written)))
            }
            out.removeSubrange(written...)
            return out
        }
    }

    /// Decompresses `input`, which must expand to exactly `decompressedSize` bytes.
    /// Truncated, corrupted or mismatched input is a `CompressionError`, never a crash.
    public func decompress(_ input: [UInt8], decompressedSize: Int) throws(CompressionError) -> [UInt8] {
        guard decompressedSize >= 0 else { throw .sizeMismatch(codec: name, expected: decompressedSize, actual: 0) }
        guard decompressedSize <= Self.maxDecompressedSize else {
            throw .inputTooLarge(codec: name, size: decompressedSize)
        }
        switch self {
        case .none:
            guard input.count == decompressedSize else {
                throw .sizeMismatch(codec: name, expected: decompressedSize, actual: input.count)
            }
            return input
        case .lz4:
            guard decompressedSize <= Int(Int32.max), input.count <= Int(Int32.max) else {
                throw .inputTooLarge(codec: "lz4", size: max(decompressedSize, input.count))
            }
            if decompressedSize == 0 {
                // An empty input compresses to a single zero token.
                guard input == [0] else { throw .corrupt(codec: "lz4", reason: "not the encoding of empty input") }
                return []
            }
            // One spare byte: if the stream would produce more than expected, LZ4 fails
            // or writes past `decompressedSize`, and either way we see the mismatch.
            var out = [UInt8](repeating: 0, count: decompressedSize + 1)
            let n = withInputAndOutput(input, &out) { src, srcCount, dst, dstCount in
                LZ4_decompress_safe(
                    src.assumingMemoryBound(to: CChar.self), dst.assumingMemoryBound(to: CChar.self),
                    Int32(srcCount), Int32(dstCount))
            }
            guard n >= 0 else { throw .corrupt(codec: "lz4", reason: "malformed or truncated input") }
            guard Int(n) == decompressedSize else {
                throw .sizeMismatch(codec: "lz4", expected: decompressedSize, actual: Int(n))
            }
            out.removeLast()
            return out
        case .zstd:
            // The frame header may declare its content size; check it before decoding.
            var probe: [UInt8] = [0]
            let declared = withInputAndOutput(input, &probe) { src, srcCount, _, _ in
                ZSTD_getFrameContentSize(src, srcCount)
            }
            if declared == ZSTD_CONTENTSIZE_ERROR {
                throw .corrupt(codec: "zstd", reason: "not a zstd frame")
            }
            if declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != UInt64(decompressedSize) {
                throw .sizeMismatch(codec: "zstd", expected: decompressedSize, actual: Int(clamping: declared))
            }
            var out = [UInt8](repeating: 0, count: decompressedSize + 1)
            let n = withInputAndOutput(input, &out) { src, srcCount, dst, dstCount in
                ZSTD_decompress(dst, dstCount, src, srcCount)
            }
            if ZSTD_isError(n) != 0 {
                throw .corrupt(codec: "zstd", reason: String(cString: ZSTD_getErrorName(n)))
            }
            guard n == decompressedSize else {
                throw .sizeMismatch(codec: "zstd", expected: decompressedSize, actual: n)
            }
            out.removeLast()
            return out
        }
    }

    /// A short name for logs and errors: `none`, `lz4`, `zstd-<level>`.
    public var name: String {
        switch self {
        case .none: return "none"
        case .lz4: return "lz4"
        case .zstd(let level): return "zstd-\(level)"
        }
    }

    /// The largest output `compress` can produce for `inputSize` bytes.
    public func compressBound(_ inputSize: Int) -> Int {
        switch self {
        case .none: return inputSize
        case .lz4: return Int(LZ4_compressBound(Int32(clamping: inputSize)))
        case .zstd: return ZSTD_compressBound(inputSize)
        }
    }
}

/// Why compressing or decompressing failed.
public enum CompressionError: Error, Hashable, Sendable, CustomStringConvertible {
    case inputTooLarge(codec: String, size: Int)
    case failed(codec: String, reason: String)
    case corrupt(codec: String, reason: String)
    case sizeMismatch(codec: String, expected: Int, actual: Int)

    public var description: String {
        switch self {
        case .inputTooLarge(let c, let s): return "\(c): input of \(s) bytes is too large"
        case .failed(let c, let r): return "\(c) compression failed: \(r)"
        case .corrupt(let c, let r): return "\(c) input is corrupt: \(r)"
        case .sizeMismatch(let c, let e, let a):
            return "\(c) input decompresses to \(a) bytes, expected \(e)"
        }
    }
}

/// Calls `body` with non-null pointers to `input` and `output` and their real sizes. The
/// C libraries want valid pointers even for empty buffers, so an empty input is swapped
/// for a one-byte array (its size, zero, is still what `body` is told). `output` must not
/// be empty.
private func withInputAndOutput<R>(
    _ input: [UInt8], _ output: inout [UInt8],
    _ body: (UnsafeRawPointer, Int, UnsafeMutableRawPointer, Int) -> R
) -> R {
    let storage = input.isEmpty ? [0] : input
    return storage.withUnsafeBytes { src in
        output.withUnsafeMutableBytes { dst in
            guard let s = src.baseAddress, let d = dst.baseAddress else {
                preconditionFailure("non-empty arrays always have storage")
            }
            return body(s, input.count, d, dst.count)
        }
    }
}
