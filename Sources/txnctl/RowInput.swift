import Foundation
import PersistCodec
import PersistCore

/// One row of a commit together with the shard it goes to.
struct ShardRow: Hashable, Sendable {
    var shard: ShardRef
    var row: RowWrite
}

/// How users name shards: by name, or by id (`s<uuid>`).
enum ShardNames {
    /// A shard reference: an id if the text parses as one, else a name (which must be a
    /// valid shard name: letters, digits, `_ - . / :`).
    static func ref(_ text: String) throws(UsageError) -> ShardRef {
        if let id = ShardID(text) { return .id(id) }
        guard CoordinatorRPC.isValidShardName(text) else {
            throw UsageError(
                "\"\(text)\" is neither a shard id (s<uuid>) nor a valid shard name "
                    + "(1-256 letters, digits, '_', '-', '.', '/', ':')")
        }
        return .name(text)
    }

    static func refs(_ texts: [String]) throws(UsageError) -> [ShardRef] {
        guard !texts.isEmpty else { throw UsageError("name at least one shard") }
        var refs: [ShardRef] = []
        for text in texts { refs.append(try ref(text)) }
        return refs
    }

    /// A name for a new shard: valid, and not one that would read as an id.
    static func newName(_ text: String) throws(UsageError) -> String {
        if ShardID(text) != nil {
            throw UsageError("\"\(text)\" looks like a shard id (s<uuid>); choose a name that does not")
        }
        guard case .name(let name) = try ref(text) else { throw UsageError("\"\(text)\" is not a shard name") }
        return name
    }

    /// Groups rows by shard into one transaction's writes: shards in order of first
    /// appearance, rows in the order given.
    static func group(_ rows: [ShardRow]) -> [ShardWrites] {
        var writes: [ShardWrites] = []
        var index: [ShardRef: Int] = [:]
        for r in rows {
            if let i = index[r.shard] {
                writes[i].rows.append(r.row)
            } else {
                index[r.shard] = writes.count
                writes.append(ShardWrites(shard: r.shard, rows: [r.row]))
            }
        }
        return writes
    }
}

/// The `--row` syntax: `SHARD:KEY[=VALUE][:DIFF]`.
///
/// The shard ends at the first `:`; the key at the next `=` (a value follows) or `:` (a
/// diff follows); the value at the next `:`; the rest is the diff, a nonzero integer
/// (default 1; negative retracts). A literal `\`, `:` or `=` in the shard, key or value
/// is written `\\`, `\:` or `\=`; an `=` inside the value may also be left bare. Keys and
/// values are the UTF-8 bytes of the text; the value defaults to empty.
enum RowSyntax {
    static let synopsis = "SHARD:KEY[=VALUE][:DIFF]"

    private enum Part {
        case shard, key, value, diff
    }

    static func parse(_ text: String) throws(UsageError) -> ShardRow {
        var part = Part.shard
        var shard: [UInt8] = []
        var key: [UInt8] = []
        var value: [UInt8] = []
        var diffText: [UInt8] = []
        var escaping = false
        let backslash = UInt8(ascii: "\\")
        let colon = UInt8(ascii: ":")
        let equals = UInt8(ascii: "=")

        for byte in text.utf8 {
            var literal = escaping
            if escaping {
                guard byte == backslash || byte == colon || byte == equals else {
                    let shown = byte < 0x80 ? "\\\(Character(Unicode.Scalar(byte)))" : "a backslash before a non-ASCII character"
                    throw UsageError("--row \(text): unknown escape \(shown) (the escapes are \\\\, \\: and \\=)")
                }
                escaping = false
            } else if byte == backslash {
                escaping = true
                continue
            } else {
                switch (part, byte) {
                case (.shard, colon): part = .key
                case (.key, equals): part = .value
                case (.key, colon), (.value, colon): part = .diff
                case (.diff, colon):
                    throw UsageError(
                        "--row \(text): more than one ':' after the key (write a literal ':' as \\:); expected \(synopsis)"
                    )
                default: literal = true
                }
            }
            guard literal else { continue }
            switch part {
            case .shard: shard.append(byte)
            case .key: key.append(byte)
            case .value: value.append(byte)
            case .diff: diffText.append(byte)
            }
        }
        guard !escaping else { throw UsageError("--row \(text): ends with a lone backslash") }
        guard part != .shard else { throw UsageError("--row \(text): no ':' after the shard; expected \(synopsis)") }
        guard !shard.isEmpty else { throw UsageError("--row \(text): the shard is empty; expected \(synopsis)") }
        let shardRef: ShardRef
        do {
            shardRef = try ShardNames.ref(String(decoding: shard, as: UTF8.self))
        } catch {
            throw UsageError("--row \(text): \(error.message)")
        }
        var diff: Int64 = 1
        if part == .diff {
            let t = String(decoding: diffText, as: UTF8.self)
            guard let d = Int64(t), d != 0 else {
                throw UsageError(
                    "--row \(text): the diff \"\(t)\" is not a nonzero integer (write a literal ':' as \\:)")
            }
            diff = d
        }
        return ShardRow(shard: shardRef, row: RowWrite(key: key, value: value, diff: diff))
    }
}

