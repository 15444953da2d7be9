import PersistCodec
import PersistCore

/// Space accounting for one LogConsensus segment file.
struct LogSegmentInfo: Equatable, Sendable {
    /// Bytes in the file (header included).
    var totalBytes: Int
    /// Bytes of the version records in it that are still live.
    var liveBytes: Int
    var liveRecords: Int
}

/// What a `LogConsensus` caller is finally told.
enum LogConsensusReply: Equatable, Sendable {
    case cas(CaSResult)
    case truncated(Int)
}

/// The pure state of `LogConsensus`: what is durable, what is queued for the next group
/// commit, and how much of each log segment is still live. No I/O: the shell feeds it
/// events (a request arrived, a batch became durable, a segment was rolled or deleted)
/// and carries out what it returns. `Waiter` is whatever the shell resumes to answer a
/// caller (a continuation in production, an integer in tests).
///
/// Rules it keeps:
/// - A compare-and-set is checked against the newest state, including versions that are
///   queued or being synced, so that group commit can accept a chain of CaS on one key.
/// - A caller is answered only from durable state: committed after its record is synced;
///   a mismatch that observed a not-yet-durable version waits for that version's batch.
/// - Readers (`head`, `scan`, `listKeys`) see only durable versions.
struct LogConsensusMachine<Waiter> {
    typealias Reply = LogConsensusReply

    /// One queued operation, in log order.
    enum Op {
        case append(key: ByteKey, version: VersionedData, record: [UInt8], waiter: Waiter)
        case truncate(key: ByteKey, below: SeqNo, record: [UInt8], waiter: Waiter)
        /// An answer that must wait until everything queued before it is durable.
        case reply(waiter: Waiter, Reply)
        /// Compaction: a live version copied forward out of segment `from`.
        case relocate(key: ByteKey, seqno: SeqNo, from: UInt64, record: [UInt8])
        /// Compaction: a truncation watermark carried forward because older copies of
        /// truncated versions still exist in other segments.
        case watermark(key: ByteKey, record: [UInt8])
        /// Compaction: once everything before this is durable, segment `id` may go.
        case dropSegment(id: UInt64)

        var record: [UInt8]? {
            switch self {
            case .append(_, _, let r, _), .truncate(_, _, let r, _), .relocate(_, _, _, let r),
                .watermark(_, let r):
                return r
            case .reply, .dropSegment:
                return nil
            }
        }
    }

    /// How a request is handled.
    enum Decision {
        /// Answer now.
        case reply(Result<Reply, StorageError>)
        /// Queued; when `wakeWriter` the shell must start the writer (it was idle).
        case queued(wakeWriter: Bool)
    }

    /// What the writer should do next.
    enum WriterStep {
        case write([Op])
        /// Read the segment (off the writer) and call `planCompaction`.
        case compact(segment: UInt64)
        /// Nothing to do; the writer is now idle.
        case idle
    }

    typealias SegmentInfo = LogSegmentInfo

    enum Phase: Equatable {
        case running
        case closed
        case failed(StorageError)
    }

    struct Statistics: Equatable {
        var batches = 0
        var recordsWritten = 0
        var bytesWritten = 0
        var segmentsDropped = 0
        var compactions = 0
        var relocatedRecords = 0
    }

    let compactionLiveRatio: Double
    private(set) var phase: Phase = .running
    private(set) var durable: ConsensusTable
    /// Versions accepted but not yet durable, per key, in order.
    private var pending: [ByteKey: [VersionedData]] = [:]
    private var queue: [Op] = []
    private var writerBusy = false
    /// The highest truncation point per key.
    private(set) var watermarks: [ByteKey: SeqNo]
    /// Per key, how many truncated versions still exist in some segment file; while
    /// positive, the key's truncation must stay recorded in the log.
    private(set) var deadOnDisk: [ByteKey: Int]
    private(set) var segments: [UInt64: SegmentInfo]
    private(set) var activeSegment: UInt64
    private var compacting: Set<UInt64> = []
    private(set) var stats = Statistics()

    init(
        durable: ConsensusTable, watermarks: [ByteKey: SeqNo], deadOnDisk: [ByteKey: Int],
        segments: [UInt64: SegmentInfo], activeSegment: UInt64, compactionLiveRatio: Double
    ) {
        self.durable = durable
        self.watermarks = watermarks
        self.deadOnDisk = deadOnDisk
        self.segments = segments
        self.activeSegment = activeSegment
        self.compactionLiveRatio = compactionLiveRatio
    }

    // MARK: Requests

    private func newestHead(_ key: ByteKey) -> VersionedData? {
        pending[key]?.last ?? durable.head(key)
    }

