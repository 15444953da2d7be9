import PersistCore

/// A request to a consensus server (the `consensus` process's binary RPC).
public enum ConsensusRequest: Hashable, Sendable {
    /// Authenticates the connection with the shared token; must come first.
    case hello(token: [UInt8])
    case head(key: String)
    case compareAndSet(key: String, expected: SeqNo?, new: VersionedData)
    case scan(key: String, from: SeqNo, limit: UInt64)
    case truncate(key: String, seqno: SeqNo)
    case listKeys
}

/// A consensus server's answer to one request.
public enum ConsensusResponse: Hashable, Sendable {
    case helloOK
    case head(VersionedData?)
    case compareAndSet(CaSResult)
    /// Versions in ascending order. `truncated` is set when the server stopped before
    /// the requested limit to keep the frame small: more versions may follow the last
    /// one, and the client asks again from there.
    case scan([VersionedData], truncated: Bool)
    case truncate(deleted: UInt64)
    case listKeys([String])
    /// The request failed; `determinacy` says whether it may have taken effect.
    case error(StorageError)
}

/// The consensus RPC's frames (issue 5: length-prefixed, request ids, answered out of
/// order).
///
/// A frame is: payload length u32 LE | payload. The payload is: version u8 | kind u8
/// (1 request, 2 response) | request id u64 LE | tag u8 | body | CRC32C u32 LE of the
/// payload before it. Strings and byte strings are varint-length-prefixed; optional
/// values carry a 0/1 tag; seqnos are u64 LE limited to `Int64.max`.
public enum ConsensusRPC {
    public static let currentVersion = RPCFraming.currentVersion
    /// Frames larger than this are refused before anything is allocated for them.
    public static let maxPayloadLength = RPCFraming.maxPayloadLength
    /// Length prefix.
    public static let prefixLength = RPCFraming.prefixLength
    static let requestKind = RPCFraming.Kind.consensusRequest
    static let responseKind = RPCFraming.Kind.consensusResponse
    static let format = "consensus rpc frame"
    static let maxKey = 64 << 10

    /// The payload length announced by a frame's 4-byte prefix, checked against the
    /// limit. Throws for a length below the smallest frame or above `maxPayloadLength`.
    public static func payloadLength(prefix: some Collection<UInt8>) throws(CodecError) -> Int {
        try RPCFraming.payloadLength(prefix: prefix)
    }

    // MARK: Encoding

    public static func encode(request: ConsensusRequest, id: UInt64) -> [UInt8] {
        frame(kind: requestKind, id: id) { w in
            switch request {
            case .hello(let token):
                w.writeU8(1)
                w.writeLengthPrefixed(token)
            case .head(let key):
                w.writeU8(2)
                w.writeString(key)
            case .compareAndSet(let key, let expected, let new):
                w.writeU8(3)
                w.writeString(key)
                writeOptionalSeqNo(&w, expected)
                writeVersioned(&w, new)
            case .scan(let key, let from, let limit):
                w.writeU8(4)
                w.writeString(key)
                w.writeU64(from.rawValue)
                w.writeU64(limit)
            case .truncate(let key, let seqno):
                w.writeU8(5)
                w.writeString(key)
                w.writeU64(seqno.rawValue)
            case .listKeys:
                w.writeU8(6)
            }
        }
    }

    public static func encode(response: ConsensusResponse, id: UInt64) -> [UInt8] {
        frame(kind: responseKind, id: id) { w in
            switch response {
            case .helloOK:
                w.writeU8(1)
            case .head(let v):
                w.writeU8(2)
                writeOptionalVersioned(&w, v)
            case .compareAndSet(.committed):
                w.writeU8(3)
                w.writeU8(0)
            case .compareAndSet(.expectationMismatch(let current)):
                w.writeU8(3)
                w.writeU8(1)
                writeOptionalVersioned(&w, current)
            case .scan(let vs, let truncated):
                w.writeU8(4)
                w.writeVarint(UInt64(vs.count))
                for v in vs { writeVersioned(&w, v) }
                w.writeU8(truncated ? 1 : 0)
            case .truncate(let n):
                w.writeU8(5)
                w.writeU64(n)
            case .listKeys(let keys):
                w.writeU8(6)
                w.writeVarint(UInt64(keys.count))
                for k in keys { w.writeString(k) }
            case .error(let e):
                w.writeU8(7)
                w.writeString(e.code.rawValue)
                w.writeU8(e.isDeterminate ? 1 : 2)
                w.writeString(e.message)
            }
        }
    }

    static func frame(kind: UInt8, id: UInt64, _ body: (inout ByteWriter) -> Void) -> [UInt8] {
        RPCFraming.frame(kind: kind, id: id, body)
    }

    static func writeVersioned(_ w: inout ByteWriter, _ v: VersionedData) {
        w.writeU64(v.seqno.rawValue)
        w.writeLengthPrefixed(v.data)
    }

    static func writeOptionalVersioned(_ w: inout ByteWriter, _ v: VersionedData?) {
        guard let v else { return w.writeU8(0) }
        w.writeU8(1)
        writeVersioned(&w, v)
    }

    static func writeOptionalSeqNo(_ w: inout ByteWriter, _ s: SeqNo?) {
        guard let s else { return w.writeU8(0) }
        w.writeU8(1)
        w.writeU64(s.rawValue)
    }

    // MARK: Decoding (untrusted bytes: every failure is a CodecError)

