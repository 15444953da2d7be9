/// How consensus keys are stored in the `shard` text column.
///
/// PostgreSQL's text cannot hold a NUL character, and the Consensus contract allows any
/// key. A key is stored as itself unless it contains `%` or NUL; those two characters
/// are written as `%25` and `%00`. The mapping is one-to-one, so equal keys are equal
/// rows and different keys different rows, and persist's own keys (shard ids) are stored
/// unchanged, readable by anyone looking at the table.
enum ShardKeyEncoding {
    static func encode(_ key: String) -> String {
        guard key.utf8.contains(where: { $0 == 0x25 || $0 == 0 }) else { return key }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(key.utf8.count + 8)
        for b in key.utf8 {
            switch b {
            case 0x25: bytes += Array("%25".utf8)
            case 0: bytes += Array("%00".utf8)
            default: bytes.append(b)
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The key stored as `stored`, or nil if `stored` is not an encoding this type makes
    /// (a `%` not followed by `25` or `00`).
    static func decode(_ stored: String) -> String? {
        guard stored.utf8.contains(0x25) else { return stored }
        var out: [UInt8] = []
        var bytes = stored.utf8.makeIterator()
        while let b = bytes.next() {
            guard b == 0x25 else {
                out.append(b)
                continue
            }
            switch (bytes.next(), bytes.next()) {
            case (0x32?, 0x35?): out.append(0x25)  // "25"
            case (0x30?, 0x30?): out.append(0)  // "00"
            default: return nil
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