    private func availability() -> StorageError? {
        switch phase {
        case .running: return nil
        case .closed: return .determinate(.unavailable, "the consensus log is closed")
        case .failed(let e):
            return .determinate(.failed, "the consensus log failed earlier and must be reopened: \(e.message)")
        }
    }

    mutating func compareAndSet(
        _ key: ByteKey, expected: SeqNo?, new: VersionedData, record: [UInt8], waiter: Waiter
    ) -> Decision {
        if let e = availability() { return .reply(.failure(e)) }
        let head = newestHead(key)
        guard head?.seqno == expected else {
            let reply = Reply.cas(.expectationMismatch(current: head))
            // A mismatch that saw only durable state can be answered at once.
            guard pending[key]?.isEmpty == false else { return .reply(.success(reply)) }
            return enqueue(.reply(waiter: waiter, reply))
        }
        pending[key, default: []].append(new)
        return enqueue(.append(key: key, version: new, record: record, waiter: waiter))
    }

    mutating func truncate(_ key: ByteKey, below seqno: SeqNo, record: [UInt8], waiter: Waiter) -> Decision {
        if let e = availability() { return .reply(.failure(e)) }
        let head = newestHead(key)?.seqno
        guard let head, seqno <= head else {
            return .reply(.failure(ConsensusPreconditions.truncateError(key.string, seqno: seqno, head: head)))
        }
        return enqueue(.truncate(key: key, below: seqno, record: record, waiter: waiter))
    }

    func read<T>(_ body: (ConsensusTable) -> T) -> Result<T, StorageError> {
        if let e = availability() { return .failure(e) }
        return .success(body(durable))
    }

    private mutating func enqueue(_ op: Op) -> Decision {
        queue.append(op)
        if writerBusy { return .queued(wakeWriter: false) }
        writerBusy = true
        return .queued(wakeWriter: true)
    }

    // MARK: Writer events

    /// The writer asks for work. Queued operations come first; when there are none, a
    /// segment worth compacting; otherwise the writer goes idle.
    mutating func nextWriterStep() -> WriterStep {
        if !queue.isEmpty {
            let ops = queue
            queue.removeAll(keepingCapacity: true)
            return .write(ops)
        }
        if case .running = phase, let id = compactionCandidate() {
            compacting.insert(id)
            return .compact(segment: id)
        }
        writerBusy = false
        return .idle
    }

    /// A sealed segment whose live bytes fell below the configured share, oldest first.
    func compactionCandidate() -> UInt64? {
        segments.keys.sorted().first { id in
            guard id != activeSegment, !compacting.contains(id), let info = segments[id] else { return false }
            return Double(info.liveBytes) < compactionLiveRatio * Double(info.totalBytes)
        }
    }

    /// The batch `ops` is durable in `segment`. Applies it and returns the answers to give
    /// and the segments the shell may now delete.
    mutating func batchDurable(_ ops: [Op], segment: UInt64)
        -> (replies: [(Waiter, Result<Reply, StorageError>)], dropSegments: [UInt64])
    {
        var replies: [(Waiter, Result<Reply, StorageError>)] = []
        var drops: [UInt64] = []
        var written = 0
        var records = 0
        for op in ops {
            if let r = op.record {
                written += r.count
                records += 1
                segments[segment, default: SegmentInfo(totalBytes: 0, liveBytes: 0, liveRecords: 0)]
                    .totalBytes += r.count
            }
            switch op {
            case .append(let key, let version, let record, let waiter):
                durable.append(key, version, segment: segment)
                pending[key]?.removeFirst()
                if pending[key]?.isEmpty == true { pending[key] = nil }
                addLive(segment, bytes: record.count, records: 1)
                replies.append((waiter, .success(.cas(.committed))))
            case .truncate(let key, let below, _, let waiter):
                let removed = durable.truncate(key, below: below)
                for s in removed {
                    addLive(s.segment, bytes: -Self.recordSize(key: key, data: s.version.data), records: -1)
                }
                if !removed.isEmpty { deadOnDisk[key, default: 0] += removed.count }
                if watermarks[key].map({ $0 < below }) ?? true { watermarks[key] = below }
                replies.append((waiter, .success(.truncated(removed.count))))
            case .reply(let waiter, let reply):
                replies.append((waiter, .success(reply)))
            case .relocate(let key, let seqno, let from, let record):
                stats.relocatedRecords += 1
                if durable.relocate(key, seqno, from: from, to: segment) {
                    addLive(from, bytes: -record.count, records: -1)
                    addLive(segment, bytes: record.count, records: 1)
                } else if let w = watermarks[key], seqno < w {
                    // Truncated while being copied: the copy is one more dead version.
                    deadOnDisk[key, default: 0] += 1
                }
            case .watermark:
                break
            case .dropSegment(let id):
                drops.append(id)
            }
        }
        stats.batches += 1
        stats.recordsWritten += records
        stats.bytesWritten += written
        return (replies, drops)
    }

