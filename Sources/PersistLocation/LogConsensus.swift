#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Dispatch
import Logging
import Metrics
import PersistCodec
import PersistCore
import Synchronization

/// Tuning for `LogConsensus`.
public struct LogConsensusOptions: Sendable {
    /// A segment file is sealed and a new one started once it would grow past this.
    public var segmentSizeBytes: Int = 64 << 20
    /// A sealed segment whose live bytes fall below this share of its size is compacted:
    /// its live records are copied forward and the file is deleted.
    public var compactionLiveRatio: Double = 0.5

    public init() {}
}

/// Counters describing what a `LogConsensus` has done since it was opened.
public struct LogConsensusStats: Sendable, Equatable {
    /// Group commits (one write and one fdatasync each).
    public var fsyncCount: Int
    public var recordsWritten: Int
    public var bytesWritten: Int
    /// Segment files present now, and deleted by compaction so far.
    public var segmentCount: Int
    public var segmentsDropped: Int
    public var compactions: Int
    public var relocatedRecords: Int
    public var keyCount: Int
    /// Bytes at the end of the log cut off by recovery at open (a torn final write).
    public var recoveredTornBytes: Int
}

/// The durable `Consensus` engine the consensus server serves.
///
/// Storage is a directory of append-only segment files of CRC-framed records
/// (`ConsensusLogRecord`), with every live version also held in memory for reads.
/// Writes are group-committed: concurrent compare-and-sets and truncations, on any keys,
/// queue while one batch is being synced and then share the next write and fdatasync.
/// A caller is answered only once its record is synced.
///
/// Recovery at open reads every segment and verifies every checksum. An invalid record at
/// the end of the newest segment is a torn final write (never acknowledged) and is cut
/// off; an invalid record anywhere else is corruption and open fails. Space is reclaimed
/// by compacting sealed segments whose records were mostly truncated.
///
/// If a write or sync fails, durable state is unknown, and the engine fails every later
/// call until it is reopened. One process may have a directory open at a time (an
/// advisory lock enforces this).
public final class LogConsensus: CallbackConsensus {
    /// Called once with a queued request's outcome, on the writer queue after the fsync
    /// (or at once, for requests answered without writing).
    typealias Waiter = @Sendable (Result<LogConsensusReply, StorageError>) -> Void
    typealias Machine = LogConsensusMachine<Waiter>

    /// Files touched only from the writer queue.
    struct WriterFiles {
        var activeFD: Int32
        var activePath: String
        var activeSize: Int
        var nextSegmentID: UInt64
        var lockFD: Int32
        var closed = false
    }

    public let directory: String
    let options: LogConsensusOptions
    let logger: Logger
    private let machine: Mutex<Machine>
    private let files: Mutex<WriterFiles>
    private let writerQueue = DispatchQueue(label: "swift-txn-wal.log-consensus.writer")
    /// Reads segments for compaction, so that a large read never stalls group commits.
    private let maintenanceQueue = DispatchQueue(label: "swift-txn-wal.log-consensus.maintenance")
    private let recoveredTornBytes: Int
    private let fsyncTimer = Metrics.Timer(label: "consensus_log_fsync_seconds")
    private let groupSize = Recorder(label: "consensus_log_group_size")
    private let bytesCounter = Counter(label: "consensus_log_bytes_written_total")

    private init(
        directory: String, options: LogConsensusOptions, logger: Logger, machine: Machine,
        files: WriterFiles, recoveredTornBytes: Int
    ) {
        self.directory = directory
        self.options = options
        self.logger = logger
        self.machine = Mutex(machine)
        self.files = Mutex(files)
        self.recoveredTornBytes = recoveredTornBytes
    }