    /// Decodes a request payload (the bytes after the length prefix).
    public static func decodeRequest(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, request: ConsensusRequest) {
        var r = try open(payload, kind: requestKind)
        let id = try r.readU64("rpc request id")
        let request: ConsensusRequest
        switch try r.readU8("rpc request op") {
        case 1: request = .hello(token: try r.readLengthPrefixed("hello token", limit: 4096))
        case 2: request = .head(key: try r.readString("head key", limit: maxKey))
        case 3:
            let key = try r.readString("cas key", limit: maxKey)
            let expected = try readOptionalSeqNo(&r)
            request = .compareAndSet(key: key, expected: expected, new: try readVersioned(&r))
        case 4:
            let key = try r.readString("scan key", limit: maxKey)
            request = .scan(key: key, from: try readSeqNo(&r, "scan from"), limit: try r.readU64("scan limit"))
        case 5:
            let key = try r.readString("truncate key", limit: maxKey)
            request = .truncate(key: key, seqno: try readSeqNo(&r, "truncate seqno"))
        case 6: request = .listKeys
        case let op: throw .invalidValue(field: "rpc request op", reason: "unknown op \(op)")
        }
        try r.expectEnd(format)
        return (id, request)
    }

    /// The request id of a payload whose checksum, version and kind are valid but whose
    /// body could not be decoded (an unknown op, say): the server can then answer that
    /// request with an error and keep the connection. Nil when the framing itself cannot
    /// be trusted.
    public static func requestID(ofDamagedRequest payload: [UInt8]) -> UInt64? {
        RPCFraming.requestID(ofDamaged: payload, kind: requestKind, format: format)
    }

    /// Decodes a response payload (the bytes after the length prefix).
    public static func decodeResponse(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, response: ConsensusResponse) {
        var r = try open(payload, kind: responseKind)
        let id = try r.readU64("rpc response id")
        let response: ConsensusResponse
        switch try r.readU8("rpc response tag") {
        case 1: response = .helloOK
        case 2: response = .head(try readOptionalVersioned(&r))
        case 3:
            switch try r.readU8("cas outcome") {
            case 0: response = .compareAndSet(.committed)
            case 1: response = .compareAndSet(.expectationMismatch(current: try readOptionalVersioned(&r)))
            case let t: throw .invalidValue(field: "cas outcome", reason: "unknown outcome \(t)")
            }
        case 4:
            let n = try r.readCount("scan versions", minItemSize: 9)
            var vs: [VersionedData] = []
            vs.reserveCapacity(n)
            for _ in 0..<n { vs.append(try readVersioned(&r)) }
            switch try r.readU8("scan truncated") {
            case 0: response = .scan(vs, truncated: false)
            case 1: response = .scan(vs, truncated: true)
            case let t: throw .invalidValue(field: "scan truncated", reason: "flag \(t)")
            }
        case 5: response = .truncate(deleted: try r.readU64("truncate count"))
        case 6:
            let n = try r.readCount("keys", minItemSize: 1)
            var keys: [String] = []
            keys.reserveCapacity(n)
            for _ in 0..<n { keys.append(try r.readString("key", limit: maxKey)) }
            response = .listKeys(keys)
        case 7:
            let codeText = try r.readString("error code", limit: 64)
            guard let code = StorageError.Code(rawValue: codeText) else {
                throw .invalidValue(field: "error code", reason: "unknown code \(codeText)")
            }
            let determinacy: StorageError.Determinacy
            switch try r.readU8("error determinacy") {
            case 1: determinacy = .determinate
            case 2: determinacy = .indeterminate
            case let d: throw .invalidValue(field: "error determinacy", reason: "unknown value \(d)")
            }
            response = .error(StorageError(code, determinacy, try r.readString("error message", limit: 1 << 16)))
        case let t: throw .invalidValue(field: "rpc response tag", reason: "unknown tag \(t)")
        }
        try r.expectEnd(format)
        return (id, response)
    }

    /// Verifies the checksum, version and kind, and returns a reader at the request id.
    static func open(_ payload: [UInt8], kind: UInt8) throws(CodecError) -> ByteReader {
        try RPCFraming.open(payload, kind: kind, format: format)
    }

    static func readSeqNo(_ r: inout ByteReader, _ field: String) throws(CodecError) -> SeqNo {
        let raw = try r.readU64(field)
        guard let s = SeqNo(raw) else { throw .invalidValue(field: field, reason: "\(raw) exceeds Int64.max") }
        return s
    }

    static func readVersioned(_ r: inout ByteReader) throws(CodecError) -> VersionedData {
        let s = try readSeqNo(&r, "version seqno")
        return VersionedData(seqno: s, data: try r.readLengthPrefixed("version data", limit: maxPayloadLength))
    }

    static func readOptionalVersioned(_ r: inout ByteReader) throws(CodecError) -> VersionedData? {
        switch try r.readU8("optional version") {
        case 0: return nil
        case 1: return try readVersioned(&r)
        case let t: throw .invalidValue(field: "optional version", reason: "tag \(t)")
        }
    }

    static func readOptionalSeqNo(_ r: inout ByteReader) throws(CodecError) -> SeqNo? {
        switch try r.readU8("optional seqno") {
        case 0: return nil
        case 1: return try readSeqNo(&r, "expected seqno")
        case let t: throw .invalidValue(field: "optional seqno", reason: "tag \(t)")
        }
    }
}
