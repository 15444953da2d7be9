/// One version of a consensus key: its sequence number and the opaque bytes stored there.
public struct VersionedData: Hashable, Sendable {
    public var seqno: SeqNo
    public var data: [UInt8]

    public init(seqno: SeqNo, data: [UInt8]) {
        self.seqno = seqno
        self.data = data
    }
}

extension VersionedData: CustomStringConvertible {
    public var description: String { "\(seqno) (\(data.count) bytes)" }
}

/// The outcome of a consensus compare-and-set. A mismatch is an expected outcome, not an
/// error: it says the key's head was not the expected one and nothing was written.
public enum CaSResult: Hashable, Sendable {
    /// The new version is durably appended and is now the head.
    case committed
    /// Nothing was written; `current` is the head at the time of the check (nil when the
    /// key has no versions), which saves the caller a round trip.
    case expectationMismatch(current: VersionedData?)
}
