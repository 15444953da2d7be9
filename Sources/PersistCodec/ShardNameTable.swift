import PersistCore

/// The transaction coordinator's durable map from shard names to shard ids, stored as
/// one consensus value and replaced by compare-and-set (several coordinators may share
/// it).
///
/// Invariants, checked by `insert` and by `decode`: every name satisfies
/// `CoordinatorRPC.isValidShardName`, names are unique, and ids are unique. Entries are
/// kept in ascending name order, so equal tables encode to equal bytes.
public struct ShardNameTable: Hashable, Sendable {
    /// One named shard.
    public struct Entry: Hashable, Sendable {
        public var name: String
        public var id: ShardID

        public init(name: String, id: ShardID) {
            self.name = name
            self.id = id
        }
    }

    /// Every entry, ascending by name (by the names' UTF-8 bytes).
    public private(set) var entries: [Entry]
    private var byName: [String: ShardID]
    private var byID: [ShardID: String]

    /// An empty table.
    public init() {
        entries = []
        byName = [:]
        byID = [:]
    }

    /// A table holding `entries`; nil if a name is invalid or a name or id repeats.
    public init?(_ entries: [Entry]) {
        self.init()
        for e in entries {
            guard case .inserted = insert(name: e.name, id: e.id) else { return nil }
        }
    }

    public var count: Int { entries.count }
    public var isEmpty: Bool { entries.isEmpty }

    /// The id of the shard named `name`, if any.
    public func id(named name: String) -> ShardID? { byName[name] }

    /// The name of the shard `id`, if any.
    public func name(of id: ShardID) -> String? { byID[id] }

    /// What `insert` did.
    public enum InsertOutcome: Hashable, Sendable {
        /// The entry is new.
        case inserted
        /// The name is already taken, by the shard `existing` (which may be `id` itself).
        case nameTaken(existing: ShardID)
        /// The id already has another name.
        case idTaken(existingName: String)
        /// The name breaks `CoordinatorRPC.isValidShardName`.
        case invalidName
    }

    /// Adds `name -> id` unless the name is invalid or the name or id is already used;
    /// the table is unchanged in those cases.
    @discardableResult
    public mutating func insert(name: String, id: ShardID) -> InsertOutcome {
        guard CoordinatorRPC.isValidShardName(name) else { return .invalidName }
        if let existing = byName[name] { return .nameTaken(existing: existing) }
        if let existingName = byID[id] { return .idTaken(existingName: existingName) }
        let key = Array(name.utf8)
        let index = entries.firstIndex { key.lexicographicallyPrecedes($0.name.utf8) } ?? entries.count
        entries.insert(Entry(name: name, id: id), at: index)
        byName[name] = id
        byID[id] = name
        return .inserted
    }

    public static func == (a: ShardNameTable, b: ShardNameTable) -> Bool { a.entries == b.entries }

    public func hash(into hasher: inout Hasher) { hasher.combine(entries) }
}

extension ShardNameTable {
    static let format = "shard name table"
    /// `TWNT`.
    public static let magic: [UInt8] = [0x54, 0x57, 0x4E, 0x54]
    public static let currentVersion: UInt8 = 1
    /// Magic, version, and a count of at least one byte.
    static let minimumBody = 6
    /// An entry is at least a one-byte length, a one-byte name and a 16-byte id.
    static let minimumEntrySize = 18

    /// Layout (version 1): magic(4) | version u8 | entry count varint | per entry, in
    /// ascending name order: name (varint length + UTF-8) | shard id(16) | CRC32C u32 LE
    /// of every preceding byte.
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 16 + entries.count * 48)
        w.writeBytes(Self.magic)
        w.writeU8(Self.currentVersion)
        w.writeVarint(UInt64(entries.count))
        for e in entries {
            w.writeString(e.name)
            w.writeShardID(e.id)
        }
        w.writeTrailingChecksum()
        return w.bytes
    }

    /// Decodes and verifies a table from untrusted bytes. Throws `CodecError` for a bad
    /// magic or version, a checksum mismatch, truncation, trailing bytes, an invalid
    /// name, names out of order or repeated, or an id used twice.
    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> ShardNameTable {
        try checkHeader(bytes, magic: magic, version: currentVersion, format: format)
        var r = try ByteReader.verifyingTrailingChecksum(bytes, format: format, minimumBody: minimumBody)
        _ = try r.skip(5, "\(format) header")
        let n = try r.readCount("\(format) entry count", minItemSize: minimumEntrySize)
        var table = ShardNameTable()
        var previous: [UInt8]?
        for _ in 0..<n {
            let name = try r.readString("shard name", limit: CoordinatorRPC.maxName)
            let id = try r.readShardID("shard name table id")
            let key = Array(name.utf8)
            if let p = previous, !p.lexicographicallyPrecedes(key) {
                throw .invalidValue(field: "shard name", reason: "\"\(name)\" is out of order or repeated")
            }
            previous = key
            switch table.insert(name: name, id: id) {
            case .inserted:
                break
            case .invalidName:
                throw .invalidValue(field: "shard name", reason: "\"\(name.prefix(64))\" is not a valid shard name")
            case .nameTaken:
                throw .invalidValue(field: "shard name", reason: "\"\(name)\" is repeated")
            case .idTaken(let other):
                throw .invalidValue(field: "shard name table id", reason: "\(id) is named both \"\(other)\" and \"\(name)\"")
            }
        }
        try r.expectEnd(format)
        return table
    }
}