    /// Opens (creating if needed) the log in `directory`, recovering its contents.
    public static func open(
        directory: String, options: LogConsensusOptions = .init(),
        logger: Logger = Logger(label: "swift-txn-wal.log-consensus")
    ) throws(StorageError) -> LogConsensus {
        guard options.segmentSizeBytes >= 4096 else {
            throw .determinate(.invalidArgument, "segment size must be at least 4096 bytes")
        }
        let created = try Posix.makeDirectories(directory)
        if let first = created.first { try Posix.syncDirectory(Posix.parentDirectory(first)) }
        let lockFD = try Posix.lockFile(directory + "/LOCK")
        do throws(StorageError) {
            var recovery = try LogRecovery.run(directory: directory, logger: logger)
            var files = WriterFiles(
                activeFD: -1, activePath: "", activeSize: 0, nextSegmentID: recovery.nextSegmentID,
                lockFD: lockFD)
            if let last = recovery.lastSegment {
                guard let fd = try Posix.openFile(last.path, O_WRONLY) else {
                    throw .determinate(.io, "segment \(last.path) vanished during open")
                }
                files.activeFD = fd
                files.activePath = last.path
                files.activeSize = last.validLength
            } else {
                try createSegment(&files, directory: directory)
                recovery.segments[files.nextSegmentID - 1] = .init(
                    totalBytes: ConsensusLogSegmentHeader.size, liveBytes: 0, liveRecords: 0)
            }
            let machine = Machine(
                durable: recovery.table, watermarks: recovery.watermarks, deadOnDisk: recovery.deadOnDisk,
                segments: recovery.segments, activeSegment: files.nextSegmentID - 1,
                compactionLiveRatio: options.compactionLiveRatio)
            let log = LogConsensus(
                directory: directory, options: options, logger: logger, machine: machine, files: files,
                recoveredTornBytes: recovery.tornBytes)
            // Segments left mostly dead by earlier runs are compacted in the background.
            if machine.compactionCandidate() != nil { log.wakeWriter() }
            return log
        } catch {
            Posix.closeFile(lockFD)
            throw error
        }
    }

    // MARK: Consensus

    public func head(_ key: String) async throws(StorageError) -> VersionedData? {
        let k = ByteKey(key)
        return try machine.withLock { $0.read { $0.head(k) } }.get()
    }

    public func compareAndSet(_ key: String, expected: SeqNo?, new: VersionedData) async throws(StorageError)
        -> CaSResult
    {
        try await withCheckedContinuation { c in
            compareAndSet(key, expected: expected, new: new) { c.resume(returning: $0) }
        }.get()
    }

    /// `compareAndSet` for callers that cannot afford a Swift task per request (the
    /// consensus server answers from its event loops): `completion` runs exactly once,
    /// on the log's writer queue once the record is durable, or on the calling thread for
    /// an answer that needs no write. It must not block.
    public func compareAndSet(
        _ key: String, expected: SeqNo?, new: VersionedData,
        completion: @escaping @Sendable (Result<CaSResult, StorageError>) -> Void
    ) {
        let k = ByteKey(key)
        do throws(StorageError) {
            try ConsensusPreconditions.checkCaS(key, expected: expected, new: new)
            try Self.checkKey(k)
        } catch {
            return completion(.failure(error))
        }
        let record = ConsensusLogRecord.version(key: k.utf8, new).encoded()
        submit({ m, w in m.compareAndSet(k, expected: expected, new: new, record: record, waiter: w) }) { reply in
            completion(
                reply.map { r in
                    guard case .cas(let result) = r else { preconditionFailure("a compare-and-set is answered with a CaS result") }
                    return result
                })
        }
    }

    public func scan(_ key: String, from: SeqNo, limit: Int) async throws(StorageError) -> [VersionedData] {
        try ConsensusPreconditions.checkScanLimit(limit)
        let k = ByteKey(key)
        return try machine.withLock { $0.read { $0.scan(k, from: from, limit: limit) } }.get()
    }

    public func truncate(_ key: String, seqno: SeqNo) async throws(StorageError) -> Int {
        try await withCheckedContinuation { c in
            truncate(key, seqno: seqno) { c.resume(returning: $0) }
        }.get()
    }

    /// `truncate` with a completion callback; see `compareAndSet(_:expected:new:completion:)`.
    public func truncate(
        _ key: String, seqno: SeqNo, completion: @escaping @Sendable (Result<Int, StorageError>) -> Void
    ) {
        let k = ByteKey(key)
        let record = ConsensusLogRecord.truncation(key: k.utf8, below: seqno).encoded()
        submit({ m, w in m.truncate(k, below: seqno, record: record, waiter: w) }) { reply in
            completion(
                reply.map { r in
                    guard case .truncated(let n) = r else { preconditionFailure("a truncation is answered with a count") }
                    return n
                })
        }
    }

    public func listKeys() async throws(StorageError) -> [String] {
        try machine.withLock { $0.read { $0.listKeys() } }.get()
    }

