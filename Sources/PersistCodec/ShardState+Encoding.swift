import PersistCore

// Encodings of the shard state (rollups, in blob) and of state diffs (consensus values).
// Both: magic(4) | version u8 | body | CRC32C u32 of everything before it. Maps are
// written in ascending key order, so equal states encode to equal bytes.

extension ByteWriter {
    mutating func writeSeqNo(_ s: SeqNo) { writeU64(s.rawValue) }

    mutating func writeRollup(_ r: HollowRollup) {
        writeString(r.key)
        writeU64(r.encodedSizeBytes)
    }

    mutating func writeLeasedReader(_ r: LeasedReaderState) {
        writeSeqNo(r.seqno)
        writeAntichain(r.since)
        writeU64(r.lastHeartbeatMs)
        writeU64(r.leaseDurationMs)
        writeString(r.purpose)
    }

    mutating func writeCriticalReader(_ r: CriticalReaderState) {
        writeAntichain(r.since)
        writeU64(r.opaque)
        writeString(r.opaqueCodec)
        writeString(r.purpose)
    }

    mutating func writeWriter(_ w: WriterState) {
        writeU64(w.lastHeartbeatMs)
        writeU64(w.leaseDurationMs)
        writeID(w.mostRecentWriteToken)
        writeAntichain(w.mostRecentWriteUpper)
        writeString(w.purpose)
    }

    mutating func writeMap<K: Comparable, V>(_ m: [K: V], key: (inout ByteWriter, K) -> Void, value: (inout ByteWriter, V) -> Void) {
        writeVarint(UInt64(m.count))
        for k in m.keys.sorted() {
            key(&self, k)
            if let v = m[k] { value(&self, v) }
        }
    }

    mutating func writeChanges<K, V>(
        _ changes: [MapChange<K, V>], key: (inout ByteWriter, K) -> Void, value: (inout ByteWriter, V) -> Void
    ) {
        writeVarint(UInt64(changes.count))
        for c in changes {
            switch c {
            case .insert(let k, let v):
                writeU8(1)
                key(&self, k)
                value(&self, v)
            case .update(let k, let old, let new):
                writeU8(2)
                key(&self, k)
                value(&self, old)
                value(&self, new)
            case .delete(let k, let v):
                writeU8(3)
                key(&self, k)
                value(&self, v)
            }
        }
    }

    mutating func writeValueChange<V>(_ c: ValueChange<V>?, _ value: (inout ByteWriter, V) -> Void) {
        guard let c else {
            writeU8(0)
            return
        }
        writeU8(1)
        value(&self, c.old)
        value(&self, c.new)
    }
}

extension ByteReader {
    mutating func readSeqNo(_ field: String) throws(CodecError) -> SeqNo {
        let raw = try readU64(field)
        guard let s = SeqNo(raw) else { throw .invalidValue(field: field, reason: "seqno \(raw) exceeds Int64.max") }
        return s
    }

    mutating func readRollup() throws(CodecError) -> HollowRollup {
        HollowRollup(key: try readString("rollup key", limit: Self.maxBlobKeyLength), encodedSizeBytes: try readU64("rollup size"))
    }

    mutating func readLeasedReader() throws(CodecError) -> LeasedReaderState {
        LeasedReaderState(
            seqno: try readSeqNo("reader seqno"), since: try readAntichain("reader since"),
            lastHeartbeatMs: try readU64("reader heartbeat"), leaseDurationMs: try readU64("reader lease"),
            purpose: try readString("reader purpose", limit: 4096))
    }

    mutating func readCriticalReader() throws(CodecError) -> CriticalReaderState {
        CriticalReaderState(
            since: try readAntichain("critical since"), opaque: try readU64("critical opaque"),
            opaqueCodec: try readString("critical opaque codec", limit: 256),
            purpose: try readString("critical purpose", limit: 4096))
    }

    mutating func readWriter() throws(CodecError) -> WriterState {
        WriterState(
            lastHeartbeatMs: try readU64("writer heartbeat"), leaseDurationMs: try readU64("writer lease"),
            mostRecentWriteToken: try readID("writer token"), mostRecentWriteUpper: try readAntichain("writer upper"),
            purpose: try readString("writer purpose", limit: 4096))
    }

    mutating func readMap<K: Comparable, V>(
        _ field: String, minItemSize: Int, key: (inout ByteReader) throws(CodecError) -> K,
        value: (inout ByteReader) throws(CodecError) -> V
    ) throws(CodecError) -> [K: V] {
        let n = try readCount(field, minItemSize: minItemSize)
        var out: [K: V] = [:]
        out.reserveCapacity(n)
        var previous: K?
        for _ in 0..<n {
            let k = try key(&self)
            if let p = previous, !(p < k) {
                throw .invalidValue(field: field, reason: "keys are not in strictly ascending order")
            }
            previous = k
            out[k] = try value(&self)
        }
        return out
    }

