import PersistCore

/// A kind of 16-byte identifier, named by the letter its text form starts with.
public protocol IDKind: Sendable {
    /// The text prefix (`w` for writers, `r` leased readers, `c` critical readers,
    /// `i` idempotency tokens).
    static var prefix: UInt8 { get }
}

/// A 16-byte random identifier whose text form is a one-letter prefix and a UUID.
public struct TaggedID<Kind: IDKind>: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let bytes: [UInt8]

    /// Wraps exactly 16 bytes.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    /// A fresh id from `generator`.
    public init(using generator: inout some RandomNumberGenerator) {
        bytes = UUIDText.randomBytes(using: &generator)
    }

    /// A fresh id from the system's secure generator.
    public static func random() -> TaggedID {
        var g = SystemRandomNumberGenerator()
        return TaggedID(using: &g)
    }

    /// Parses the text form; nil if the prefix or UUID is wrong.
    public init?(parsing text: String) {
        guard text.utf8.first == Kind.prefix, let b = try? UUIDText.parse(text.utf8.dropFirst()) else { return nil }
        bytes = b
    }

    public var description: String { String(UnicodeScalar(Kind.prefix)) + UUIDText.format(bytes) }

    public static func < (a: TaggedID, b: TaggedID) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

public enum WriterKind: IDKind { public static let prefix = UInt8(ascii: "w") }
public enum LeasedReaderKind: IDKind { public static let prefix = UInt8(ascii: "r") }
public enum CriticalReaderKind: IDKind { public static let prefix = UInt8(ascii: "c") }
public enum IdempotencyKind: IDKind { public static let prefix = UInt8(ascii: "i") }

/// Identifies a `WriteHandle`; printed `w<uuid>`.
public typealias WriterID = TaggedID<WriterKind>
/// Identifies a leased reader; printed `r<uuid>`.
public typealias LeasedReaderID = TaggedID<LeasedReaderKind>
/// Identifies a critical reader (durable, chosen by its owner); printed `c<uuid>`.
public typealias CriticalReaderID = TaggedID<CriticalReaderKind>
/// Makes one compare-and-append attempt recognisable after an indeterminate failure.
public typealias IdempotencyToken = TaggedID<IdempotencyKind>

extension ByteWriter {
    public mutating func writeID<K>(_ id: TaggedID<K>) { writeBytes(id.bytes) }
}

extension ByteReader {
    public mutating func readID<K>(_ field: String) throws(CodecError) -> TaggedID<K> {
        let raw = try readBytes(16, field)
        guard let id = TaggedID<K>(bytes: raw) else {
            throw .invalidValue(field: field, reason: "an id has 16 bytes")
        }
        return id
    }
}
