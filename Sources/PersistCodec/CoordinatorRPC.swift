import PersistCore

/// A data shard as a client names it: by the name it was created with, or by its id.
public enum ShardRef: Hashable, Sendable, CustomStringConvertible {
    case name(String)
    case id(ShardID)

    public var description: String {
        switch self {
        case .name(let n): n
        case .id(let id): "\(id)"
        }
    }
}

/// One row of a commit: `diff` copies of `(key, value)` (negative to retract).
public struct RowWrite: Hashable, Sendable {
    public var key: [UInt8]
    public var value: [UInt8]
    public var diff: Int64

    public init(key: [UInt8], value: [UInt8] = [], diff: Int64 = 1) {
        self.key = key
        self.value = value
        self.diff = diff
    }
}

/// The rows a commit writes to one shard.
public struct ShardWrites: Hashable, Sendable {
    public var shard: ShardRef
    public var rows: [RowWrite]

    public init(shard: ShardRef, rows: [RowWrite]) {
        self.shard = shard
        self.rows = rows
    }
}

/// A data shard the coordinator knows: its name, id, and whether it is registered with
/// the txns shard at the coordinator's latest time (commits need it registered).
public struct ShardInfo: Hashable, Sendable {
    public var name: String
    public var id: ShardID
    public var registered: Bool

    public init(name: String, id: ShardID, registered: Bool) {
        self.name = name
        self.id = id
        self.registered = registered
    }
}

/// What `status` reports.
public struct CoordinatorStatus: Hashable, Sendable {
    public var txnsShard: ShardID
    /// Every commit so far is at a time below this.
    public var upper: Timestamp
    /// Reads below this are no longer possible (compacted).
    public var since: Timestamp
    public var shards: Int
    public var registered: Int
    /// Committed transactions (and registrations) not yet applied to their data shards.
    public var unapplied: Int

    public init(txnsShard: ShardID, upper: Timestamp, since: Timestamp, shards: Int, registered: Int, unapplied: Int) {
        self.txnsShard = txnsShard
        self.upper = upper
        self.since = since
        self.shards = shards
        self.registered = registered
        self.unapplied = unapplied
    }
}

/// A typed failure the coordinator answers with. The connection stays usable.
public struct CoordinatorError: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable, CaseIterable {
        /// No shard has this name or id.
        case unknownShard = "unknown_shard"
        /// The shard exists but is not registered at the time asked for.
        case notRegistered = "not_registered"
        /// The requested timestamp is closed; `nextUsable` is the earliest that may work.
        case timestampClosed = "timestamp_closed"
        /// The request is malformed or breaks a rule (empty commit, bad name, too big).
        case badRequest = "bad_request"
        /// Authentication failed or is missing.
        case rejected
        /// Storage failed; the message says whether the operation may have happened.
        case storage
        /// The coordinator is shutting down and takes no new work.
        case shuttingDown = "shutting_down"
    }

    public var code: Code
    public var message: String
    /// For `timestampClosed`: the earliest timestamp that may still be usable.
    public var nextUsable: Timestamp?

    public init(_ code: Code, _ message: String, nextUsable: Timestamp? = nil) {
        self.code = code
        self.message = message
        self.nextUsable = nextUsable
    }

    public var description: String {
        "\(code.rawValue): \(message)" + (nextUsable.map { " (next usable timestamp \($0))" } ?? "")
    }
}

/// A request to the transaction coordinator.
public enum CoordinatorRequest: Hashable, Sendable {
    /// Authenticates the connection with the shared token; must come first when the
    /// coordinator requires one.
    case hello(token: [UInt8])
    /// Creates a data shard named `name` (idempotent: an existing name answers its shard).
    case createShard(name: String)
    case listShards
    /// Registers shards with the txns shard at `at` (nil: the coordinator picks).
    case register(shards: [ShardRef], at: Timestamp?)
    /// Forgets shards at `at` (nil: the coordinator picks).
    case forget(shards: [ShardRef], at: Timestamp?)
    /// Commits the writes atomically at `at` (nil: the coordinator picks, and may group
    /// the commit with others that arrive together).
    case commit(writes: [ShardWrites], at: Timestamp?)
    /// The shard's consolidated contents at `asOf` (nil: the latest committed time).
    /// Answered by one `snapshot`, preceded by `updates` pieces when the contents are too
    /// large for one frame.
    case read(shard: ShardRef, asOf: Timestamp?)
    /// Like `read`, but every update at or before `asOf` keeps the time it was committed
    /// at (consolidated per key, value and time). Answered the same way.
    case readHistory(shard: ShardRef, asOf: Timestamp?)
    /// Streams the shard's contents at `from` (nil: latest) and every later change, as
    /// `updates` and `progress` answers under this request's id, until `unsubscribe`.
    case subscribe(shard: ShardRef, from: Timestamp?)
    /// Ends the subscription started by request `requestID`.
    case unsubscribe(requestID: UInt64)
    /// Allows reads below `since` to be compacted away.
    case compact(since: Timestamp)
    case status
}

