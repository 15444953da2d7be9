import PersistCore

// Library-ready: depends on PersistCore only.

/// One broken invariant and the witness that shows it. `check` and `message` are always
/// set; each check fills in the fields that identify its witness (JSON leaves the others
/// out).
struct Violation: Codable, Hashable, Sendable {
    /// Which invariant was broken.
    enum Check: String, Codable, CaseIterable, Sendable {
        /// A blob the stored state needs does not exist.
        case blobReference = "blob_reference"
        /// A shard's state (or the shard-name table) could not be read or decoded.
        case stateUnreadable = "state_unreadable"
        /// The txns shard's history breaks the commit/tidy discipline.
        case txnsHistory = "txns_history"
        /// A data shard's contents differ from the replay of the committed transactions.
        case replay = "replay"
        /// A committed transaction is not applied (a failure only when asked for).
        case unapplied = "unapplied"
        /// A consensus key went backwards between two `heads` records.
        case heads = "heads"
    }

    var check: Check
    /// One sentence saying what is wrong.
    var message: String
    var shard: String?
    var shardName: String?
    var consensusKey: String?
    var seqno: UInt64?
    var blobKey: String?
    /// An update's key and value (see `ByteText`).
    var key: String?
    var value: String?
    var time: Timestamp?
    var expectedDiff: Int64?
    var actualDiff: Int64?
    /// For comparisons over time (heads): what was recorded before and what is now.
    var previous: String?
    var current: String?

    init(_ check: Check, _ message: String) {
        self.check = check
        self.message = message
    }

    /// `message` followed by every witness field that is set, for people.
    var text: String {
        var fields: [String] = []
        if let shard { fields.append("shard \(shard)" + (shardName.map { " (\"\($0)\")" } ?? "")) }
        if let consensusKey { fields.append("consensus key \(consensusKey)") }
        if let seqno { fields.append("seqno \(seqno)") }
        if let blobKey { fields.append("blob \(blobKey)") }
        if let key { fields.append("key \(key)") }
        if let value { fields.append("value \(value)") }
        if let time { fields.append("time \(time)") }
        if let expectedDiff { fields.append("expected diff \(expectedDiff)") }
        if let actualDiff { fields.append("actual diff \(actualDiff)") }
        if let previous { fields.append("before \(previous)") }
        if let current { fields.append("now \(current)") }
        return "[\(check.rawValue)] \(message)" + (fields.isEmpty ? "" : ": " + fields.joined(separator: ", "))
    }
}

/// Collects violations, keeping at most `cap` witnesses per check (so that thousands of
/// mismatched rows cannot hide one missing blob) and counting all of them.
struct Findings: Sendable {
    let cap: Int
    private(set) var kept: [Violation] = []
    private(set) var counts: [Violation.Check: Int] = [:]

    init(cap: Int) {
        self.cap = max(0, cap)
    }

    mutating func add(_ v: Violation) {
        let n = counts[v.check, default: 0]
        counts[v.check] = n + 1
        if n < cap { kept.append(v) }
    }

    var total: Int { counts.values.reduce(0, +) }
    var omitted: Int { total - kept.count }
    var isEmpty: Bool { total == 0 }

    /// Counts by check name, for reports.
    var countsByName: [String: Int] {
        Dictionary(uniqueKeysWithValues: counts.map { ($0.key.rawValue, $0.value) })
    }
}

/// Renders opaque key and value bytes for witnesses: printable UTF-8 as itself, anything
/// else as `hex:` followed by lowercase hex digits.
enum ByteText {
    static func render(_ bytes: [UInt8]) -> String {
        if let s = String(validating: bytes, as: UTF8.self), !s.hasPrefix("hex:"),
            s.unicodeScalars.allSatisfy({ !$0.properties.generalCategory.isControl })
        {
            return s
        }
        let digits = Array("0123456789abcdef")
        var out = "hex:"
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return out
    }
}

extension Unicode.GeneralCategory {
    fileprivate var isControl: Bool {
        switch self {
        case .control, .format, .lineSeparator, .paragraphSeparator, .unassigned, .surrogate: return true
        default: return false
        }
    }
}

/// Text forms of frontiers for witnesses and records.
extension Antichain {
    /// The frontier as a JSON-friendly array: `[t]`, or `[]` when closed.
    var elements: [Timestamp] { element.map { [$0] } ?? [] }

    /// The frontier an array from `elements` stands for; nil for more than one element.
    init?(elements: [Timestamp]) {
        switch elements.count {
        case 0: self = .empty
        case 1: self.init(elements[0])
        default: return nil
        }
    }
}
