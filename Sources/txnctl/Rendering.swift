import Foundation
import PersistCodec
import PersistCore

/// Everything `txnctl` prints on stdout, as lines: text for people, or (with `json`) one
/// JSON object per line. Pure, so the formats are tested without a coordinator.
///
/// JSON rows carry `key`/`value` as UTF-8 text when the bytes are valid UTF-8 and as
/// `key_b64`/`value_b64` otherwise, the same fields `commit --stdin` reads.
enum Rendering {
    // MARK: Shards

    /// `shard create` and `shard list`: one shard per line.
    static func shards(_ infos: [ShardInfo], json: Bool) throws -> [String] {
        if json {
            return try infos.map { try jsonLine(ShardLine(name: $0.name, id: "\($0.id)", registered: $0.registered)) }
        }
        if infos.isEmpty { return ["(no shards)"] }
        return table(
            header: ["NAME", "ID", "REGISTERED"],
            rows: infos.map { [$0.name, "\($0.id)", $0.registered ? "yes" : "no"] })
    }

    /// `shard register`, `shard forget` and `compact`: what took effect, and when.
    static func done(_ operation: String, at: Timestamp, shards: [ShardRef], json: Bool) throws -> [String] {
        if json {
            return [try jsonLine(DoneLine(op: operation, at: at, shards: shards.isEmpty ? nil : shards.map(\.description)))]
        }
        let subject = shards.isEmpty ? "" : " " + shards.map(\.description).joined(separator: ", ")
        return ["\(operation)\(subject) at \(at)"]
    }

    // MARK: Commit, read, subscribe

    /// `commit`: the timestamp alone in text (so `ts=$(txnctl commit ...)` works).
    static func committed(at: Timestamp, writes: [ShardWrites], json: Bool) throws -> [String] {
        guard json else { return ["\(at)"] }
        return [
            try jsonLine(
                CommittedLine(committedAt: at, shards: writes.count, rows: writes.reduce(0) { $0 + $1.rows.count }))
        ]
    }

    /// `read`: a summary line, then the rows (a table in text).
    static func snapshot(shard: ShardRef, asOf: Timestamp, rows: [Update], json: Bool) throws -> [String] {
        if json {
            var lines = [try jsonLine(SnapshotLine(shard: shard.description, asOf: asOf, rows: rows.count))]
            for u in rows { lines.append(try jsonLine(UpdateLine(type: "row", update: u))) }
            return lines
        }
        let summary = "\(shard) as of \(asOf): \(rows.count) row\(rows.count == 1 ? "" : "s")"
        if rows.isEmpty { return [summary] }
        return [summary]
            + table(
                header: ["KEY", "VALUE", "DIFF", "TIME"],
                rows: rows.map { [display($0.key), display($0.value), "\($0.diff)", "\($0.time)"] })
    }

    /// `subscribe`: one line per update.
    static func updates(_ rows: [Update], json: Bool) throws -> [String] {
        if json { return try rows.map { try jsonLine(UpdateLine(type: "update", update: $0)) } }
        return rows.map { "update time=\($0.time) key=\(display($0.key)) value=\(display($0.value)) diff=\($0.diff)" }
    }

    /// `subscribe`: everything below `upper` has been printed.
    static func progress(_ upper: Timestamp, json: Bool) throws -> [String] {
        if json { return [try jsonLine(ProgressLine(upper: upper))] }
        return ["progress \(upper)"]
    }

    // MARK: Status

    static func status(_ s: CoordinatorStatus, json: Bool) throws -> [String] {
        if json {
            return [
                try jsonLine(
                    StatusLine(
                        txnsShard: "\(s.txnsShard)", upper: s.upper, since: s.since, shards: s.shards,
                        registered: s.registered, unapplied: s.unapplied))
            ]
        }
        return table(
            header: nil,
            rows: [
                ["txns shard:", "\(s.txnsShard)"],
                ["upper:", "\(s.upper)  (every commit so far is below this)"],
                ["since:", "\(s.since)  (reads below this are no longer possible)"],
                ["shards:", "\(s.shards)  (\(s.registered) registered)"],
                ["unapplied:", "\(s.unapplied)  (committed, not yet applied to their shards)"],
            ])
    }

