/// A storage key compared by its exact UTF-8 bytes.
///
/// Swift's `String` equality treats canonically equivalent strings as equal ("é" as one
/// scalar equals "e" plus a combining accent), but storage keys are byte strings: S3,
/// files and SQL text columns all keep them apart. Backends index by `ByteKey` so that
/// every implementation agrees on which keys are the same.
struct ByteKey: Hashable, Comparable, Sendable {
    let utf8: [UInt8]

    init(_ s: String) { utf8 = Array(s.utf8) }
    init(utf8: [UInt8]) { self.utf8 = utf8 }

    var string: String { String(decoding: utf8, as: UTF8.self) }

    func hasPrefix(_ p: ByteKey) -> Bool { utf8.starts(with: p.utf8) }

    static func < (a: ByteKey, b: ByteKey) -> Bool { a.utf8.lexicographicallyPrecedes(b.utf8) }
}
