/// The identity of a shard: 16 random bytes.
///
/// The text form is `s` followed by the bytes as a lowercase RFC 4122 UUID string
/// (`s7b0c8a1e-...`). That text is also the shard's key in consensus and the first
/// component of every blob key that belongs to the shard.
public struct ShardID: Hashable, Comparable, Sendable {
    /// The 16 identifying bytes, in UUID byte order.
    public let bytes: [UInt8]

    /// Wraps exactly 16 bytes. Any other length is a `ShardIDParseError`.
    public init(bytes: [UInt8]) throws(ShardIDParseError) {
        guard bytes.count == 16 else {
            throw ShardIDParseError(text: "", reason: .wrongByteCount(bytes.count))
        }
        self.bytes = bytes
    }

    /// A fresh random id (version 4 UUID bits set) drawn from `generator`.
    public init(using generator: inout some RandomNumberGenerator) {
        self.bytes = UUIDText.randomBytes(using: &generator)
    }

    /// A fresh random id from the system's secure generator.
    public static func random() -> ShardID {
        var g = SystemRandomNumberGenerator()
        return ShardID(using: &g)
    }

    /// Parses the `s<uuid>` text form. The UUID part may use either letter case.
    public init(parsing text: some StringProtocol) throws(ShardIDParseError) {
        let s = String(text)
        guard s.utf8.first == UInt8(ascii: "s") else {
            throw ShardIDParseError(text: s, reason: .missingPrefix)
        }
        do {
            self.bytes = try UUIDText.parse(s.utf8.dropFirst())
        } catch {
            throw ShardIDParseError(text: s, reason: .badUUID(error))
        }
    }

    public static func < (a: ShardID, b: ShardID) -> Bool {
        a.bytes.lexicographicallyPrecedes(b.bytes)
    }
}

extension ShardID: CustomStringConvertible, LosslessStringConvertible {
    /// The `s<uuid>` text form.
    public var description: String { "s" + UUIDText.format(bytes) }

    public init?(_ description: String) {
        try? self.init(parsing: description)
    }
}

/// Why a string is not a valid shard id.
public struct ShardIDParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Reason: Equatable, Sendable {
        case missingPrefix
        case badUUID(UUIDText.ParseError)
        case wrongByteCount(Int)
    }

    /// The text that failed to parse (truncated to 80 characters).
    public let text: String
    public let reason: Reason

    init(text: String, reason: Reason) {
        self.text = String(text.prefix(80))
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .missingPrefix:
            return "invalid shard id \"\(text)\": must start with 's' followed by a UUID"
        case .badUUID(let e):
            return "invalid shard id \"\(text)\": \(e)"
        case .wrongByteCount(let n):
            return "invalid shard id: expected 16 bytes, got \(n)"
        }
    }
}
