/// One update to a shard: `((key, value), time, diff)`.
///
/// Keys and values are opaque bytes produced by the caller's codecs. Updates with equal
/// `(key, value, time)` consolidate by adding their diffs; a zero diff is no update.
public struct Update: Hashable, Sendable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var time: Timestamp
    public var diff: Int64

    public init(key: [UInt8], value: [UInt8], time: Timestamp, diff: Int64) {
        self.key = key
        self.value = value
        self.time = time
        self.diff = diff
    }
}