    /// What the engine has done since it was opened.
    public func stats() -> LogConsensusStats {
        let m = machine.withLock { ($0.stats, $0.segments.count, $0.durable.keyCount) }
        return LogConsensusStats(
            fsyncCount: m.0.batches, recordsWritten: m.0.recordsWritten, bytesWritten: m.0.bytesWritten,
            segmentCount: m.1, segmentsDropped: m.0.segmentsDropped, compactions: m.0.compactions,
            relocatedRecords: m.0.relocatedRecords, keyCount: m.2, recoveredTornBytes: recoveredTornBytes)
    }

    /// Stops accepting requests, finishes the ones already accepted, and closes the files
    /// and the directory lock. Later calls fail with `unavailable`.
    public func close() async {
        machine.withLock { $0.close() }
        // Let a compaction read in progress finish (it will queue nothing now).
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in maintenanceQueue.async { c.resume() } }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            writerQueue.async {
                self.files.withLock { f in
                    guard !f.closed else { return }
                    f.closed = true
                    Posix.closeFile(f.activeFD)
                    Posix.closeFile(f.lockFD)
                }
                c.resume()
            }
        }
    }

    // MARK: Internals

    static func checkKey(_ k: ByteKey) throws(StorageError) {
        guard k.utf8.count <= ConsensusLogRecord.maxKeyLength else {
            throw .determinate(.invalidArgument, "consensus key of \(k.utf8.count) bytes exceeds \(ConsensusLogRecord.maxKeyLength)")
        }
    }

    private func submit(_ event: (inout Machine, @escaping Waiter) -> Machine.Decision, reply: @escaping Waiter) {
        let decision = machine.withLock { event(&$0, reply) }
        switch decision {
        case .reply(let r): reply(r)
        case .queued(let wake): if wake { wakeWriter() }
        }
    }

    private func wakeWriter() {
        writerQueue.async { self.drain() }
    }

    /// The writer: runs on `writerQueue` until there is nothing left to do.
    private func drain() {
        while true {
            let step = machine.withLock { $0.nextWriterStep() }
            switch step {
            case .idle:
                return
            case .compact(let id):
                maintenanceQueue.async { self.compact(segment: id) }
            case .write(let ops):
                write(ops)
            }
        }
    }

    private func write(_ ops: [Machine.Op]) {
        let ops = TestBugs.isEnabled(.ackBeforeFsync) ? acknowledgeBeforeWriting(ops) : ops
        var bytes: [UInt8] = []
        for op in ops { if let r = op.record { bytes.append(contentsOf: r) } }
        let outcome: Result<UInt64, StorageError> = files.withLock { f in
            guard !f.closed else {
                return .failure(.determinate(.unavailable, "the consensus log is closed"))
            }
            return Result { () throws(StorageError) -> UInt64 in
                if bytes.isEmpty { return f.nextSegmentID - 1 }
                if f.activeSize + bytes.count > options.segmentSizeBytes
                    && f.activeSize > ConsensusLogSegmentHeader.size
                {
                    let old = f.activeFD
                    try Self.createSegment(&f, directory: directory)
                    Posix.closeFile(old)
                    let id = f.nextSegmentID - 1
                    machine.withLock { $0.segmentRolled(to: id, headerBytes: ConsensusLogSegmentHeader.size) }
                }
                let start = ContinuousClock.now
                try Posix.writeAll(f.activeFD, bytes, offset: Int64(f.activeSize), path: f.activePath)
                Failpoints.hit(.consensusBeforeFsync)
                try Posix.sync(f.activeFD, dataOnly: true, path: f.activePath)
                fsyncTimer.recordNanoseconds(Self.nanoseconds(ContinuousClock.now - start))
                f.activeSize += bytes.count
                return f.nextSegmentID - 1
            }
        }
        switch outcome {
        case .success(let segment):
            groupSize.record(ops.count)
            bytesCounter.increment(by: bytes.count)
            let (replies, drops) = machine.withLock { $0.batchDurable(ops, segment: segment) }
            if !bytes.isEmpty { Failpoints.hit(.consensusAfterFsyncBeforeReply) }
            for (w, r) in replies { w(r) }
            for id in drops { dropSegment(id) }
        case .failure(let error):
            let attempted = error.code != .unavailable
            if attempted {
                logger.critical("consensus log write failed; refusing further requests", metadata: ["error": "\(error)"])
            }
            let failures = machine.withLock { $0.batchFailed(ops, error: error, attempted: attempted) }
            for (w, e) in failures { w(.failure(e)) }
        }
    }

    /// The deliberate bug `ack-before-fsync` (`TestBugs`, servers only): answers every
    /// compare-and-set in `ops` "committed" before the batch is written, and returns the
    /// ops with those callers detached (nobody is answered twice).
    ///
    /// The answer goes out before the write, not merely between write and fsync, because
    /// only that loses data under the crash test: bytes `write(2)` accepted sit in the
    /// kernel's page cache, which a `kill -9` of the process does not drop (a power loss
    /// would). An acknowledged CaS is lost when the process dies after this answer and
    /// before the write; the failpoint `consensus.after-early-ack` sits exactly there.
    private func acknowledgeBeforeWriting(_ ops: [Machine.Op]) -> [Machine.Op] {
        var early: [Waiter] = []
        let detached = ops.map { op -> Machine.Op in
            guard case .append(let key, let version, let record, let waiter) = op else { return op }
            early.append(waiter)
            return .append(key: key, version: version, record: record, waiter: { _ in })
        }
        guard !early.isEmpty else { return ops }
        for waiter in early { waiter(.success(.cas(.committed))) }
        Failpoints.hit(.consensusAfterEarlyAck)
        return detached
    }

    private func compact(segment id: UInt64) {
        let path = Self.segmentPath(directory, id)
        do throws(StorageError) {
            guard let fd = try Posix.openFile(path, O_RDONLY) else { return }
            defer { Posix.closeFile(fd) }
            let bytes = try Posix.readAll(fd, path: path)
            var records: [ConsensusLogRecord] = []
            var offset = ConsensusLogSegmentHeader.size
            scan: while true {
                switch ConsensusLogRecord.read(bytes, at: offset, end: bytes.count) {
                case .end: break scan
                case .record(let r, let length):
                    records.append(r)
                    offset += length
                case .invalid(let e):
                    throw .determinate(.corruption, "segment \(path) at offset \(offset): \(e)")
                }
            }
            if machine.withLock({ $0.planCompaction(segment: id, records: records) }) { wakeWriter() }
            logger.debug("compacting consensus log segment", metadata: ["segment": "\(id)", "records": "\(records.count)"])
        } catch {
            // Leave the segment alone (it stays marked, so it is not retried in a loop).
            logger.error("could not compact consensus log segment", metadata: ["segment": "\(id)", "error": "\(error)"])
        }
    }

    private func dropSegment(_ id: UInt64) {
        let path = Self.segmentPath(directory, id)
        do throws(StorageError) {
            try Posix.unlinkFile(path)
            try Posix.syncDirectory(directory)
            machine.withLock { $0.segmentDropped(id) }
        } catch {
            logger.error("could not delete compacted segment", metadata: ["segment": "\(id)", "error": "\(error)"])
        }
    }

    static func segmentPath(_ directory: String, _ id: UInt64) -> String {
        let hex = String(id, radix: 16)
        return directory + "/consensus-" + String(repeating: "0", count: max(0, 16 - hex.count)) + hex + ".log"
    }

    /// Creates the next segment file with its header, durably, and makes it active.
    static func createSegment(_ f: inout WriterFiles, directory: String) throws(StorageError) {
        let id = f.nextSegmentID
        let path = segmentPath(directory, id)
        guard let fd = try Posix.openFile(path, O_WRONLY | O_CREAT | O_EXCL, mode: 0o644) else {
            throw .determinate(.io, "could not create \(path)")
        }
        do throws(StorageError) {
            try Posix.writeAll(fd, ConsensusLogSegmentHeader(segmentID: id).encode(), offset: 0, path: path)
            try Posix.sync(fd, path: path)
            try Posix.syncDirectory(directory)
        } catch {
            Posix.closeFile(fd)
            throw error
        }
        f.activeFD = fd
        f.activePath = path
        f.activeSize = ConsensusLogSegmentHeader.size
        f.nextSegmentID = id + 1
    }

    static func nanoseconds(_ d: Duration) -> Int64 {
        let (s, atto) = d.components
        return s * 1_000_000_000 + atto / 1_000_000_000
    }
}
