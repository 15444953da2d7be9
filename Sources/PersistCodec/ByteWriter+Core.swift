import PersistCore

extension ByteWriter {
    /// Tag 0 for the empty antichain, or tag 1 and the element as u64.
    public mutating func writeAntichain(_ a: Antichain) {
        if let e = a.element {
            writeU8(1)
            writeU64(e)
        } else {
            writeU8(0)
        }
    }

    /// The 16 raw bytes of the id.
    public mutating func writeShardID(_ id: ShardID) { writeBytes(id.bytes) }

    /// Tag 0 for nil, or tag 1 and the timestamp as u64.
    public mutating func writeOptionalTimestamp(_ t: Timestamp?) {
        if let t {
            writeU8(1)
            writeU64(t)
        } else {
            writeU8(0)
        }
    }
}

extension ByteReader {
    public mutating func readAntichain(_ field: String) throws(CodecError) -> Antichain {
        switch try readU8(field) {
        case 0: return .empty
        case 1: return Antichain(try readU64(field))
        case let tag: throw .invalidValue(field: field, reason: "antichain tag \(tag)")
        }
    }

    public mutating func readShardID(_ field: String) throws(CodecError) -> ShardID {
        let raw = try readBytes(16, field)
        do {
            return try ShardID(bytes: raw)
        } catch {
            throw .invalidValue(field: field, reason: error.description)
        }
    }

    public mutating func readOptionalTimestamp(_ field: String) throws(CodecError) -> Timestamp? {
        switch try readU8(field) {
        case 0: return nil
        case 1: return try readU64(field)
        case let tag: throw .invalidValue(field: field, reason: "optional tag \(tag)")
        }
    }
}
