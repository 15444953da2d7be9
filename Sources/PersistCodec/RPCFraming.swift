import PersistCore

/// The framing every RPC here shares (the consensus RPC and the coordinator RPC).
///
/// A frame is: payload length u32 LE | payload. The payload is: version u8 | kind u8 |
/// request id u64 LE | body | CRC32C u32 LE of the payload before it. The kind says both
/// which protocol and which direction, so a client that reaches the wrong kind of server
/// gets a clear refusal instead of a misread.
public enum RPCFraming {
    public static let currentVersion: UInt8 = 1
    /// Frames larger than this are refused before anything is allocated for them.
    public static let maxPayloadLength = 64 << 20
    /// Length prefix.
    public static let prefixLength = 4
    /// version + kind + id + a one-byte tag + checksum.
    static let minimumPayloadLength = 15

    public enum Kind {
        public static let consensusRequest: UInt8 = 1
        public static let consensusResponse: UInt8 = 2
        public static let coordinatorRequest: UInt8 = 3
        public static let coordinatorResponse: UInt8 = 4

        static func name(_ kind: UInt8) -> String {
            switch kind {
            case consensusRequest: "a consensus request"
            case consensusResponse: "a consensus response"
            case coordinatorRequest: "a coordinator request"
            case coordinatorResponse: "a coordinator response"
            default: "kind \(kind)"
            }
        }
    }

    /// The payload length announced by a frame's 4-byte prefix, checked against the
    /// limits before anything is buffered for it.
    public static func payloadLength(prefix: some Collection<UInt8>) throws(CodecError) -> Int {
        var r = ByteReader(Array(prefix.prefix(prefixLength)))
        let n = Int(try r.readU32("rpc frame length"))
        guard n >= minimumPayloadLength, n <= maxPayloadLength else {
            throw .lengthOutOfRange(field: "rpc frame length", length: UInt64(n), limit: UInt64(maxPayloadLength))
        }
        return n
    }

    /// A whole frame (prefix included) whose body `body` writes.
    static func frame(kind: UInt8, id: UInt64, _ body: (inout ByteWriter) -> Void) -> [UInt8] {
        var w = ByteWriter(capacity: 64)
        w.writeU32(0)  // length, patched below
        w.writeU8(currentVersion)
        w.writeU8(kind)
        w.writeU64(id)
        body(&w)
        let crc = w.bytes.withUnsafeBytes { CRC32C.checksum(UnsafeRawBufferPointer(rebasing: $0[prefixLength...])) }
        w.writeU32(crc)
        w.patchU32(UInt32(w.count - prefixLength), at: 0)
        return w.bytes
    }

    /// Verifies the checksum, version and kind of a payload, and returns a reader at the
    /// request id.
    static func open(_ payload: [UInt8], kind: UInt8, format: String) throws(CodecError) -> ByteReader {
        var r = try ByteReader.verifyingTrailingChecksum(payload, format: format, minimumBody: 11)
        let version = try r.readU8("rpc version")
        guard version == currentVersion else { throw .unsupportedVersion(format: format, version: Int(version)) }
        let k = try r.readU8("rpc kind")
        guard k == kind else {
            throw .invalidValue(field: "rpc kind", reason: "expected \(Kind.name(kind)), got \(Kind.name(k))")
        }
        return r
    }

    /// The request id at its fixed place in a payload, without checking anything else
    /// (the payload is verified in full later, off the event loop); nil if too short.
    public static func peekID(_ payload: [UInt8]) -> UInt64? {
        guard payload.count >= minimumPayloadLength else { return nil }
        var id: UInt64 = 0
        for i in 0..<8 { id |= UInt64(payload[2 + i]) << (8 * UInt64(i)) }
        return id
    }

    /// The request id of a payload whose framing is sound but whose body could not be
    /// decoded, so the server can answer it; nil when the framing cannot be trusted.
    static func requestID(ofDamaged payload: [UInt8], kind: UInt8, format: String) -> UInt64? {
        guard var r = try? open(payload, kind: kind, format: format) else { return nil }
        return try? r.readU64("rpc request id")
    }
}
