/// Why a decoder rejected its input. Decoders in this module take untrusted bytes; any
/// truncation or corruption ends in one of these, never in a trap or a wrong value.
public enum CodecError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The input ended before `field` was complete.
    case truncated(field: String, needed: Int, available: Int)
    /// The input does not start with `format`'s magic bytes.
    case badMagic(format: String, found: [UInt8])
    /// The input is in a version of `format` this code does not understand.
    case unsupportedVersion(format: String, version: Int)
    /// The stored checksum does not match the bytes.
    case checksumMismatch(format: String, stored: UInt32, computed: UInt32)
    /// A field holds a value that no valid encoder produces.
    case invalidValue(field: String, reason: String)
    /// A length or count exceeds what the input or a configured limit allows.
    case lengthOutOfRange(field: String, length: UInt64, limit: UInt64)
    /// Bytes remain after a complete value of `format`.
    case trailingBytes(format: String, count: Int)

    public var description: String {
        switch self {
        case .truncated(let f, let n, let a):
            return "truncated input: \(f) needs \(n) bytes, \(a) available"
        case .badMagic(let f, let found):
            return "not a \(f): bad magic bytes \(found.map { hex2($0) }.joined())"
        case .unsupportedVersion(let f, let v):
            return "unsupported \(f) version \(v)"
        case .checksumMismatch(let f, let s, let c):
            return "\(f) checksum mismatch: stored \(hex8(s)), computed \(hex8(c))"
        case .invalidValue(let f, let r):
            return "invalid \(f): \(r)"
        case .lengthOutOfRange(let f, let l, let lim):
            return "\(f) length \(l) out of range (limit \(lim))"
        case .trailingBytes(let f, let n):
            return "\(n) unexpected trailing bytes after \(f)"
        }
    }
}

private func hex2(_ b: UInt8) -> String {
    let s = String(b, radix: 16)
    return s.count == 1 ? "0" + s : s
}

private func hex8(_ v: UInt32) -> String {
    let s = String(v, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - s.count) + s
}