    /// Writing or syncing a batch failed. The log's durable contents are now unknown, so
    /// the machine fails for good: the batch's callers get an indeterminate error, callers
    /// still queued (never written) a determinate one, and every later request fails.
    /// `attempted` is false when the batch was never written (the log was closed first):
    /// its callers then get a determinate error too.
    mutating func batchFailed(_ ops: [Op], error: StorageError, attempted: Bool = true) -> [(Waiter, StorageError)] {
        if case .running = phase { phase = .failed(error) }
        var out: [(Waiter, StorageError)] = []
        let inflight = StorageError(error.code, attempted ? .indeterminate : .determinate, error.message)
        for op in ops { if let w = Self.waiter(op) { out.append((w, inflight)) } }
        let notWritten = StorageError.determinate(.failed, "not written: the consensus log failed: \(error.message)")
        for op in queue { if let w = Self.waiter(op) { out.append((w, notWritten)) } }
        queue.removeAll()
        pending.removeAll()
        writerBusy = false
        return out
    }

    private static func waiter(_ op: Op) -> Waiter? {
        switch op {
        case .append(_, _, _, let w), .truncate(_, _, _, let w), .reply(let w, _): return w
        case .relocate, .watermark, .dropSegment: return nil
        }
    }

    /// The writer started a new segment file.
    mutating func segmentRolled(to id: UInt64, headerBytes: Int) {
        segments[id] = SegmentInfo(totalBytes: headerBytes, liveBytes: 0, liveRecords: 0)
        activeSegment = id
    }

    /// The writer deleted a segment file (after its live records were copied forward).
    mutating func segmentDropped(_ id: UInt64) {
        segments[id] = nil
        compacting.remove(id)
        stats.segmentsDropped += 1
    }

    /// Plans the compaction of `segment` given the records it holds: live versions are
    /// copied forward, truncations still needed are carried forward, and the segment is
    /// dropped once those copies are durable. The plan is queued like client work;
    /// returns true when the shell must start the (idle) writer.
    mutating func planCompaction(segment: UInt64, records: [ConsensusLogRecord]) -> Bool {
        guard case .running = phase else { return false }
        var ops: [Op] = []
        var truncatedKeys: Set<ByteKey> = []
        for record in records {
            switch record {
            case .version(let rawKey, let v):
                let key = ByteKey(utf8: rawKey)
                if durable.segment(of: key, v.seqno) == segment {
                    ops.append(.relocate(key: key, seqno: v.seqno, from: segment, record: record.encoded()))
                } else if let w = watermarks[key], v.seqno < w {
                    // This dead copy goes away with the segment. (A version truncated after
                    // this plan was made is not subtracted here; the count then errs high,
                    // which only keeps a watermark in the log longer than needed.)
                    deadOnDisk[key, default: 0] -= 1
                    if deadOnDisk[key] ?? 0 <= 0 { deadOnDisk[key] = nil }
                }
            case .truncation(let rawKey, _):
                truncatedKeys.insert(ByteKey(utf8: rawKey))
            }
        }
        for key in truncatedKeys.sorted() where (deadOnDisk[key] ?? 0) > 0 {
            guard let w = watermarks[key] else { continue }
            ops.append(.watermark(key: key, record: ConsensusLogRecord.truncation(key: key.utf8, below: w).encoded()))
        }
        ops.append(.dropSegment(id: segment))
        stats.compactions += 1
        queue.append(contentsOf: ops)
        if writerBusy { return false }
        writerBusy = true
        return true
    }

    mutating func close() {
        if case .running = phase { phase = .closed }
    }

    private mutating func addLive(_ segment: UInt64, bytes: Int, records: Int) {
        guard var info = segments[segment] else { return }
        info.liveBytes += bytes
        info.liveRecords += records
        segments[segment] = info
    }

    /// The framed size of a version record, without encoding it.
    static func recordSize(key: ByteKey, data: [UInt8]) -> Int {
        ConsensusLogRecord.frameOverhead + 1 + varintSize(key.utf8.count) + key.utf8.count + 8
            + varintSize(data.count) + data.count
    }

    static func varintSize(_ n: Int) -> Int {
        var v = UInt64(n)
        var size = 1
        while v >= 0x80 {
            v >>= 7
            size += 1
        }
        return size
    }
}

extension LogConsensusMachine: Sendable where Waiter: Sendable {}
extension LogConsensusMachine.Op: Sendable where Waiter: Sendable {}
extension LogConsensusMachine.Decision: Sendable where Waiter: Sendable {}
extension LogConsensusMachine.WriterStep: Sendable where Waiter: Sendable {}