    // MARK: Building blocks

    /// Bytes for a text line: plain when they are printable UTF-8 without spaces, quotes or
    /// backslashes; a quoted string with JSON escapes when they are other UTF-8; and
    /// `base64:<base64>` when they are not UTF-8.
    static func display(_ bytes: [UInt8]) -> String {
        guard let text = String(validating: bytes, as: UTF8.self) else {
            return "base64:" + Data(bytes).base64EncodedString()
        }
        let plain =
            !text.isEmpty && !text.hasPrefix("base64:")
            && text.unicodeScalars.allSatisfy { scalar in
                if scalar == "\"" || scalar == "\\" { return false }
                switch scalar.properties.generalCategory {
                case .control, .format, .surrogate, .privateUse, .unassigned, .spaceSeparator, .lineSeparator,
                    .paragraphSeparator:
                    return false
                default:
                    return true
                }
            }
        if plain { return text }
        return (try? jsonLine(text)) ?? "base64:" + Data(bytes).base64EncodedString()
    }

    /// Columns padded to their widest cell (the last column is not padded); `header`, when
    /// given, is the first line.
    static func table(header: [String]?, rows: [[String]]) -> [String] {
        let all = (header.map { [$0] } ?? []) + rows
        var widths: [Int] = []
        for row in all {
            for (i, cell) in row.enumerated() {
                if i == widths.count { widths.append(0) }
                widths[i] = max(widths[i], cell.count)
            }
        }
        return all.map { row in
            var line = ""
            for (i, cell) in row.enumerated() {
                if i > 0 { line += "  " }
                line += i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count)
            }
            return line
        }
    }

    /// One compact JSON text with sorted keys.
    static func jsonLine(_ value: some Encodable) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }
}

// MARK: JSON line shapes

private struct ShardLine: Encodable {
    var name: String
    var id: String
    var registered: Bool
}

private struct DoneLine: Encodable {
    var op: String
    var at: Timestamp
    var shards: [String]?
}

private struct CommittedLine: Encodable {
    var committedAt: Timestamp
    var shards: Int
    var rows: Int

    enum CodingKeys: String, CodingKey {
        case committedAt = "committed_at"
        case shards, rows
    }
}

private struct SnapshotLine: Encodable {
    var type = "snapshot"
    var shard: String
    var asOf: Timestamp
    var rows: Int

    enum CodingKeys: String, CodingKey {
        case type, shard, rows
        case asOf = "as_of"
    }
}

private struct UpdateLine: Encodable {
    var type: String
    var update: Update

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: FieldKey.self)
        try c.encode(type, forKey: "type")
        try Self.encodeBytes(update.key, as: "key", into: &c)
        try Self.encodeBytes(update.value, as: "value", into: &c)
        try c.encode(update.time, forKey: "time")
        try c.encode(update.diff, forKey: "diff")
    }

    static func encodeBytes(_ bytes: [UInt8], as name: String, into c: inout KeyedEncodingContainer<FieldKey>) throws {
        if let text = String(validating: bytes, as: UTF8.self) {
            try c.encode(text, forKey: FieldKey(stringValue: name))
        } else {
            try c.encode(Data(bytes).base64EncodedString(), forKey: FieldKey(stringValue: name + "_b64"))
        }
    }
}

private struct ProgressLine: Encodable {
    var type = "progress"
    var upper: Timestamp
}

private struct StatusLine: Encodable {
    var txnsShard: String
    var upper: Timestamp
    var since: Timestamp
    var shards: Int
    var registered: Int
    var unapplied: Int

    enum CodingKeys: String, CodingKey {
        case txnsShard = "txns_shard"
        case upper, since, shards, registered, unapplied
    }
}