/// The JSON lines `commit --stdin` and `--input` read: one object per line,
/// `{"shard": "orders", "key": "o1", "value": "v1", "diff": 1}`.
///
/// `shard` (a name or `s<uuid>`) and one of `key` (UTF-8 text) / `key_b64` (base64 bytes)
/// are required; `value` / `value_b64` default to empty and `diff` (a nonzero integer) to
/// 1. Other fields are refused, so typos do not pass silently. Blank lines are skipped.
enum JSONRowInput {
    static func parse(_ data: Data, source: String) throws(UsageError) -> [ShardRow] {
        var rows: [ShardRow] = []
        let newline = UInt8(ascii: "\n")
        for (n, line) in data.split(separator: newline, omittingEmptySubsequences: false).enumerated() {
            var trimmed = Array(line)
            while let last = trimmed.last, isSpace(last) { trimmed.removeLast() }
            trimmed.removeFirst(trimmed.prefix(while: isSpace).count)
            guard !trimmed.isEmpty else { continue }
            do {
                let row = try JSONDecoder().decode(JSONRow.self, from: Data(trimmed))
                rows.append(row.shardRow)
            } catch let e as UsageError {
                throw UsageError("\(source) line \(n + 1): \(e.message)")
            } catch DecodingError.typeMismatch {
                throw UsageError("\(source) line \(n + 1): expected a JSON object")
            } catch {
                throw UsageError("\(source) line \(n + 1): not valid JSON")
            }
        }
        return rows
    }

    private static func isSpace(_ b: UInt8) -> Bool {
        b == UInt8(ascii: " ") || b == UInt8(ascii: "\t") || b == UInt8(ascii: "\r")
    }
}

/// A JSON object key of any name, so unknown fields can be found and refused.
struct FieldKey: CodingKey, ExpressibleByStringLiteral, Hashable {
    var stringValue: String
    var intValue: Int? { nil }

    init(stringValue: String) {
        self.stringValue = stringValue
    }

    init?(intValue: Int) {
        nil
    }

    init(stringLiteral value: String) {
        self.stringValue = value
    }
}

/// One decoded input line. Field problems throw `UsageError` naming the field.
private struct JSONRow: Decodable {
    static let fields: Set<String> = ["shard", "key", "key_b64", "value", "value_b64", "diff"]

    var shardRow: ShardRow

    init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: FieldKey.self)
        let unknown = c.allKeys.map(\.stringValue).filter { !Self.fields.contains($0) }.sorted()
        guard unknown.isEmpty else {
            throw UsageError(
                "unknown field \(unknown.map { "\"\($0)\"" }.joined(separator: ", ")) "
                    + "(fields: shard, key or key_b64, value or value_b64, diff)")
        }
        guard let shardText = try Self.field(c, "shard", String.self, "a string") else {
            throw UsageError("\"shard\" is missing")
        }
        let shard = try ShardNames.ref(shardText)
        guard let key = try Self.bytes(c, "key") else { throw UsageError("\"key\" or \"key_b64\" is missing") }
        let value = try Self.bytes(c, "value") ?? []
        let diff = try Self.field(c, "diff", Int64.self, "a nonzero integer") ?? 1
        guard diff != 0 else { throw UsageError("\"diff\" must be a nonzero integer") }
        shardRow = ShardRow(shard: shard, row: RowWrite(key: key, value: value, diff: diff))
    }

    private static func field<T: Decodable>(
        _ c: KeyedDecodingContainer<FieldKey>, _ name: String, _ type: T.Type, _ what: String
    ) throws(UsageError) -> T? {
        do {
            return try c.decodeIfPresent(type, forKey: FieldKey(stringValue: name))
        } catch {
            throw UsageError("\"\(name)\" must be \(what)")
        }
    }

    /// `name` as UTF-8 text or `name_b64` as base64, at most one of them.
    private static func bytes(_ c: KeyedDecodingContainer<FieldKey>, _ name: String) throws(UsageError) -> [UInt8]? {
        let text = try field(c, name, String.self, "a string")
        let base64 = try field(c, name + "_b64", String.self, "a base64 string")
        switch (text, base64) {
        case (let t?, nil):
            return Array(t.utf8)
        case (nil, let b?):
            guard let data = Data(base64Encoded: b) else { throw UsageError("\"\(name)_b64\" is not valid base64") }
            return Array(data)
        case (nil, nil):
            return nil
        case (.some, .some):
            throw UsageError("give \"\(name)\" or \"\(name)_b64\", not both")
        }
    }
}