    mutating func readChanges<K, V>(
        _ field: String, key: (inout ByteReader) throws(CodecError) -> K, value: (inout ByteReader) throws(CodecError) -> V
    ) throws(CodecError) -> [MapChange<K, V>] {
        let n = try readCount(field, minItemSize: 2)
        var out: [MapChange<K, V>] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            switch try readU8(field) {
            case 1: out.append(.insert(try key(&self), try value(&self)))
            case 2: out.append(.update(try key(&self), old: try value(&self), new: try value(&self)))
            case 3: out.append(.delete(try key(&self), try value(&self)))
            case let tag: throw .invalidValue(field: field, reason: "change tag \(tag)")
            }
        }
        return out
    }

    mutating func readValueChange<V>(_ field: String, _ value: (inout ByteReader) throws(CodecError) -> V)
        throws(CodecError) -> ValueChange<V>?
    {
        switch try readU8(field) {
        case 0: return nil
        case 1: return ValueChange(old: try value(&self), new: try value(&self))
        case let tag: throw .invalidValue(field: field, reason: "optional tag \(tag)")
        }
    }
}

extension ShardState {
    /// `TWSR`.
    public static let magic: [UInt8] = [0x54, 0x57, 0x53, 0x52]
    public static let currentVersion: UInt8 = 1
    static let format = "shard state rollup"

    /// The rollup encoding of the whole state.
    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 256 + trace.batches.count * 128)
        w.writeBytes(Self.magic)
        w.writeU8(Self.currentVersion)
        w.writeShardID(shardID)
        w.writeSeqNo(seqno)
        w.writeU64(walltimeMs)
        w.writeString(hostname)
        w.writeString(applierVersion)
        w.writeString(keyCodec)
        w.writeString(valueCodec)
        w.writeSeqNo(lastGCReq)
        w.writeMap(rollups, key: { $0.writeSeqNo($1) }, value: { $0.writeRollup($1) })
        w.writeMap(leasedReaders, key: { $0.writeID($1) }, value: { $0.writeLeasedReader($1) })
        w.writeMap(criticalReaders, key: { $0.writeID($1) }, value: { $0.writeCriticalReader($1) })
        w.writeMap(writers, key: { $0.writeID($1) }, value: { $0.writeWriter($1) })
        w.writeAntichain(trace.since)
        w.writeAntichain(trace.upper)
        w.writeVarint(UInt64(trace.batches.count))
        for b in trace.batches { w.writeHollowBatch(b) }
        w.writeTrailingChecksum()
        return w.bytes
    }

    /// Decodes and verifies a rollup, including the trace's structural invariants
    /// (contiguous non-empty batches from `{0}` up to the trace's upper).
    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> ShardState {
        try checkHeader(bytes, magic: magic, version: currentVersion, format: format)
        var r = try ByteReader.verifyingTrailingChecksum(bytes, format: format, minimumBody: 5)
        _ = try r.skip(5, "rollup header")
        var s = ShardState(
            shardID: try r.readShardID("shard id"), seqno: try r.readSeqNo("seqno"), walltimeMs: try r.readU64("walltime"),
            hostname: try r.readString("hostname", limit: 4096), applierVersion: try r.readString("applier version", limit: 64),
            keyCodec: try r.readString("key codec", limit: 256), valueCodec: try r.readString("value codec", limit: 256))
        s.lastGCReq = try r.readSeqNo("last gc req")
        s.rollups = try r.readMap("rollups", minItemSize: 10, key: { (r) throws(CodecError) in try r.readSeqNo("rollup seqno") }, value: { (r) throws(CodecError) in try r.readRollup() })
        s.leasedReaders = try r.readMap("leased readers", minItemSize: 42, key: { (r) throws(CodecError) in try r.readID("reader id") }, value: { (r) throws(CodecError) in try r.readLeasedReader() })
        s.criticalReaders = try r.readMap("critical readers", minItemSize: 27, key: { (r) throws(CodecError) in try r.readID("critical id") }, value: { (r) throws(CodecError) in try r.readCriticalReader() })
        s.writers = try r.readMap("writers", minItemSize: 50, key: { (r) throws(CodecError) in try r.readID("writer id") }, value: { (r) throws(CodecError) in try r.readWriter() })
        let since = try r.readAntichain("trace since")
        let upper = try r.readAntichain("trace upper")
        let n = try r.readCount("trace batches", minItemSize: 12)
        var batches: [HollowBatch] = []
        batches.reserveCapacity(n)
        for _ in 0..<n { batches.append(try r.readHollowBatch()) }
        try r.expectEnd(format)
        s.trace = TraceState(since: since, upper: upper, batches: batches)
        try s.trace.validate()
        return s
    }
}

extension TraceState {
    /// Throws unless the batches are contiguous, non-empty intervals starting at `{0}`
    /// and ending at `upper`.
    public func validate() throws(CodecError) {
        var expectedLower = Antichain.minimum
        for b in batches {
            guard b.desc.lower == expectedLower else {
                throw .invalidValue(field: "trace", reason: "batch starts at \(b.desc.lower), expected \(expectedLower)")
            }
            guard b.desc.lower != b.desc.upper else {
                throw .invalidValue(field: "trace", reason: "empty interval batch at \(b.desc.lower)")
            }
            expectedLower = b.desc.upper
        }
        guard expectedLower == upper else {
            throw .invalidValue(field: "trace", reason: "batches end at \(expectedLower), upper is \(upper)")
        }
    }
}