/// The coordinator's answer (or, for a subscription, one of its answers).
public enum CoordinatorResponse: Hashable, Sendable {
    case helloOK
    case shard(ShardInfo)
    case shards([ShardInfo])
    /// A registration, forget, compaction or unsubscribe took effect (at this time).
    case done(at: Timestamp)
    /// The commit is durable and atomic at this timestamp.
    case committed(at: Timestamp)
    case snapshot(asOf: Timestamp, rows: [Update])
    /// Subscription: updates at their times, each at or after the last progress.
    case updates([Update])
    /// Subscription: everything before this time has been delivered.
    case progress(Timestamp)
    case status(CoordinatorStatus)
    case error(CoordinatorError)
}

/// Encoding of the coordinator RPC (framing: `RPCFraming`, kinds 3 and 4).
public enum CoordinatorRPC {
    static let format = "coordinator rpc frame"
    static let maxName = 256
    static let maxKey = 1 << 20
    static let maxValue = 16 << 20

    /// Whether `name` may name a shard: 1-256 bytes of letters, digits, `_`, `-`, `.`,
    /// `/` and `:` (printable, no spaces, so it is safe in logs and command lines).
    public static func isValidShardName(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...maxName).contains(bytes.count) else { return false }
        return bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
                || b == UInt8(ascii: "_") || b == UInt8(ascii: "-") || b == UInt8(ascii: ".")
                || b == UInt8(ascii: "/") || b == UInt8(ascii: ":")
        }
    }

    // MARK: Encoding

    public static func encode(request: CoordinatorRequest, id: UInt64) -> [UInt8] {
        RPCFraming.frame(kind: RPCFraming.Kind.coordinatorRequest, id: id) { w in
            switch request {
            case .hello(let token):
                w.writeU8(1)
                w.writeLengthPrefixed(token)
            case .createShard(let name):
                w.writeU8(2)
                w.writeString(name)
            case .listShards:
                w.writeU8(3)
            case .register(let shards, let at):
                w.writeU8(4)
                writeRefs(&w, shards)
                w.writeOptionalTimestamp(at)
            case .forget(let shards, let at):
                w.writeU8(5)
                writeRefs(&w, shards)
                w.writeOptionalTimestamp(at)
            case .commit(let writes, let at):
                w.writeU8(6)
                w.writeVarint(UInt64(writes.count))
                for sw in writes {
                    writeRef(&w, sw.shard)
                    w.writeVarint(UInt64(sw.rows.count))
                    for row in sw.rows {
                        w.writeLengthPrefixed(row.key)
                        w.writeLengthPrefixed(row.value)
                        w.writeI64(row.diff)
                    }
                }
                w.writeOptionalTimestamp(at)
            case .read(let shard, let asOf):
                w.writeU8(7)
                writeRef(&w, shard)
                w.writeOptionalTimestamp(asOf)
            case .subscribe(let shard, let from):
                w.writeU8(8)
                writeRef(&w, shard)
                w.writeOptionalTimestamp(from)
            case .unsubscribe(let requestID):
                w.writeU8(9)
                w.writeU64(requestID)
            case .compact(let since):
                w.writeU8(10)
                w.writeU64(since)
            case .status:
                w.writeU8(11)
            case .readHistory(let shard, let asOf):
                w.writeU8(12)
                writeRef(&w, shard)
                w.writeOptionalTimestamp(asOf)
            }
        }
    }

    public static func encode(response: CoordinatorResponse, id: UInt64) -> [UInt8] {
        RPCFraming.frame(kind: RPCFraming.Kind.coordinatorResponse, id: id) { w in
            switch response {
            case .helloOK:
                w.writeU8(1)
            case .shard(let info):
                w.writeU8(2)
                writeInfo(&w, info)
            case .shards(let infos):
                w.writeU8(3)
                w.writeVarint(UInt64(infos.count))
                for info in infos { writeInfo(&w, info) }
            case .done(let at):
                w.writeU8(4)
                w.writeU64(at)
            case .committed(let at):
                w.writeU8(5)
                w.writeU64(at)
            case .snapshot(let asOf, let rows):
                w.writeU8(6)
                w.writeU64(asOf)
                writeUpdates(&w, rows)
            case .updates(let rows):
                w.writeU8(7)
                writeUpdates(&w, rows)
            case .progress(let ts):
                w.writeU8(8)
                w.writeU64(ts)
            case .status(let s):
                w.writeU8(9)
                w.writeShardID(s.txnsShard)
                w.writeU64(s.upper)
                w.writeU64(s.since)
                w.writeVarint(UInt64(s.shards))
                w.writeVarint(UInt64(s.registered))
                w.writeVarint(UInt64(s.unapplied))
            case .error(let e):
                w.writeU8(10)
                w.writeString(e.code.rawValue)
                w.writeString(e.message)
                w.writeOptionalTimestamp(e.nextUsable)
            }
        }
    }

    static func writeRef(_ w: inout ByteWriter, _ ref: ShardRef) {
        switch ref {
        case .name(let n):
            w.writeU8(1)
            w.writeString(n)
        case .id(let id):
            w.writeU8(2)
            w.writeShardID(id)
        }
    }

    static func writeRefs(_ w: inout ByteWriter, _ refs: [ShardRef]) {
        w.writeVarint(UInt64(refs.count))
        for r in refs { writeRef(&w, r) }
    }

    static func writeInfo(_ w: inout ByteWriter, _ info: ShardInfo) {
        w.writeString(info.name)
        w.writeShardID(info.id)
        w.writeU8(info.registered ? 1 : 0)
    }

    static func writeUpdates(_ w: inout ByteWriter, _ rows: [Update]) {
        w.writeVarint(UInt64(rows.count))
        for u in rows {
            w.writeLengthPrefixed(u.key)
            w.writeLengthPrefixed(u.value)
            w.writeU64(u.time)
            w.writeI64(u.diff)
        }
    }

    // MARK: Decoding (untrusted bytes: every failure is a CodecError)

    /// The request id of a request whose framing is sound but whose body is not, so the
    /// coordinator can answer it with `badRequest`; nil when the framing is broken.
    public static func requestID(ofDamagedRequest payload: [UInt8]) -> UInt64? {
        RPCFraming.requestID(ofDamaged: payload, kind: RPCFraming.Kind.coordinatorRequest, format: format)
    }

    /// Decodes a request payload (the bytes after the length prefix).
    public static func decodeRequest(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, request: CoordinatorRequest) {
        var r = try RPCFraming.open(payload, kind: RPCFraming.Kind.coordinatorRequest, format: format)
        let id = try r.readU64("rpc request id")
        let request: CoordinatorRequest
        switch try r.readU8("coordinator request op") {
        case 1: request = .hello(token: try r.readLengthPrefixed("hello token", limit: 4096))
        case 2: request = .createShard(name: try r.readString("shard name", limit: maxName))
        case 3: request = .listShards
        case 4: request = .register(shards: try readRefs(&r), at: try r.readOptionalTimestamp("register at"))
        case 5: request = .forget(shards: try readRefs(&r), at: try r.readOptionalTimestamp("forget at"))
        case 6:
            let n = try r.readCount("commit shards", minItemSize: 2)
            var writes: [ShardWrites] = []
            writes.reserveCapacity(n)
            for _ in 0..<n {
                let shard = try readRef(&r)
                let m = try r.readCount("commit rows", minItemSize: 10)
                var rows: [RowWrite] = []
                rows.reserveCapacity(m)
                for _ in 0..<m {
                    let key = try r.readLengthPrefixed("row key", limit: maxKey)
                    let value = try r.readLengthPrefixed("row value", limit: maxValue)
                    rows.append(RowWrite(key: key, value: value, diff: try r.readI64("row diff")))
                }
                writes.append(ShardWrites(shard: shard, rows: rows))
            }
            request = .commit(writes: writes, at: try r.readOptionalTimestamp("commit at"))
        case 7: request = .read(shard: try readRef(&r), asOf: try r.readOptionalTimestamp("read as of"))
        case 8: request = .subscribe(shard: try readRef(&r), from: try r.readOptionalTimestamp("subscribe from"))
        case 9: request = .unsubscribe(requestID: try r.readU64("unsubscribe request id"))
        case 10: request = .compact(since: try r.readU64("compact since"))
        case 11: request = .status
        case 12: request = .readHistory(shard: try readRef(&r), asOf: try r.readOptionalTimestamp("read history as of"))
        case let op: throw .invalidValue(field: "coordinator request op", reason: "unknown op \(op)")
        }
        try r.expectEnd(format)
        return (id, request)
    }

    /// Decodes a response payload (the bytes after the length prefix).
    public static func decodeResponse(_ payload: [UInt8]) throws(CodecError) -> (id: UInt64, response: CoordinatorResponse) {
        var r = try RPCFraming.open(payload, kind: RPCFraming.Kind.coordinatorResponse, format: format)
        let id = try r.readU64("rpc response id")
        let response: CoordinatorResponse
        switch try r.readU8("coordinator response tag") {
        case 1: response = .helloOK
        case 2: response = .shard(try readInfo(&r))
        case 3:
            let n = try r.readCount("shards", minItemSize: 18)
            var infos: [ShardInfo] = []
            infos.reserveCapacity(n)
            for _ in 0..<n { infos.append(try readInfo(&r)) }
            response = .shards(infos)
        case 4: response = .done(at: try r.readU64("done at"))
        case 5: response = .committed(at: try r.readU64("committed at"))
        case 6: response = .snapshot(asOf: try r.readU64("snapshot as of"), rows: try readUpdates(&r))
        case 7: response = .updates(try readUpdates(&r))
        case 8: response = .progress(try r.readU64("progress"))
        case 9:
            let txns = try r.readShardID("txns shard")
            let upper = try r.readU64("upper")
            let since = try r.readU64("since")
            let shards = try readSmallCount(&r, "shard count")
            let registered = try readSmallCount(&r, "registered count")
            let unapplied = try readSmallCount(&r, "unapplied count")
            response = .status(
                CoordinatorStatus(
                    txnsShard: txns, upper: upper, since: since, shards: shards, registered: registered, unapplied: unapplied))
        case 10:
            let codeText = try r.readString("error code", limit: 64)
            guard let code = CoordinatorError.Code(rawValue: codeText) else {
                throw .invalidValue(field: "error code", reason: "unknown code \(codeText)")
            }
            let message = try r.readString("error message", limit: 1 << 16)
            response = .error(CoordinatorError(code, message, nextUsable: try r.readOptionalTimestamp("next usable")))
        case let t: throw .invalidValue(field: "coordinator response tag", reason: "unknown tag \(t)")
        }
        try r.expectEnd(format)
        return (id, response)
    }

    static func readRef(_ r: inout ByteReader) throws(CodecError) -> ShardRef {
        switch try r.readU8("shard reference") {
        case 1: return .name(try r.readString("shard name", limit: maxName))
        case 2: return .id(try r.readShardID("shard id"))
        case let t: throw .invalidValue(field: "shard reference", reason: "tag \(t)")
        }
    }

    static func readRefs(_ r: inout ByteReader) throws(CodecError) -> [ShardRef] {
        let n = try r.readCount("shards", minItemSize: 2)
        var refs: [ShardRef] = []
        refs.reserveCapacity(n)
        for _ in 0..<n { refs.append(try readRef(&r)) }
        return refs
    }

    static func readInfo(_ r: inout ByteReader) throws(CodecError) -> ShardInfo {
        let name = try r.readString("shard name", limit: maxName)
        let id = try r.readShardID("shard id")
        switch try r.readU8("registered") {
        case 0: return ShardInfo(name: name, id: id, registered: false)
        case 1: return ShardInfo(name: name, id: id, registered: true)
        case let t: throw .invalidValue(field: "registered", reason: "flag \(t)")
        }
    }

    static func readUpdates(_ r: inout ByteReader) throws(CodecError) -> [Update] {
        let n = try r.readCount("rows", minItemSize: 18)
        var rows: [Update] = []
        rows.reserveCapacity(n)
        for _ in 0..<n {
            let key = try r.readLengthPrefixed("row key", limit: maxKey)
            let value = try r.readLengthPrefixed("row value", limit: maxValue)
            let time = try r.readU64("row time")
            rows.append(Update(key: key, value: value, time: time, diff: try r.readI64("row diff")))
        }
        return rows
    }

    static func readSmallCount(_ r: inout ByteReader, _ field: String) throws(CodecError) -> Int {
        let v = try r.readVarint(field)
        guard v <= UInt64(Int32.max) else { throw .invalidValue(field: field, reason: "\(v) is implausibly large") }
        return Int(v)
    }
}
