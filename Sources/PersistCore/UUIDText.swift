/// Formatting and parsing of the 36-character UUID text form (8-4-4-4-12 hex digits),
/// without Foundation so that the core modules stay dependency-free.
public enum UUIDText {
    /// Why a UUID string is malformed.
    public enum ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        case wrongLength(Int)
        case expectedDash(at: Int)
        case notHex(at: Int)

        public var description: String {
            switch self {
            case .wrongLength(let n): return "UUID must be 36 characters, got \(n)"
            case .expectedDash(let i): return "expected '-' at offset \(i) of the UUID"
            case .notHex(let i): return "non-hex character at offset \(i) of the UUID"
            }
        }
    }

    static let dashOffsets: Set<Int> = [8, 13, 18, 23]
    static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    /// 16 random bytes with the version-4 and RFC 4122 variant bits set.
    public static func randomBytes(using generator: inout some RandomNumberGenerator) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 16)
        let a = generator.next() as UInt64
        let b = generator.next() as UInt64
        for i in 0..<8 {
            out[i] = UInt8(truncatingIfNeeded: a >> (8 * UInt64(i)))
            out[8 + i] = UInt8(truncatingIfNeeded: b >> (8 * UInt64(i)))
        }
        out[6] = (out[6] & 0x0F) | 0x40
        out[8] = (out[8] & 0x3F) | 0x80
        return out
    }

    /// The lowercase 8-4-4-4-12 form of 16 bytes.
    public static func format(_ bytes: [UInt8]) -> String {
        precondition(bytes.count == 16, "a UUID has 16 bytes")
        var chars = [UInt8]()
        chars.reserveCapacity(36)
        for (i, b) in bytes.enumerated() {
            if i == 4 || i == 6 || i == 8 || i == 10 { chars.append(UInt8(ascii: "-")) }
            chars.append(hexDigits[Int(b >> 4)])
            chars.append(hexDigits[Int(b & 0x0F)])
        }
        return String(decoding: chars, as: UTF8.self)
    }

    /// Parses the 36-character form; either letter case is accepted.
    public static func parse(_ utf8: some Collection<UInt8>) throws(ParseError) -> [UInt8] {
        let chars = Array(utf8)
        guard chars.count == 36 else { throw .wrongLength(chars.count) }
        var out = [UInt8]()
        out.reserveCapacity(16)
        var i = 0
        while i < 36 {
            if dashOffsets.contains(i) {
                guard chars[i] == UInt8(ascii: "-") else { throw .expectedDash(at: i) }
                i += 1
                continue
            }
            guard let hi = hexValue(chars[i]) else { throw .notHex(at: i) }
            guard let lo = hexValue(chars[i + 1]) else { throw .notHex(at: i + 1) }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }

    static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
