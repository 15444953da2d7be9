import PersistCore

/// One element of a list as read back: an appended integer, or (should storage hold
/// something no one appended) the raw text, which the checker then reports.
public enum ReadElement: Hashable, Sendable, Comparable {
    case int(Int)
    case text(String)

    /// Parses a row value: canonical decimal text is an integer, anything else text.
    public init(value: [UInt8]) {
        let text = String(decoding: value, as: UTF8.self)
        if let n = Int(text), String(n) == text {
            self = .int(n)
        } else {
            self = .text(text)
        }
    }

    public static func < (a: ReadElement, b: ReadElement) -> Bool {
        switch (a, b) {
        case (.int(let x), .int(let y)): x < y
        case (.int, .text): true
        case (.text, .int): false
        case (.text(let x), .text(let y)): x < y
        }
    }
}

/// Turns a shard's update history into the lists of its keys.
///
/// A key's list is its appended values ordered by commit time, then by value (see
/// `TxnPlan.value(txn:op:)` for why the value is a sound tie-break within one time). A
/// value that consolidates to more than one copy appears that many times, so a
/// duplicated append shows in the list; retractions never come from this workload and
/// are counted, not shown.
public struct ListHistory: Sendable {
    public private(set) var lists: [[UInt8]: [ReadElement]] = [:]
    /// Rows with a negative diff (none are expected).
    public private(set) var retractions = 0

    /// The lists of `keys` (row keys) in `rows`; keys with no rows get an empty list.
    public init(rows: [Update], keys: Set<[UInt8]>) {
        // Per key and value: the net count, and the earliest time it was added.
        var net: [[UInt8]: [[UInt8]: (count: Int64, first: Timestamp?)]] = [:]
        for row in rows where keys.contains(row.key) {
            var entry = net[row.key, default: [:]][row.value] ?? (count: 0, first: nil)
            entry.count += row.diff
            if row.diff > 0 { entry.first = min(entry.first ?? row.time, row.time) }
            if row.diff < 0 { retractions += 1 }
            net[row.key, default: [:]][row.value] = entry
        }
        for key in keys {
            var placed: [(time: Timestamp, element: ReadElement, copies: Int64)] = []
            for (value, entry) in net[key] ?? [:] where entry.count > 0 {
                placed.append((time: entry.first ?? 0, element: ReadElement(value: value), copies: entry.count))
            }
            placed.sort { ($0.time, $0.element) < ($1.time, $1.element) }
            var list: [ReadElement] = []
            for p in placed { list += Array(repeating: p.element, count: Int(min(p.copies, 1 << 20))) }
            lists[key] = list
        }
    }

    public func list(_ key: [UInt8]) -> [ReadElement] { lists[key] ?? [] }
}
