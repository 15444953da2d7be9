/// A position in a consensus key's sequence of versions.
///
/// Sequence numbers are restricted to `0...Int64.max` so that every backend, including
/// SQL ones with a signed `bigint` column, can store them unchanged. Printed as `v<n>`.
public struct SeqNo: Hashable, Comparable, Sendable {
    /// The largest representable sequence number (`Int64.max`).
    public static let maximum = SeqNo(uncheckedRawValue: UInt64(Int64.max))
    /// The smallest sequence number.
    public static let minimum = SeqNo(uncheckedRawValue: 0)

    public let rawValue: UInt64

    /// Wraps `rawValue`, or returns `nil` when it exceeds `Int64.max`.
    public init?(_ rawValue: UInt64) {
        guard rawValue <= UInt64(Int64.max) else { return nil }
        self.rawValue = rawValue
    }

    /// Wraps a value already known to be in range; traps otherwise. Only for constants.
    public init(_ rawValue: Int) {
        precondition(rawValue >= 0, "a SeqNo is never negative")
        self.rawValue = UInt64(rawValue)
    }

    init(uncheckedRawValue: UInt64) { self.rawValue = uncheckedRawValue }

    /// The next sequence number, or `nil` at `maximum`.
    public var next: SeqNo? { SeqNo(rawValue + 1) }

    public static func < (a: SeqNo, b: SeqNo) -> Bool { a.rawValue < b.rawValue }
}

extension SeqNo: CustomStringConvertible {
    public var description: String { "v\(rawValue)" }
}

/// A logical time. Times are totally ordered; `Timestamp` is encoded as 8 bytes
/// little-endian wherever a format calls for an encoded time.
public typealias Timestamp = UInt64