extension StateDiff {
    /// `TWSD`.
    public static let magic: [UInt8] = [0x54, 0x57, 0x53, 0x44]
    public static let currentVersion: UInt8 = 1
    static let format = "shard state diff"

    public func encode() -> [UInt8] {
        var w = ByteWriter(capacity: 256)
        w.writeBytes(Self.magic)
        w.writeU8(Self.currentVersion)
        w.writeString(applierVersion)
        w.writeSeqNo(seqnoFrom)
        w.writeSeqNo(seqnoTo)
        w.writeU64(walltimeMs)
        w.writeString(latestRollupKey)
        w.writeValueChange(hostname) { $0.writeString($1) }
        w.writeValueChange(lastGCReq) { $0.writeSeqNo($1) }
        w.writeChanges(rollups, key: { $0.writeSeqNo($1) }, value: { $0.writeRollup($1) })
        w.writeChanges(leasedReaders, key: { $0.writeID($1) }, value: { $0.writeLeasedReader($1) })
        w.writeChanges(criticalReaders, key: { $0.writeID($1) }, value: { $0.writeCriticalReader($1) })
        w.writeChanges(writers, key: { $0.writeID($1) }, value: { $0.writeWriter($1) })
        w.writeValueChange(traceSince) { $0.writeAntichain($1) }
        w.writeValueChange(traceUpper) { $0.writeAntichain($1) }
        w.writeVarint(UInt64(insertedBatches.count))
        for b in insertedBatches { w.writeHollowBatch(b) }
        w.writeVarint(UInt64(deletedBatches.count))
        for b in deletedBatches { w.writeHollowBatch(b) }
        w.writeTrailingChecksum()
        return w.bytes
    }

    public static func decode(_ bytes: [UInt8]) throws(CodecError) -> StateDiff {
        try checkHeader(bytes, magic: magic, version: currentVersion, format: format)
        var r = try ByteReader.verifyingTrailingChecksum(bytes, format: format, minimumBody: 5)
        _ = try r.skip(5, "diff header")
        var d = StateDiff(
            applierVersion: try r.readString("applier version", limit: 64), seqnoFrom: try r.readSeqNo("seqno from"),
            seqnoTo: try r.readSeqNo("seqno to"), walltimeMs: try r.readU64("walltime"),
            latestRollupKey: try r.readString("latest rollup key", limit: Self.maxKey))
        guard d.seqnoFrom < d.seqnoTo else {
            throw .invalidValue(field: "diff seqnos", reason: "\(d.seqnoFrom) is not before \(d.seqnoTo)")
        }
        d.hostname = try r.readValueChange("hostname change") { (r) throws(CodecError) in try r.readString("hostname", limit: 4096) }
        d.lastGCReq = try r.readValueChange("gc change") { (r) throws(CodecError) in try r.readSeqNo("last gc req") }
        d.rollups = try r.readChanges("rollup changes", key: { (r) throws(CodecError) in try r.readSeqNo("rollup seqno") }, value: { (r) throws(CodecError) in try r.readRollup() })
        d.leasedReaders = try r.readChanges("reader changes", key: { (r) throws(CodecError) in try r.readID("reader id") }, value: { (r) throws(CodecError) in try r.readLeasedReader() })
        d.criticalReaders = try r.readChanges("critical changes", key: { (r) throws(CodecError) in try r.readID("critical id") }, value: { (r) throws(CodecError) in try r.readCriticalReader() })
        d.writers = try r.readChanges("writer changes", key: { (r) throws(CodecError) in try r.readID("writer id") }, value: { (r) throws(CodecError) in try r.readWriter() })
        d.traceSince = try r.readValueChange("since change") { (r) throws(CodecError) in try r.readAntichain("trace since") }
        d.traceUpper = try r.readValueChange("upper change") { (r) throws(CodecError) in try r.readAntichain("trace upper") }
        let inserted = try r.readCount("inserted batches", minItemSize: 12)
        for _ in 0..<inserted { d.insertedBatches.append(try r.readHollowBatch()) }
        let deleted = try r.readCount("deleted batches", minItemSize: 12)
        for _ in 0..<deleted { d.deletedBatches.append(try r.readHollowBatch()) }
        try r.expectEnd(format)
        return d
    }

    static let maxKey = ByteReader.maxBlobKeyLength
}

/// Checks magic and version before anything else (the checksum included), so that bytes
/// of another format, or of a newer release, get the more useful error.
func checkHeader(_ bytes: [UInt8], magic: [UInt8], version: UInt8, format: String) throws(CodecError) {
    var r = ByteReader(bytes)
    let m = try r.readBytes(min(4, bytes.count), "\(format) magic")
    guard m == magic else { throw .badMagic(format: format, found: m) }
    let v = try r.readU8("\(format) version")
    guard v == version else { throw .unsupportedVersion(format: format, version: Int(v)) }
}
